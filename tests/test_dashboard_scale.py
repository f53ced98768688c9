"""The dashboard at scale, driven with Pilot: a refresh touches only the rows that changed, rows
that end, leave the window or are deleted leave the pane, and only rows on screen are formatted."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, update

from parhelia.app.dashboard import ParheliaApp
from parhelia.state.live_views import LiveContainers
from parhelia.state.models import Container, Task
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.containers_table import ContainersTable, prepare_rows, row_cells
from parhelia.widgets.formatting import COLUMN_KEYS, order_key, sorted_ids
from parhelia.workers.control import ControlPlane

SIZE = (150, 45)
N = 300
T0 = utcnow().replace(microsecond=0)


@pytest.fixture
def seeded(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'scale.db'}")
    tasks, rows = [], []
    for i in range(N):
        tasks.append(
            {"id": f"t-{i:08x}", "prompt": f"task {i}", "backend": "local", "created_at": T0}
        )
        rows.append(
            {
                "id": f"c-{i:08x}",
                "backend": "local",
                "sandbox_id": f"sb-{i}",
                "task_id": f"t-{i:08x}",
                "state": "running",
                "health": "healthy",
                "created_at": T0 - timedelta(minutes=i),
                "started_at": T0 - timedelta(minutes=i),
                "last_heartbeat_at": T0,
                "cost_rate_per_hour": 0.25,
                "tags": {},
                "meta": {},
                "updated_at": T0,
            }
        )
    with store.write() as s:
        s.execute(insert(Task), tasks)
        s.execute(insert(Container), rows)
    clock = [T0 + timedelta(seconds=5)]
    control = ControlPlane(
        store, Settings(), default_backend="local", backends={}, clock=lambda: clock[0]
    )
    yield store, control, clock
    store.close()


async def refresh(pilot, app: ParheliaApp) -> None:
    n = app.refreshes
    app.request_refresh()
    deadline = time.monotonic() + 20
    while app.refreshes <= n:
        assert time.monotonic() < deadline, app.last_error
        await pilot.pause(0.01)
    await pilot.pause()


async def test_a_refresh_touches_changed_rows_and_ended_or_deleted_rows_leave(seeded):
    store, control, clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        t = app.query_one(ContainersTable)
        assert t.row_count == N and t.ordered_keys[0] == "c-00000000"  # youngest first
        # only the rows on screen were formatted, not all of them
        assert 0 < len(t._drawn) <= SIZE[1]
        versions = {k: t.row_version(k) for k in t.ordered_keys}

        store.record_heartbeats(
            [],
            [
                {
                    "id": "c-00000002",
                    "last_heartbeat_at": clock[0],
                    "missed_heartbeats": 3,
                    "health": "degraded",
                }
            ],
        )
        store.transition("c-00000003", "terminated", source="user", now=clock[0])
        with store.write() as s:
            s.execute(delete(Container).where(Container.id == "c-00000004"))
        await refresh(pilot, app)
        assert t.get_cell("c-00000002", "health").plain.endswith("degraded")
        assert t.get_cell("c-00000003", "state").plain.strip() == "terminated"
        assert "c-00000004" not in t.ordered_keys and t.row_count == N - 1
        moved = {k for k, v in versions.items() if k in t.ordered_keys and t.row_version(k) != v}
        assert moved == {"c-00000002", "c-00000003"}

        # an hour on, the ended row has left the window
        clock[0] += timedelta(hours=1, minutes=1)
        await refresh(pilot, app)
        assert "c-00000003" not in t.ordered_keys and t.row_count == N - 2
        assert t.selected is not None


def test_prepared_order_reuses_the_keys_of_unchanged_rows(seeded):
    store, control, clock = seeded
    live = LiveContainers()
    views = control.dashboard(live=live).containers
    first = prepare_rows(views, ("cost", True, ""), live.changed)
    assert len(first.order) == N and first.order[0] == f"c-{N - 1:08x}"  # the oldest cost most
    # a refresh where nothing moved: the same keys and the order as it was, not sorted again
    views = control.dashboard(live=live).containers
    again = prepare_rows(views, ("cost", True, ""), live.changed, first)
    assert live.changed == set() and again.order is first.order and again.keys == first.keys
    # a row whose key moved is keyed again and the order made again
    with store.write() as s:
        s.execute(
            update(Container)
            .where(Container.id == "c-00000005")
            .values(cost_accrued_usd=1000.0, updated_at=clock[0])
        )
    views = control.dashboard(live=live).containers
    moved = prepare_rows(views, ("cost", True, ""), live.changed, again)
    assert live.changed == {"c-00000005"} and moved.order[0] == "c-00000005"
    # another sort column or a filter: every key made for it
    by_age = prepare_rows(views, ("age", False, "state:running"), set(), moved)
    assert by_age.order[0] == "c-00000000" and len(by_age.keys) == N
    # the same, pausing between its steps (the next column's ordering, the filter's matches)
    steps = []
    given = prepare_rows(
        views, ("age", False, "state:running"), set(), moved, pause=lambda: steps.append(1)
    )
    assert len(steps) == 2 and given.order == by_age.order


def test_a_heartbeat_cycle_keeps_the_order_of_rows_sorted_by_heartbeat(seeded):
    """A heartbeat cycle stamps every row with one time: every HB key moves, no row's place, so
    the pane's order is the very list it was (not sorted, nor walked and compared again)."""
    store, control, clock = seeded
    live = LiveContainers()
    view = control.dashboard(live=live)
    first = prepare_rows(
        view.containers, ("heartbeat", False, ""), live.changed, samples=view.samples
    )
    store.record_heartbeats(
        [],
        [
            {"id": c.id, "last_heartbeat_at": clock[0], "missed_heartbeats": 0}
            for c in view.containers
        ],
    )
    before = view
    view = control.dashboard(live=live)
    again = prepare_rows(
        view.containers,
        ("heartbeat", False, ""),
        live.changed,
        first,
        reread=live.reread,
        samples=view.samples,
    )
    # every row beaten, none read whole, no view built: each row's sample moved beside its view
    assert live.changed == set() and live.reread == set()
    assert all(a is b for a, b in zip(view.containers, before.containers, strict=True))
    assert all(view.samples[c.id] is not before.samples[c.id] for c in view.containers)
    keys = again.orderings["heartbeat"].keys
    assert all(keys[c.id] != first.orderings["heartbeat"].keys[c.id] for c in view.containers)
    assert again.order is first.order
    assert again.order == sorted_ids(
        [(c.id, order_key(c, "heartbeat", None, view.samples[c.id])) for c in view.containers],
        reverse=False,
    )


