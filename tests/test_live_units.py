"""The pure rules under the live CLI: relative and ISO times (hypothesis), SPEC-20's aggregation,
the adaptive polling schedule, and `parhelia status`'s text (golden, from the dashboard world)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from parhelia.app.status_text import render_status
from parhelia.state.aggregation import Aggregator, is_loud, kind
from parhelia.state.errors import ParheliaError
from parhelia.state.timespec import MAX_SECONDS, UNITS, parse_time
from parhelia.state.views import EventView
from parhelia.workers.event_follow import poll_interval
from tests.test_once import check_golden

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


# -- --since / --until ------------------------------------------------------------------------


@given(
    n=st.integers(min_value=0, max_value=999),
    unit=st.sampled_from(sorted(UNITS)),
    upper=st.booleans(),
    pad=st.sampled_from(["", " "]),
)
def test_relative_times_count_back_from_now(n, unit, upper, pad):
    assume(n * UNITS[unit] <= MAX_SECONDS)
    text = f"{pad}{n}{pad}{unit.upper() if upper else unit}{pad}"
    assert parse_time(text, NOW) == NOW - timedelta(seconds=n * UNITS[unit])


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)))
def test_iso_times_round_trip_naive_as_utc(dt):
    assert parse_time(dt.isoformat(), NOW) == dt.replace(tzinfo=UTC)
    aware = dt.replace(tzinfo=UTC)
    assert parse_time(aware.isoformat(), NOW) == aware


@given(
    st.text(min_size=1, max_size=12).filter(
        lambda s: not s.strip()[:1].isdigit() and s.strip()[:1] not in "+-"
    )
)
def test_anything_else_is_e101_with_examples(text):
    with pytest.raises(ParheliaError) as info:
        parse_time(text, NOW, option="--until")
    err = info.value
    assert err.code == "E101"
    assert "--until" in err.message and "10m" in err.message and "2026-11-24T09:00" in err.message
    assert len(err.suggestions) >= 2


@pytest.mark.parametrize("text", ["10", "5x", "m10", "-3d", "1y", "99999w", ""])
def test_near_misses_are_e101(text):
    with pytest.raises(ParheliaError, match="neither an ISO time nor a relative one"):
        parse_time(text, NOW)


# -- aggregation ------------------------------------------------------------------------------

_ids = iter(range(1, 10_000_000))


def ev(seconds: float, type_="container.health", level="info", source="heartbeat", **kw):
    return EventView(
        id=next(_ids),
        ts=NOW + timedelta(seconds=seconds),
        type=type_,
        level=level,
        source=source,
        message=kw.pop("message", type_),
        container_id=kw.pop("container_id", "c-1"),
        **kw,
    )


def test_heartbeat_events_at_most_one_per_ten_seconds_per_container_latest_kept():
    agg = Aggregator()
    shown = agg.feed(ev(0))
    held = [ev(s) for s in (1, 2, 3)]
    for e in held:
        assert agg.feed(e) == []
    assert agg.feed(ev(4, container_id="c-2"))  # another container has its own window
    assert agg.flush(NOW + timedelta(seconds=9)) == []
    (late,) = agg.flush(NOW + timedelta(seconds=10))
    assert late == held[-1] and agg.folded[late.id] == 2  # stands for the two before it
    assert shown and agg.drain() == []


def test_status_changes_errors_and_completions_are_never_held():
    agg = Aggregator()
    agg.feed(ev(0))
    for e in (
        ev(1, level="warning"),
        ev(1, level="error"),
        ev(2, "container.state", source="reconciler", new_value="running"),
        ev(3, "container.state", source="user", new_value="terminated"),
        ev(4, "task.completed", source="system"),
        ev(5, "budget.ceiling", source="user"),
    ):
        assert agg.feed(e) == [e], e


def test_progress_every_five_percent_or_five_seconds():
    agg = Aggregator()
    steps = [(0, "0"), (0.5, "2"), (1, "4"), (1.5, "5"), (2, "7"), (8, "8"), (8.2, "100")]
    shown = [
        e.new_value
        for t, pct in steps
        for e in agg.feed(ev(t, "task.progress", source="agent", new_value=pct))
    ]
    assert shown == ["0", "5", "8", "100"]
    assert kind(ev(0, "task.progress", source="agent")) == "progress"


def test_a_replay_drains_what_is_held():
    agg = Aggregator()
    agg.feed(ev(0))
    last = ev(1, message="latest")
    agg.feed(last)
    assert agg.drain() == [last]


def test_quiet_keeps_warnings_errors_and_completions_only():
    assert is_loud(ev(0, level="warning"))
    assert is_loud(ev(0, "container.state", source="user", new_value="stopped"))
    assert not is_loud(ev(0, "container.state", source="user", new_value="running"))
    assert not is_loud(ev(0, "budget.ceiling", source="user"))


@pytest.mark.parametrize(
    ("idle", "interval"), [(0, 0.5), (29.9, 0.5), (30, 2.0), (119, 2.0), (120, 5.0), (1e6, 5.0)]
)
def test_adaptive_polling_schedule(idle, interval):
    assert poll_interval(idle) == interval


# -- status golden ----------------------------------------------------------------------------


def test_status_text_matches_golden(world):
    text = render_status(world.control.dashboard())
    assert "ATTENTION" in text.splitlines()[0]
    for command in ("parhelia containers orphans", "parhelia containers health"):
        assert command in text
    check_golden("status.txt", text)


def test_status_text_healthy_matches_golden(world):
    from tests.test_once import make_healthy

    make_healthy(world)
    text = render_status(world.control.dashboard())
    assert text.splitlines()[0].startswith("parhelia OK")
    assert text.rstrip().endswith("All well: nothing needs attention.")
    check_golden("status-healthy.txt", text)


# -- spend over time ------------------------------------------------------------------------------


def _cv(cid, task, start_h, end_h, cost):
    from parhelia.state.views import ContainerView

    return ContainerView(
        id=cid,
        backend="local",
        sandbox_id=None,
        state="terminated" if end_h is not None else "running",
        health="healthy",
        task_id=task,
        task_prompt=None,
        created_at=NOW + timedelta(hours=start_h),
        started_at=NOW + timedelta(hours=start_h),
        terminated_at=None if end_h is None else NOW + timedelta(hours=end_h),
        last_heartbeat_at=None,
        missed_heartbeats=0,
        cpu_cores=1,
        memory_mib=1024,
        gpu=None,
        region=None,
        cost_rate_per_hour=1.0,
        cost_accrued_usd=cost,
    )


def test_spend_is_spread_over_the_hours_a_container_ran_and_adds_up():
    from parhelia.state.spend import BUCKETS, sparkline, spend_buckets

    rows = [_cv("c-1", "t-1", -3.5, -1.5, 2.0), _cv("c-2", "t-2", -1.0, None, 1.0)]
    series = spend_buckets(rows, since=NOW - timedelta(hours=5), now=NOW, size=BUCKETS["hour"])
    totals = {t.hour: round(sum(p.values()), 6) for t, p in series.items()}
    assert totals == {7: 0.0, 8: 0.5, 9: 1.0, 10: 0.5, 11: 1.0, 12: 0.0}
    per_task = spend_buckets(
        rows, since=NOW - timedelta(hours=5), now=NOW, size=BUCKETS["hour"], by="task"
    )
    assert sum(p.get("t-1", 0) for p in per_task.values()) == pytest.approx(2.0)
    assert sparkline([0, 0.5, 1.0]) == "▁▅█" and sparkline([0, 0]) == "▁▁"


def test_budget_history_reads_only_event_types_something_writes():
    import pathlib
    import re

    from parhelia.app.cli_budget import BUDGET_EVENT_TYPES
    from parhelia.state.event_types import EventType

    root = pathlib.Path(__file__).resolve().parents[1]
    written = set()
    for folder in ("state", "workers"):
        for path in (root / folder).rglob("*.py"):
            names = re.findall(r"make_event\(\s*EventType\.([A-Z_]+)", path.read_text())
            written |= {EventType[name].value for name in names}
    assert set(BUDGET_EVENT_TYPES) <= written, written


def test_budget_set_goes_through_the_control_plane(parhelia_env):
    control = parhelia_env.control()
    assert control.set_budget_ceiling(33.0, actor="user:test") == (33.0, 25.0)
    (ev,) = control.store.events(types=["budget.ceiling"])
    assert (ev.actor, ev.old_value, ev.new_value) == ("user:test", "25.00", "33.00")
    with pytest.raises(ParheliaError, match="out of range"):
        control.set_budget_ceiling(0)


def test_budget_history_and_estimate_end_to_end(parhelia_env):
    from parhelia.state.models import Container

    store = parhelia_env.store()
    now = datetime.now(UTC)
    store.add_container(
        Container(
            id="c-b0d90001",
            backend="local",
            state="terminated",
            started_at=now - timedelta(hours=2),
            terminated_at=now - timedelta(hours=1),
            cost_accrued_usd=1.5,
            task_id=None,
        )
    )
    store.close()
    data = parhelia_env.ok("budget", "history", "--by", "container")
    assert data["total_usd"] == pytest.approx(1.5)
    assert {b["key"] for b in data["buckets"]} == {"c-b0d90001"}
    human = parhelia_env.run("budget", "history").out
    assert human.startswith("Spend per hour since") and "$1.50" in human
    est = parhelia_env.ok(
        "budget", "estimate", "train", "--backend", "modal", "--gpu", "A10G", "--timeout", "30"
    )
    control = parhelia_env.control()
    from parhelia.state.requests import TaskRequest

    same = control.estimate(
        TaskRequest(prompt="train", backend="modal", gpu="A10G", timeout_minutes=30)
    )
    assert est["cost_usd"] == pytest.approx(same.cost_usd) and est["rate_per_hour"] > 1
    r = parhelia_env.run("budget", "history", "--bucket", "week")
    assert r.code != 0 and "Error E101" in r.err
