"""The dashboard at scale, driven with Pilot: a refresh touches only the rows that changed, rows
that end, leave the window or are deleted leave the pane, and only rows on screen are formatted."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, update

from parhelia.app.dashboard import ParheliaApp
from parhelia.state.live_views import LiveContainers
from parhelia.state.models import Container, Task
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.widgets.containers_table import ContainersTable, prepare_rows
from parhelia.widgets.formatting import order_key, sorted_ids
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