def test_a_row_whose_agent_changed_is_keyed_again_when_sorted_by_agent(seeded):
    """The AGENT column comes from the view's side map, not the row: a change there alone (the
    container row untouched) must move the row, in the refresh thread's order and on screen."""
    from parhelia.state.agent_activity import Activity, AgentState

    _, control, _ = seeded
    live = LiveContainers()
    views = control.dashboard(live=live).containers
    a, b = "c-00000001", "c-00000002"

    def agents(kind_a: str) -> dict:
        return {
            a: AgentState(a, "ph-a", Activity(kind_a)),
            b: AgentState(b, "ph-b", Activity("working")),
        }

    first = prepare_rows(views, ("agent", False, ""), None, None, agents("idle"))
    assert first.order.index(b) < first.order.index(a)  # working before idle
    views = control.dashboard(live=live).containers
    assert live.changed == set()  # no row changed: only what agent a does
    again = prepare_rows(views, ("agent", False, ""), live.changed, first, agents("waiting"))
    assert again.order[0] == a  # waiting for its user comes first


def test_once_shows_the_youngest_rows_up_to_its_limit_and_all_with_all_rows(seeded, monkeypatch):
    from parhelia.app import once

    _, control, _ = seeded
    view = control.dashboard()
    monkeypatch.setattr(once, "ROW_LIMIT", 100)
    text = once.render_once(view, fmt="text", width=120)
    shown = [ln.split()[0] for ln in text.splitlines() if ln.startswith("c-")]
    assert shown == [f"c-{i:08x}" for i in range(100)]  # youngest first
    assert "… 200 more (the oldest); every row: parhelia tui --once --all" in text
    assert f"Containers ({N})" in text and f"Total: {N} containers" in text
    every = once.render_once(view, fmt="text", width=120, all_rows=True)
    assert len([ln for ln in every.splitlines() if ln.startswith("c-")]) == N
    assert "more (the oldest)" not in every


