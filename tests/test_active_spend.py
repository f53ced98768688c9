"""The active containers' cost summed in closed form between changes (`state/active_spend.py`):
always what summing every row at that moment gives, and worked out again only when it must."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from parhelia.state.active_spend import ActiveSpend, cost_at
from parhelia.state.costs import current_cost
from parhelia.state.timeutil import utcnow

T0 = 1_780_000_000.0  # epoch seconds, mid-2026

row = st.tuples(
    st.sampled_from([0.0, 0.5, 3.0]) | st.floats(0.0, 500.0),  # stored
    st.sampled_from([0.0, 0.17, 2.5]) | st.floats(0.0, 50.0),  # rate per hour
    st.none() | st.floats(T0 - 86400.0, T0 + 3600.0),  # started
)
step = st.tuples(
    st.floats(-600.0, 7200.0),  # how far the clock moves (sometimes back)
    st.lists(st.tuples(st.integers(0, 40), row | st.none()), max_size=3),  # rows set or removed
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(0, 40), row, max_size=40), st.lists(step, max_size=25))
def test_the_closed_form_sum_is_the_sum_of_every_row_at_each_moment(rows, steps):
    spend = ActiveSpend()
    now = T0
    for moved, changes in [(0.0, []), *steps]:
        now += moved
        if changes:
            for key, value in changes:
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
            spend.invalidate()
        want = math.fsum(cost_at(*r, now) for r in rows.values())
        got = spend.at(lambda: list(rows.values()), now)
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9), (got, want)


def test_cost_at_is_current_costs_rule():
    now = utcnow()
    for stored, rate, started in [
        (0.0, 2.0, now - timedelta(hours=3)),
        (9.0, 2.0, now),
        (1, 0, None),
    ]:
        start = started.timestamp() if started else None
        assert cost_at(stored, rate, start, now.timestamp()) == current_cost(
            stored, rate, started, now
        )


def test_between_changes_and_crossings_no_row_is_read_again():
    reads = []

    def rows():
        reads.append(1)
        # an accruing row, a row whose stored cost its rate passes an hour on, a constant one
        return [(0.0, 3.6, T0 - 3600.0), (7.2, 3.6, T0 - 3600.0), (2.0, 0.0, None)]

    spend = ActiveSpend()
    assert math.isclose(spend.at(rows, T0), 3.6 + 7.2 + 2.0)
    for minutes in range(1, 60):  # an hour of refreshes: one sum, no row read again
        assert math.isclose(spend.at(rows, T0 + 60 * minutes), 3.6 * (1 + minutes / 60) + 9.2)
    assert len(reads) == 1
    spend.at(rows, T0 + 3600.0)  # the second row starts accruing: worked out again
    spend.at(rows, T0 + 3000.0)  # and a clock that went back
    assert len(reads) == 3
    spend.invalidate()
    spend.at(rows, T0 + 3000.0)
    assert len(reads) == 4


def test_stored_timestamps_convert_as_the_column_type_does():
    """The projection's fast conversions of SQLite's text: the same aware UTC datetime (and epoch
    seconds) as `.replace(tzinfo=UTC)` gives, whatever the text carries."""
    from datetime import UTC, datetime

    from parhelia.state.view_reads import aware_utc, epoch

    for text in ("2026-03-10 11:23:45.123456", "2026-03-10 11:23:45", "2026-03-10T11:23:45+02:00"):
        want = datetime.fromisoformat(text).replace(tzinfo=UTC)
        got = aware_utc(text)
        assert got == want and got.tzinfo is UTC and repr(got) == repr(want)
        assert epoch(text) == want.timestamp()
    assert aware_utc(None) is None and epoch(None) is None
