"""The containers pane's orders made from the last ones: a few moved rows put in place, many
sorted again, both the order a sort from scratch makes; matches made again for changed rows."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from parhelia.state.timeutil import utcnow
from parhelia.state.views import ContainerView
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.container_order import matches, ordering, shown_order
from parhelia.widgets.formatting import COLUMN_KEYS, order_key, sorted_ids

NOW = utcnow().replace(microsecond=0)


def view(i: int, rng: random.Random) -> ContainerView:
    state = rng.choice(["running"] * 6 + ["terminated", "orphaned"])
    return ContainerView(
        id=f"c-{i:08x}",
        backend="modal",
        sandbox_id=rng.choice([None, f"sb-{i}"]),
        state=state,
        health=rng.choice(["healthy", "degraded", "unhealthy"]),
        task_id=f"t-{i:08x}",
        task_prompt=f"task {rng.randrange(50)}",
        created_at=NOW - timedelta(minutes=rng.randrange(600)),
        started_at=NOW - timedelta(minutes=rng.randrange(600)),
        terminated_at=None,
        last_heartbeat_at=rng.choice([None, NOW - timedelta(seconds=rng.randrange(100))]),
        missed_heartbeats=0,
        cpu_cores=1.0,
        memory_mib=2048,
        gpu=rng.choice([None, None, "A10G"]),
        region=None,
        cost_rate_per_hour=rng.choice([0.1, 0.2, 0.4]),
        cost_accrued_usd=round(rng.uniform(0, 5), 1),  # ties: the id decides
        cpu_percent=rng.choice([None, rng.uniform(0, 100)]),
        memory_used_mib=rng.uniform(100, 2000),
    )


def scratch(views: dict, column: str, reverse: bool, text: str = "") -> list[str]:
    f = ContainerFilter.parse(text)
    wanted = [c for c in views.values() if f.matches(c)]
    return sorted_ids([(c.id, order_key(c, column)) for c in wanted], reverse=reverse)


@pytest.mark.parametrize("moved", [3, 700])  # put in place / sorted again
def test_an_ordering_made_from_the_last_is_the_order_a_sort_from_scratch_makes(moved):
    rng = random.Random(moved)
    views = {c.id: c for c in (view(i, rng) for i in range(2_000))}
    for column in COLUMN_KEYS:
        first = ordering(views, column, {})
        for reverse in (False, True):
            assert shown_order(first, reverse, None) == scratch(views, column, reverse), column
        later = dict(views)
        for k in rng.sample(sorted(views), moved):
            later[k] = replace(later[k], cost_accrued_usd=rng.uniform(0, 9), state="terminated")
        for k in rng.sample(sorted(views), moved // 3 + 1):
            del later[k]
        for i in range(2_000, 2_000 + moved // 3 + 1):
            later[f"c-{i:08x}"] = view(i, rng)
        again = ordering(later, column, {}, first)  # the moved rows found by identity
        told = ordering(
            later, column, {}, first, {k for k in later if later[k] is not views.get(k)}
        )
        for made in (again, told):
            for reverse in (False, True):
                got = shown_order(made, reverse, None)
                assert got == scratch(later, column, reverse), (column, reverse)


def test_an_ordering_kept_when_no_key_moved_and_none_made_past_the_limit():
    rng = random.Random(1)
    views = {c.id: c for c in (view(i, rng) for i in range(500))}
    first = ordering(views, "age", {})
    beat = {k: replace(c, cpu_percent=1.0) for k, c in views.items()}  # a heartbeat each
    kept = ordering(beat, "age", {}, first)
    assert kept.ascending is first.ascending  # no age moved: the same list, not sorted again
    assert ordering(beat, "cpu", {}, ordering(views, "cpu", {}), limit=64) is None
    assert ordering(views, "cpu", {}, limit=64) is None


def test_matches_made_again_for_changed_rows_only_and_a_filtered_order():
    rng = random.Random(2)
    views = {c.id: c for c in (view(i, rng) for i in range(500))}
    first = matches(views, "state:running task 1")
    later = dict(views)
    some = rng.sample(sorted(views), 40)
    for k in some[:20]:
        later[k] = replace(later[k], state="terminated")
    for k in some[20:]:
        del later[k]
    again = matches(later, "state:running task 1", first)
    assert again.ids == matches(later, "state:running task 1").ids
    assert matches(later, "x", first, limit=10) is None  # another text: every row, past the limit
    typed_on = matches(later, "state:running task 12", again)  # its haystacks lent
    assert typed_on.ids == matches(later, "state:running task 12").ids
    # typed on, only the last text's rows are looked at; typed over, every row again
    last = matches(later, "task 1")
    for text in ("task 12", "tasks 1", "task 2", "ask 1 c-", "health:deg task 1", "task"):
        assert matches(later, text, last).ids == matches(later, text).ids, text
    o = ordering(later, "cost", {})
    assert shown_order(o, True, again) == scratch(later, "cost", True, "state:running task 1")


FILTERS = (
    "task 1",
    "state:running task 1",
    "state:run,orph health:!healthy",
    "health:deg",
    "gpu:a10 c-",
    "gpu:none",
    "task:12",
    "task:!task backend:modal",
    "sb-1 degraded",
    "backend:loc",
)


def test_matching_many_rows_at_once_lets_through_what_each_row_check_does():
    rng = random.Random(3)
    views = {c.id: c for c in (view(i, rng) for i in range(800))}
    for text in FILTERS:
        f = ContainerFilter.parse(text)
        want = {k for k, c in views.items() if f.matches(c)}
        assert matches(views, text).ids == want, text  # haystacks made
        assert matches(views, text, matches(views, "")).ids == want, text  # lent


def test_a_heartbeats_copy_of_a_view_keeps_its_haystack(monkeypatch):
    """After a heartbeat every view is a new object with the same text: its haystack is the last
    one's, not made again (10,000 of them took ~25 ms, on the main thread at a keystroke)."""
    from parhelia.widgets import container_order

    rng = random.Random(4)
    views = {c.id: c for c in (view(i, rng) for i in range(500))}
    ready = matches(views, "")  # what `/` makes: haystacks only, nothing let through
    assert ready.ids == frozenset() and len(ready.haystacks) == 500
    beat = {k: replace(c, cpu_percent=7.0, last_heartbeat_at=NOW) for k, c in views.items()}
    beat["c-00000001"] = replace(beat["c-00000001"], health="unhealthy")  # its text moved
    made = []
    real = container_order.haystack
    monkeypatch.setattr(container_order, "haystack", lambda c: made.append(c.id) or real(c))
    typed = matches(beat, "unhealthy", ready)
    assert made == ["c-00000001"]
    assert typed.ids == {k for k, c in beat.items() if c.health == "unhealthy"}
    assert typed.haystacks == {k: real(c) for k, c in beat.items()}