async def test_reverse_is_the_sorted_order_reversed_with_blank_rows_last(seeded):
    store, control, _ = seeded
    store.record_heartbeats(
        [],
        [{"id": f"c-{i:08x}", "last_heartbeat_at": None, "missed_heartbeats": 0} for i in (7, 9)],
    )
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        t = app.query_one(ContainersTable)
        for column in ("heartbeat", "cost", "id"):
            t.sort_by(column, reverse=False)
            t.sort_by(column, reverse=True)  # the same ordering read backwards
            scratch = sorted_ids(
                [(c.id, order_key(c, column)) for c in t.shown_rows], reverse=True
            )  # the same, sorted from scratch
            assert t.ordered_keys == scratch, column
            if column == "heartbeat":  # never seen: last either way
                assert t.ordered_keys[-2:] == ["c-00000007", "c-00000009"]


def test_readers_keep_a_small_page_cache_and_the_dashboard_a_small_writer_one(tmp_path):
    from sqlalchemy import text

    from parhelia.app.dashboard import DASHBOARD_WRITE_CACHE_KIB
    from parhelia.state import db

    def caches(store: Store) -> tuple[int, int]:
        with store.read() as s:
            read = s.execute(text("PRAGMA cache_size")).scalar()
        with store.write() as s:
            write = s.execute(text("PRAGMA cache_size")).scalar()
        return read, write

    daemon = Store(f"sqlite:///{tmp_path / 'a.db'}")
    dashboard = Store(f"sqlite:///{tmp_path / 'a.db'}", write_cache_kib=DASHBOARD_WRITE_CACHE_KIB)
    try:
        assert caches(daemon) == (-db.READ_CACHE_SIZE_KIB, -db.CACHE_SIZE_KIB)
        assert caches(dashboard) == (-db.READ_CACHE_SIZE_KIB, -DASHBOARD_WRITE_CACHE_KIB)
    finally:
        daemon.close()
        dashboard.close()


def test_no_heartbeat_or_price_moves_a_key_of_the_columns_said_to_keep_theirs(seeded):
    from parhelia.widgets.formatting import KEYS_KEPT_BY_HEARTBEATS, order_key

    store, control, clock = seeded
    live = LiveContainers()
    before = {c.id: c for c in control.dashboard(live=live).containers}
    store.record_heartbeats(
        [
            {
                "container_id": "c-00000001",
                "ts": clock[0],
                "cpu_percent": 50.0,
                "memory_mib": 100.0,
                "memory_percent": 5.0,
                "disk_percent": 1.0,
                "uptime_seconds": 1.0,
                "agent_alive": False,
            }
        ],
        [{"id": "c-00000002", "last_heartbeat_at": None, "missed_heartbeats": 9, "health": "dead"}],
    )
    clock[0] += timedelta(minutes=5)  # every active row's cost has moved: all priced again
    after = control.dashboard(live=live).containers
    assert live.reread == set() and len(live.changed) == N
    for c in after:
        for column in KEYS_KEPT_BY_HEARTBEATS:
            assert order_key(c, column) == order_key(before[c.id], column), (c.id, column)


# -- sort and filter keys: the main thread swaps in what a thread made -----------------------------


@contextmanager
def main_thread_calls(name: str | tuple[str, ...], module: str):
    """How many times the main thread calls functions named `name` in `module` (a file name):
    `sys.setprofile` is the calling thread's only, so a worker's calls are not counted."""
    calls = [0]
    names = (name,) if isinstance(name, str) else name

    def profile(frame, event, arg) -> None:
        code = frame.f_code
        if event == "call" and code.co_name in names and code.co_filename.endswith(module):
            calls[0] += 1

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def scratch_order(t: ContainersTable, column: str, reverse: bool = False) -> list[str]:
    f = ContainerFilter.parse(t.filter.text)
    wanted = [c for c in t._all if f.matches(c)]
    return sorted_ids(
        [(c.id, order_key(c, column, None, t._samples.get(c.id))) for c in wanted], reverse=reverse
    )


async def filter_bar_open(pilot, app: ParheliaApp):
    """The first refresh shown and `/` pressed: the table and its filter bar, settled."""
    from textual.widgets import Input

    await refresh(pilot, app)
    await pilot.press("slash")
    await settled(pilot, app)
    return app.query_one(ContainersTable), app.screen.query_one("#filter", Input)


async def settled(pilot, app: ParheliaApp) -> None:
    """Until the table's workers have made their orders and the table has shown them."""
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_s_swaps_in_the_order_the_refresh_made_and_keys_no_row_on_the_main_thread(seeded):
    _, control, _ = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        t.sort_by("rate")
        await refresh(pilot, app)  # made for rate, and cost: the next column in s's cycle
        t.select("c-00000010")
        with main_thread_calls("order_key", "formatting.py") as calls:
            await pilot.press("s")
        assert calls[0] == 0  # before: all N rows keyed for cost on the main thread
        assert (t.sort_column, t.sort_reverse) == ("cost", False)
        assert not t.order_pending and t.ordered_keys == scratch_order(t, "cost")
        assert t.selected.id == "c-00000010"  # the cursor stayed on its container
        with main_thread_calls("order_key", "formatting.py") as calls:
            await pilot.press("S")  # the same ordering read backwards
        assert calls[0] == 0 and t.ordered_keys == scratch_order(t, "cost", reverse=True)
        assert t.selected.id == "c-00000010"


async def test_an_order_not_made_yet_is_made_by_a_worker_and_shown_when_made(seeded, monkeypatch):
    _, control, _ = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)  # as past 2,000 rows
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        t.select("c-00000007")
        x = sum(c.width for c in t.columns[: COLUMN_KEYS.index("task")])
        with main_thread_calls("order_key", "formatting.py") as calls:
            await pilot.click(ContainersTable, offset=(x + 3, 1))  # the TASK header
            assert t.sort_column == "task" and "▲" in t._header[COLUMN_KEYS.index("task")][0]
            await settled(pilot, app)
        assert calls[0] == 0  # before: all N rows keyed for task on the main thread
        assert not t.order_pending and t.ordered_keys == scratch_order(t, "task")
        assert t.selected.id == "c-00000007"


async def test_a_filter_without_haystacks_kept_is_matched_in_a_worker(seeded, monkeypatch):
    _, control, _ = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        with main_thread_calls("haystack", "container_filter.py") as calls:
            t.set_filter("task 1")  # not through the bar: no haystacks made ahead
            assert t.order_pending
            await settled(pilot, app)
        assert calls[0] == 0  # every row's haystack made in the worker
        wanted = scratch_order(t, "age")
        assert t.filter.text == "task 1" and 0 < len(wanted) < N
        assert not t.order_pending and t.ordered_keys == wanted
        assert f"{len(wanted)} of {N} shown" in t.border_subtitle


async def test_a_keystroke_in_the_filter_bar_shows_its_rows_as_it_is_echoed(seeded, monkeypatch):
    """Past SYNC_ROWS rows too: `/` has the rows' haystacks made, each keystroke is matched from
    them as the key is handled (no worker, no haystack made on the main thread), so the frame
    that echoes it shows its rows; a refresh while the bar is open keeps them."""
    import asyncio

    from textual import events

    store, control, clock = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t, box = await filter_bar_open(pilot, app)
        assert t.searching
        # every container heartbeats: the refresh's views are all new objects, their text the same
        store.record_heartbeats(
            [],
            [
                {"id": f"c-{i:08x}", "last_heartbeat_at": clock[0], "missed_heartbeats": 0}
                for i in range(N)
            ],
        )
        await refresh(pilot, app)
        for typed in ("t", "ta", "task 1", "task 12", "state:run task 2", "health:!healthy"):
            box.value = ""
            for n, ch in enumerate(typed, 1):
                with main_thread_calls("haystack", "container_filter.py") as calls:
                    app.post_message(events.Key("space" if ch == " " else ch, ch))
                    while box.value != typed[:n]:
                        await asyncio.sleep(0)
                    # echoed: the table filters by it already, its rows in place
                    shown = (t.filter.text, t.order_pending, list(t.ordered_keys))
                assert calls[0] == 0, typed[:n]
                assert shown == (typed[:n].strip(), False, scratch_order(t, "age")), typed[:n]
        assert not any(w.group == "filter" for w in app.workers), "matched in a worker"
        await pilot.press("escape")
        assert not t.searching and t._matches is None  # nothing kept once the bar is closed


async def test_a_refresh_of_a_heartbeating_fleet_goes_over_no_row_on_the_main_thread(seeded):
    """The active count and the attention reasons (each a walk over every row) come from the
    refresh thread, and the table keeps no per-row versions to bump: a refresh after every row
    heartbeat costs the main thread what is on screen, not N rows."""
    store, control, clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        store.record_heartbeats(
            [],
            [
                {"id": f"c-{i:08x}", "last_heartbeat_at": clock[0], "missed_heartbeats": 0}
                for i in range(N)
            ],
        )
        clock[0] += timedelta(seconds=1)
        with main_thread_calls(("is_active", "attention"), "views.py") as calls:
            await refresh(pilot, app)
        assert calls[0] < N // 2  # the rows drawn ask (~3 each, 40 on screen), no walk of all N
        assert f"{N} active" in t.border_subtitle