class _CountedKey:
    """An order key that counts the comparisons a sort makes with it."""

    compared = 0

    def __init__(self, key: tuple) -> None:
        self.key = key

    def __lt__(self, other: _CountedKey) -> bool:
        _CountedKey.compared += 1
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountedKey) and self.key == other.key


def test_a_heartbeat_cycle_that_moves_every_key_but_no_place_is_not_sorted_again(monkeypatch):
    """One stamp for every row (a heartbeat cycle) moves every HB key and keeps every row's
    place: the ordering is made in one pass over the last order (about one comparison a row),
    not by a sort of rows listed in another order (a dozen a row at 2,000), and is the order a
    sort from scratch makes."""
    from parhelia.widgets import container_order

    monkeypatch.setattr(
        container_order,
        "order_key",
        lambda c, col, agent=None, sample=None: _CountedKey(order_key(c, col)),
    )
    rng = random.Random(5)
    rows = [view(i, rng) for i in range(2_000)]
    rng.shuffle(rows)  # the views' own order (their age) is not their ids'
    at = NOW - timedelta(seconds=3)
    views = {c.id: replace(c, state="running", last_heartbeat_at=at) for c in rows}
    first = ordering(views, "heartbeat", {})
    beat = {k: replace(c, last_heartbeat_at=at + timedelta(seconds=1)) for k, c in views.items()}
    _CountedKey.compared = 0
    made = ordering(beat, "heartbeat", {}, first)
    assert _CountedKey.compared < 2 * len(views)
    assert made.ascending == scratch(beat, "heartbeat", False)
    assert made.ascending is first.ascending  # the same order: kept, so the pane's stays too


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "before_text, text",
    [
        ("task 1", "task 1"),  # the same text
        ("task 1", "task 12"),  # typed on
        ("task", "state:running"),  # another
        ("", "task 3"),  # the first word after `/`
    ],
)
def test_matches_told_which_rows_read_otherwise_are_the_matches_made_from_scratch(
    seed, before_text, text, monkeypatch
):
    """`retexted` (the rows whose text may have moved since the last matches' views; the others
    are a heartbeat's copies): the matches are those a match from scratch makes, for the same
    text, a text typed on, and another one, with rows gone and new; only the retexted and new
    rows' haystacks are made, and a text typed on looks only at the last matches and those."""
    from parhelia.widgets import container_order

    rng = random.Random(seed)
    views = {c.id: c for c in (view(i, rng) for i in range(400))}
    before = matches(views, before_text, matches(views, ""))
    beat = {k: replace(c, cpu_percent=7.0, last_heartbeat_at=NOW) for k, c in views.items()}
    moved = rng.sample(sorted(beat), 25)
    for k in moved[:10]:
        beat[k] = replace(beat[k], task_prompt=f"task {rng.randrange(50)}")
    for k in moved[10:20]:
        beat[k] = replace(beat[k], state=rng.choice(["running", "terminated"]))
    for k in moved[20:]:
        del beat[k]
    beat |= {c.id: c for c in (view(i, rng) for i in range(400, 405))}
    made, looked = [], []
    real, real_select = container_order.haystack, ContainerFilter.select
    monkeypatch.setattr(container_order, "haystack", lambda c: made.append(c.id) or real(c))
    monkeypatch.setattr(
        ContainerFilter,
        "select",
        lambda f, v, keys, h: real_select(f, v, looked.extend(keys) or looked, h),
    )
    got = matches(beat, text, before, retexted=set(moved[:20]))
    monkeypatch.undo()
    assert got.ids == matches(beat, text).ids
    assert got.haystacks == {k: real(c) for k, c in beat.items()}
    assert set(made) == set(moved[:20]) | {f"c-{i:08x}" for i in range(400, 405)}
    if text == "task 12":  # typed on: the last matches and the rows read otherwise
        assert len(looked) <= len(before.ids) + 25 < len(beat)