def hold_worker_matches(monkeypatch, texts: set[str] | None = None):
    """Hold the filter workers' matching of `texts` (every text when None; never the main
    thread's limited try) until the returned event is set."""
    import threading

    from parhelia.widgets import containers_table
    from parhelia.widgets.container_order import matches

    release = threading.Event()

    def held(views, text, *args, **kw):
        if "limit" not in kw and (texts is None or text in texts):
            release.wait(20)
        return matches(views, text, *args, **kw)

    monkeypatch.setattr(containers_table, "matches", held)
    return release


async def test_a_filter_result_for_a_text_typed_over_is_never_shown(seeded, monkeypatch):
    from parhelia.widgets.container_order import matches

    _, control, _ = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0)
    first_may_end = hold_worker_matches(monkeypatch, {"task 1"})
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        try:
            t.set_filter("task 1")  # its worker waits
            t.set_filter("task 2")
            assert t.order_pending
            want_2 = set(scratch_order(t, "age"))
            await until_shown(pilot, t, want_2)
        finally:
            first_may_end.set()
        await settled(pilot, app)
        assert set(t.ordered_keys) == want_2  # task 1's result came last and was not shown
        # a result for another text, however it comes, is dropped
        t.post_message(ContainersTable.MatchesMade(matches(t._views, "task 3"), t._gen))
        await pilot.pause()
        assert set(t.ordered_keys) == want_2 and t.filter.text == "task 2"


async def until_shown(pilot, t: ContainersTable, ids: set[str]) -> None:
    deadline = time.monotonic() + 20
    while t.order_pending or set(t.ordered_keys) != ids:
        assert time.monotonic() < deadline
        await pilot.pause(0.01)


async def test_T_acts_on_the_filter_typed_even_while_its_rows_are_being_matched(
    seeded, monkeypatch
):
    """`shown_rows` (what `T` stops) is never the last filter's rows: made at once if pending."""
    _, control, _ = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0)
    release = hold_worker_matches(monkeypatch)
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        try:
            t.set_filter("task 4")
            assert t.order_pending and len(t.ordered_keys) == N  # still the unfiltered rows
            assert {c.id for c in t.shown_rows} == set(scratch_order(t, "age"))
            assert not t.order_pending and 0 < t.matched < N
        finally:
            release.set()
        await settled(pilot, app)


async def test_a_letter_typed_right_after_slash_goes_to_the_filter(seeded):
    """The terminal delivers `/` and the next letter back to back: the letter is the filter's
    first, not a key for the table (`s` re-sorted instead: focus moved a step later)."""
    from textual import events
    from textual.widgets import Input

    _, control, _ = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        sort_before = t.sort_column
        app.post_message(events.Key("slash", "/"))
        app.post_message(events.Key("s", "s"))
        await settled(pilot, app)
        assert app.screen.query_one("#filter", Input).value == "s"
        assert t.sort_column == sort_before


async def test_a_filter_keystroke_lays_out_nothing(seeded, monkeypatch):
    """The filter bar's text and the table's row count move with each keystroke; neither
    widget's size follows them, so no keystroke lays the whole screen out again (that layout
    and repaint of every pane was most of a keystroke's frame at 10,000 rows: bench/tui.py)."""
    import asyncio

    from textual import events
    from textual.screen import Screen

    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    layouts: list[int] = []
    real = Screen._refresh_layout

    def counted(self, *args, **kwargs):
        layouts.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    async with app.run_test(size=SIZE) as pilot:
        t, box = await filter_bar_open(pilot, app)
        rows = [len(t.ordered_keys)]
        layouts.clear()
        for n, ch in enumerate("task 12", 1):
            app.post_message(events.Key("space" if ch == " " else ch, ch))
            while box.value != "task 12"[:n]:
                await asyncio.sleep(0)
            await pilot.pause()
            rows.append(len(t.ordered_keys))
        assert len(set(rows)) > 2, rows  # the row count moved as it was typed
        assert layouts == [], f"{len(layouts)} layouts for {n} keystrokes"


async def test_a_refresh_pauses_for_a_key_until_its_frame_for_a_bounded_time(seeded):
    """From a key's arrival to the frame after it the refresh thread waits at its points
    (`LiveContainers.pause`, between its phases), but no refresh waits longer in all than
    KEY_WAIT_SECONDS: a held key cannot keep the view from moving."""
    from parhelia.app.key_pause import KEY_WAIT_SECONDS

    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        keys = app._keys
        assert app._live.pause == keys.wait
        cleared = []
        real_clear = keys.done.clear
        keys.done.clear = lambda: (cleared.append(1), real_clear())
        await pilot.press("down")
        await pilot.pause()
        assert cleared and keys.done.is_set()  # cleared by the key, set by its frame
        real_clear()  # a key whose frame has not come: a whole refresh's points
        keys.start_refresh()
        t = time.monotonic()
        for _ in range(5):
            keys.wait()
        assert KEY_WAIT_SECONDS - 0.05 < time.monotonic() - t < 0.5
        keys.done.set()


async def test_a_finished_order_or_filter_worker_keeps_no_refresh_views_alive(seeded, monkeypatch):
    """A finished worker lingers in reference cycles until the collector runs; what its job
    held (a refresh's views, the orderings before them) must not linger with it: under a
    heartbeating fleet at 10,000 rows that was 50,000-80,000 views for each young collection to
    walk (bench/tui.py). With the collector off, the views a refresh replaced are freed at once."""
    import gc
    import weakref

    from parhelia.app.gc_schedule import GcSchedule

    store, control, clock = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)  # orders in workers
    monkeypatch.setattr(GcSchedule, "young", lambda self: None)  # nothing collects but us
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        assert not gc.isenabled()  # the dashboard's schedule has taken over
        gc.collect()
        old = [weakref.ref(v) for v in t._views.values()]
        t.sort_by("task")  # made by a worker, from these views
        t.set_filter("task 1")  # matched by a worker, from these views
        for _ in range(200):
            if not t.order_pending and all(w.is_finished for w in app.workers):
                break
            await pilot.pause(0.01)
        assert not t.order_pending and t.sort_column == "task"
        store.record_heartbeats(  # every row a new view: a heartbeat that moves its health
            [],
            [
                {
                    "id": f"c-{i:08x}",
                    "last_heartbeat_at": clock[0],
                    "missed_heartbeats": 3,
                    "health": "degraded",
                }
                for i in range(N)
            ],
        )
        await refresh(pilot, app)
        await settled(pilot, app)
        assert t._views["c-00000007"].health == "degraded"  # a new view
        alive = sum(ref() is not None for ref in old)
        # at most the rows whose cells are kept to be drawn (`_drawn`), not the refresh's N
        assert alive <= len(t._drawn) < N, f"{alive} of {N} replaced views kept alive"


async def test_a_sort_key_retitles_the_pane_in_its_own_frame_and_same_titles_repaint_nothing(
    seeded, monkeypatch
):
    """The pane's subtitle names its sort and filter: set as the key's rows are shown, not from
    the `Changed` message after that frame (a second repaint of the whole pane per key); and
    Textual repaints a pane on every title it is given, so an unchanged one is not given."""
    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        t = app.query_one(ContainersTable)
        assert "· sort age" in t.border_subtitle
        t.action_cycle_sort()  # the key's handler, no message handled after it
        assert f"· sort {t.sort_column}" in t.border_subtitle and t.sort_column != "age"
        await pilot.pause()
        repaints = []
        monkeypatch.setattr(t, "refresh", lambda *a, **k: repaints.append(1))
        app.main_screen._update_titles(app.view)  # a refresh's titles, as they were
        assert repaints == []


async def test_an_ordering_made_for_older_views_is_put_right_by_keying_only_rows_read_whole(
    seeded, monkeypatch
):
    """When every view is new each refresh (a fleet whose heartbeats move every row's health),
    an ordering a worker made a refresh ago matched no view by identity and was made again from
    scratch (a chase of workers at 10,000 rows). For a column no heartbeat moves, only the rows
    read whole since can have moved: those are keyed again, on the main thread, and the order is
    the one made from scratch."""
    store, control, clock = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)  # as past 2,000 rows
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        t.sort_by("sandbox")
        await settled(pilot, app)
        await refresh(pilot, app)
        stale, generation = t._orderings["sandbox"], t._ordering_gen["sandbox"]
        # two rows read whole, every row's health moved by a heartbeat (every view new)
        for moved, health in (("c-00000003", "degraded"), ("c-00000009", "healthy")):
            with store.write() as s:
                s.execute(
                    update(Container)
                    .where(Container.id == moved)
                    .values(sandbox_id=f"zz-{moved}", updated_at=clock[0])
                )
            store.record_heartbeats(
                [],
                [
                    {"id": f"c-{i:08x}", "last_heartbeat_at": clock[0], "health": health}
                    for i in range(N)
                ],
            )
            clock[0] += timedelta(seconds=1)
            await refresh(pilot, app)
        assert stale.views is not t._views  # every view is another object since
        t._orderings["sandbox"], t._ordering_gen["sandbox"] = stale, generation
        with main_thread_calls("order_key", "formatting.py") as calls:
            made = t._ordering_for("sandbox")
        assert made is not None and calls[0] == 2  # the two rows read whole, no worker
        assert made.ascending == scratch_order(t, "sandbox")
        assert made.ascending[-2:] == ["c-00000003", "c-00000009"]
        t._rereads.clear()  # what was read whole is not known: nothing is put right here
        t._orderings["sandbox"], t._ordering_gen["sandbox"] = stale, generation
        assert t._ordering_for("sandbox") is None  # a worker makes it


async def test_a_key_pressed_while_the_store_is_read_gets_its_order_from_that_refresh(seeded):
    """The refresh thread asks the pane what order it wants once the store is read, not when
    the refresh began: a sort key pressed meanwhile gets its order made with the new rows (made
    for the older settings, it was stale on arrival and a worker made it again)."""
    import threading

    _, control, _ = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        reading, release = threading.Event(), threading.Event()
        real = control.dashboard

        def held(*args, **kw):
            reading.set()
            release.wait(20)
            return real(*args, **kw)

        control.dashboard = held
        n = app.refreshes
        app.request_refresh()
        while not reading.is_set():
            await pilot.pause(0.01)
        t.sort_by("gpu")  # a key while the store is read
        release.set()
        while app.refreshes <= n:
            await pilot.pause(0.01)
        assert app._prepared.settings == t.settings == ("gpu", False, "")
        assert set(app._prepared.orderings) == {"gpu", "sandbox"}


async def test_a_refresh_pauses_for_a_key_until_the_frame_that_shows_it_is_written(
    seeded, monkeypatch
):
    """The refresh thread pauses from a key's arrival to the first frame written after the key
    was handled. Textual's callbacks after a refresh ran before that frame (the screen was idle
    until the table's repaint reached it), so the refresh went on beside the key's frame."""
    from parhelia.app import key_pause

    monkeypatch.setattr(key_pause, "KEY_FRAME_SECONDS", 20.0)  # no fallback within the test
    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        frames, at_set = [], []
        display = app._display
        app._display = lambda screen, r: (frames.append(r is not None), display(screen, r))
        done = app._keys.done
        real_set = done.set
        done.set = lambda: (at_set.append(sum(frames)), real_set())
        for key in ("down", "s"):
            frames.clear(), at_set.clear()
            await pilot.press(key)
            deadline = time.monotonic() + 10
            while not done.is_set():
                assert time.monotonic() < deadline
                await pilot.pause(0.01)
            assert at_set and at_set[0] >= 1, (key, at_set)  # set by a frame written after it


async def test_a_refresh_slowed_down_still_pauses_for_a_key(seeded):
    """KEY_WAIT_SECONDS is what a refresh may wait in all, not a deadline from its start: a
    refresh slowed by a busy machine past it still gives way to a key."""
    from parhelia.app.key_pause import KEY_WAIT_SECONDS

    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        keys = app._keys
        keys.start_refresh()
        time.sleep(KEY_WAIT_SECONDS + 0.05)  # the refresh's work so far
        keys.done.clear()  # a key arrives
        t = time.monotonic()
        keys.wait()
        assert time.monotonic() - t > KEY_WAIT_SECONDS - 0.05
        keys.wait()  # its budget spent: no more waiting
        assert time.monotonic() - t < KEY_WAIT_SECONDS + 0.2
        keys.done.set()


async def test_a_refresh_collected_while_a_key_frame_is_awaited_is_shown_after_that_frame(seeded):
    """A refresh that lands between a key and the frame showing it waits for that frame: shown
    at once, its rows were drawn in the key's frame and the key waited for both."""
    _store, control, _clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await refresh(pilot, app)
        n = app.refreshes
        app._keys.done.clear()  # a key handled, its frame not drawn yet
        app.request_refresh()
        deadline = time.monotonic() + 20
        while app._keys.held is None:
            assert time.monotonic() < deadline
            await pilot.pause(0.01)
        await pilot.pause(0.05)
        assert app.refreshes == n and app._refreshing  # held: no second refresh meanwhile
        app._keys.frame_done()
        while app.refreshes == n:
            assert time.monotonic() < deadline
            await pilot.pause(0.01)
        assert app._keys.held is None and not app._refreshing and app._keys.done.is_set()


async def test_a_heartbeat_refresh_matches_the_filter_again_only_for_rows_whose_text_moved(
    seeded, monkeypatch
):
    """Under a heartbeating fleet every view is another object after each refresh; the rows'
    text is not. The refresh compared every row's text with its last view's and matched every row
    again (bench/tui.py). Now only the rows read whole or whose health moved are looked at."""
    from parhelia.widgets import container_order
    from parhelia.widgets.container_filter import ContainerFilter

    store, control, clock = seeded
    monkeypatch.setattr(ContainersTable, "SYNC_ROWS", 0, raising=False)
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t, _box = await filter_bar_open(pilot, app)
        for ch in "task 1":
            await pilot.press("space" if ch == " " else ch)
        await settled(pilot, app)
        await refresh(pilot, app)  # the refresh's own matches, for the text typed
        store.record_heartbeats(  # every row beaten; one's health moves
            [],
            [
                {"id": f"c-{i:08x}", "last_heartbeat_at": clock[0], "missed_heartbeats": 0}
                | ({"health": "unhealthy"} if i == 7 else {})
                for i in range(N)
            ],
        )
        clock[0] += timedelta(seconds=1)
        compared, looked = [], []
        real_from, real_select = container_order._haystack_from, ContainerFilter.select
        monkeypatch.setattr(
            container_order, "_haystack_from", lambda *a: compared.append(1) or real_from(*a)
        )
        monkeypatch.setattr(
            ContainerFilter,
            "select",
            lambda f, v, keys, h: real_select(f, v, looked.extend(keys) or looked, h),
        )
        await refresh(pilot, app)
        monkeypatch.undo()
        assert t._matches.views is t._views  # the refresh's matches, for these views
        assert (t.filter.text, t.order_pending) == ("task 1", False)
        assert t.ordered_keys == scratch_order(t, "age")
        assert compared == []  # before: every row's text compared with its last view's
        assert looked == ["c-00000007"]  # before: every row matched again


async def test_a_heartbeat_cycle_keeps_every_view_and_the_pane_shows_and_sorts_its_samples(seeded):
    """A heartbeat that moves no row's health builds no view (`state/samples.py`): the pane's
    views are the very objects it had, and what the heartbeat moved (HB, CPU, MEM) is shown and
    sorted from the samples beside them, as a full read of the rows would show it; a heartbeat
    that moves a row's health still gives it a new view."""
    store, control, clock = seeded
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(ContainersTable)
        await refresh(pilot, app)
        t.sort_by("cpu")
        await settled(pilot, app)
        before = dict(t._views)
        shown = t.ordered_keys[:3]  # rows on screen, drawn with their cells
        clock[0] += timedelta(seconds=2)
        store.record_heartbeats(
            [
                {
                    "container_id": f"c-{i:08x}",
                    "ts": clock[0],
                    "cpu_percent": float((i * 37) % 100),
                    "memory_mib": 100.0 + i,
                    "memory_percent": 1.0,
                    "disk_percent": 1.0,
                    "uptime_seconds": 5.0,
                    "agent_alive": True,
                }
                for i in range(N)
            ],
            [
                {"id": f"c-{i:08x}", "last_heartbeat_at": clock[0], "missed_heartbeats": 0}
                for i in range(N)
            ]
            + [{"id": "c-00000005", "last_heartbeat_at": clock[0], "health": "degraded"}],
        )
        versions = {k: t.row_version(k) for k in shown}
        await refresh(pilot, app)
        await settled(pilot, app)
        kept = [k for k in t._views if k != "c-00000005"]
        assert all(t._views[k] is before[k] for k in kept)  # no view built for a heartbeat
        assert t._views["c-00000005"] is not before["c-00000005"]  # its health moved
        assert all(t.row_version(k) != versions[k] for k in shown)  # drawn again all the same
        full = {c.id: c for c in control.dashboard().containers}  # a full read: whole views
        for k in t.ordered_keys[:10]:
            for column in ("cpu", "memory", "heartbeat", "health"):
                assert (
                    t.get_cell(k, column).plain
                    == row_cells(full[k], t.now, None)[COLUMN_KEYS.index(column)][0]
                ), (k, column)
        assert t.ordered_keys == sorted_ids(
            [(k, order_key(c, "cpu")) for k, c in full.items()], reverse=False
        )
        t.sort_by("memory")  # made from the samples too (a worker or the main thread)
        await settled(pilot, app)
        assert t.ordered_keys == sorted_ids(
            [(k, order_key(c, "memory")) for k, c in full.items()], reverse=False
        )
