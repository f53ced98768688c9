"""The store: SPEC-21 tables and fields, aware-UTC timestamps, SQLite pragmas, every query the
front ends and loops use, the indexes behind the hot ones, and `dashboard()`."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from parhelia.state.budget import BudgetConfig
from parhelia.state.costs import hourly_rate
from parhelia.state.enums import ContainerState, EventLevel, Health
from parhelia.state.errors import ParheliaError
from parhelia.state.models import (
    Container,
    Event,
    Heartbeat,
    ReconcilerRun,
    Task,
    UTCDateTime,
    new_container_id,
)
from parhelia.state.store import Store
from parhelia.state.views import ContainerView, DashboardView, EventView

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def container(cid: str, state: str = "running", **kw) -> Container:
    kw.setdefault("started_at", T0 - timedelta(hours=1) if state != "created" else None)
    return Container(id=cid, backend=kw.pop("backend", "modal"), state=state, **kw)


def sample(cid: str, ts: datetime, cpu: float = 10.0) -> dict:
    return {
        "container_id": cid,
        "ts": ts,
        "cpu_percent": cpu,
        "memory_mib": 256.0,
        "memory_percent": 6.0,
        "disk_percent": 20.0,
        "uptime_seconds": 60.0,
        "agent_alive": True,
    }


# -- schema ---------------------------------------------------------------------------------


def test_tables_of_the_control_plane_exist(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "tasks",
        "containers",
        "heartbeats",
        "events",
        "reconciler_runs",
        "leases",
        "settings",
    } <= tables


def test_container_columns_cover_spec21(store):
    cols = {c["name"] for c in inspect(store.engine).get_columns("containers")}
    assert {
        "id",
        "backend",
        "sandbox_id",
        "task_id",
        "session_id",
        "state",
        "health",
        "created_at",
        "started_at",
        "terminated_at",
        "updated_at",
        "exit_code",
        "termination_reason",
        "terminated_by",
        "last_heartbeat_at",
        "missed_heartbeats",
        "cpu_cores",
        "memory_mib",
        "gpu",
        "cost_rate_per_hour",
        "cost_accrued_usd",
        "tags",
        "metadata",
    } <= cols


def test_container_gets_its_own_id_and_no_sandbox_until_one_exists(store):
    assert all(re.fullmatch(r"c-[0-9a-f]{8}", new_container_id()) for _ in range(50))
    c = store.add_container(Container(backend="modal", tags={"parhelia": "1"}, meta={"k": [1]}))
    got = store.get_container(c.id)
    assert re.fullmatch(r"c-[0-9a-f]{8}", got.id)
    assert got.sandbox_id is None and got.state == "created" and got.health == "unknown"
    assert got.tags == {"parhelia": "1"} and got.meta == {"k": [1]}
    store.update_container(c.id, sandbox_id="sb-1")
    assert store.get_container("sb-1").id == c.id  # by sandbox id too


def test_sandbox_id_is_unique_per_backend_and_null_many_times(store):
    store.add_container(Container(id="c-00000001", backend="modal", sandbox_id="sb-1"))
    store.add_container(Container(id="c-00000002", backend="local", sandbox_id="sb-1"))
    store.add_container(Container(id="c-00000003", backend="modal"))
    store.add_container(Container(id="c-00000004", backend="modal"))  # two NULL sandbox ids
    with pytest.raises(IntegrityError):
        store.add_container(Container(id="c-00000005", backend="modal", sandbox_id="sb-1"))
    assert store.container_by_sandbox("local", "sb-1").id == "c-00000002"


def test_every_timestamp_column_is_aware_utc(store):
    from sqlmodel import SQLModel

    dt_cols = [
        (t.name, c.name)
        for t in SQLModel.metadata.sorted_tables
        for c in t.columns
        if "DATE" in str(c.type.__class__.__name__).upper() or isinstance(c.type, UTCDateTime)
    ]
    assert len(dt_cols) >= 12
    assert all(
        isinstance(SQLModel.metadata.tables[t].c[c].type, UTCDateTime) for t, c in dt_cols
    ), dt_cols


def test_timestamps_round_trip_as_aware_utc(store):
    plus2 = timezone(timedelta(hours=2))
    started = datetime(2026, 3, 10, 14, 30, tzinfo=plus2)  # 12:30 UTC
    store.add_container(container("c-00000001", started_at=started))
    got = store.get_container("c-00000001")
    assert got.started_at == started
    assert got.started_at.tzinfo is not None and got.started_at.utcoffset() == timedelta(0)
    assert got.started_at.hour == 12
    assert got.created_at.tzinfo is not None and got.updated_at.utcoffset() == timedelta(0)
    store.add_event("note", "m", ts=started)
    assert store.events()[0].ts.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store):
    with pytest.raises(StatementError, match="naive"):
        store.add_container(container("c-00000001", started_at=datetime(2026, 3, 10, 12, 0)))
    store.add_container(container("c-00000002"))
    with pytest.raises((StatementError, ValueError), match="naive"):
        store.record_heartbeats([sample("c-00000002", datetime(2026, 3, 10, 12, 0))])
    with pytest.raises((StatementError, ValueError), match="naive"):
        store.record_heartbeats(
            [], [{"id": "c-00000002", "last_heartbeat_at": datetime(2026, 3, 10, 12, 0)}]
        )
    assert store.heartbeat_history("c-00000002") == []


@pytest.mark.sqlite_only
def test_sqlite_connection_pragmas(store):
    for engine in (store.engine, store._write_engine):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() >= 4000


def test_foreign_keys_are_enforced(store):
    with pytest.raises(IntegrityError):
        store.record_heartbeats([sample("c-nosuch00", T0)])


# -- heartbeats -----------------------------------------------------------------------------


def test_record_heartbeats_writes_samples_updates_and_events_in_one_go(store):
    store.add_container(container("c-00000001"))
    store.add_container(container("c-00000002"))
    n = store.record_heartbeats(
        [sample("c-00000001", T0), sample("c-00000002", T0)],
        [
            {
                "id": "c-00000001",
                "last_heartbeat_at": T0,
                "missed_heartbeats": 0,
                "health": "healthy",
            },
            {"id": "c-00000002", "missed_heartbeats": 3, "health": "degraded"},
        ],
        [Event(ts=T0, type="container.health", container_id="c-00000002", new_value="degraded")],
    )
    assert n == 2
    a, b = store.get_container("c-00000001"), store.get_container("c-00000002")
    assert (a.last_heartbeat_at, a.health, a.missed_heartbeats) == (T0, "healthy", 0)
    assert (b.last_heartbeat_at, b.health, b.missed_heartbeats) == (None, "degraded", 3)
    assert [e.new_value for e in store.events(container_id="c-00000002")] == ["degraded"]


@pytest.mark.sqlite_only
def test_bulk_heartbeat_path_stores_exactly_what_the_orm_stores(store):
    """record_heartbeats binds values itself for speed; the bytes must match the ORM's."""
    store.add_container(container("c-00000001"))
    ts = datetime(2026, 3, 10, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    store.record_heartbeats([sample("c-00000001", ts)])
    store.merge_heartbeats()  # staged (SQLite), then merged: the bytes survive both
    with store.write() as s:
        s.add(Heartbeat(**sample("c-00000001", ts)))
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT container_id, ts, cpu_percent, memory_mib, agent_alive, typeof(ts) FROM heartbeats"
        ).all()
    assert rows[0] == rows[1]
    assert rows[0][1] == "2026-03-10 12:00:00.123456"
    got = store.heartbeat_history("c-00000001")
    assert all(h.ts == ts and h.ts.utcoffset() == timedelta(0) for h in got)


def test_heartbeat_history_is_latest_n_oldest_first_and_prunable(store):
    store.add_container(container("c-00000001"))
    store.add_container(container("c-00000002"))
    store.record_heartbeats(
        [sample("c-00000001", T0 + timedelta(seconds=30 * i), cpu=i) for i in range(10)]
        + [sample("c-00000002", T0, cpu=99)]
    )
    hist = store.heartbeat_history("c-00000001", limit=3)
    assert [h.cpu_percent for h in hist] == [7, 8, 9]
    since = store.heartbeat_history("c-00000001", since=T0 + timedelta(seconds=240))
    assert [h.cpu_percent for h in since] == [8, 9]
    assert store.prune_heartbeats(T0 + timedelta(seconds=60)) == 3  # two of c1, one of c2
    assert [h.cpu_percent for h in store.heartbeat_history("c-00000001")] == list(range(2, 10))


def latest_sample(store: Store, cid: str) -> tuple:
    c = store.get_container(cid)
    return (
        c.last_sample_at,
        c.last_cpu_percent,
        c.last_memory_mib,
        c.last_memory_percent,
        c.last_agent_alive,
    )


def test_container_row_keeps_its_newest_sample(store):
    """The dashboard reads the latest sample from the container row: it must be the newest by ts
    (the later one on a tie), whether or not the cycle also updates the row, and whatever order
    samples arrive in."""
    for i in (1, 2, 3):
        store.add_container(container(f"c-0000000{i}"))
    assert latest_sample(store, "c-00000001") == (None, None, None, None, None)
    t1, t2 = T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)
    store.record_heartbeats(
        [
            sample("c-00000001", t1, cpu=1),
            sample("c-00000001", T0, cpu=0),
            sample("c-00000002", T0, cpu=5),
            sample("c-00000002", T0, cpu=6),
        ],
        [{"id": "c-00000001", "missed_heartbeats": 0, "health": "healthy"}],
    )
    assert latest_sample(store, "c-00000001") == (t1, 1.0, 256.0, 6.0, True)
    assert latest_sample(store, "c-00000002")[:2] == (T0, 6.0)  # tie: the later one
    assert latest_sample(store, "c-00000003") == (None, None, None, None, None)
    # an older sample arriving late is stored but does not replace the newer one
    store.record_heartbeats(
        [sample("c-00000001", T0 - timedelta(seconds=30), cpu=9)],
        [{"id": "c-00000001", "last_heartbeat_at": t1, "missed_heartbeats": 0}],
    )
    assert latest_sample(store, "c-00000001")[:2] == (t1, 1.0)
    gone = {**sample("c-00000002", t2, cpu=0.0), "agent_alive": False}
    store.record_heartbeats([gone], [{"id": "c-00000002", "missed_heartbeats": 1}])
    assert latest_sample(store, "c-00000002") == (t2, 0.0, 256.0, 6.0, False)
    # a partial sample stores its columns' defaults, and so does the row
    store.record_heartbeats([{"container_id": "c-00000003", "ts": t2}])
    assert latest_sample(store, "c-00000003") == (t2, None, None, None, True)
    views = {v.id: v for v in store.container_views(now=t2)}
    assert (views["c-00000001"].cpu_percent, views["c-00000001"].agent_alive) == (1.0, True)
    assert (views["c-00000002"].cpu_percent, views["c-00000002"].agent_alive) == (0.0, False)
    assert views["c-00000002"].last_heartbeat_at is None  # the agent gone: no heartbeat
    # the sample each row holds is the one the heartbeats table says is newest
    store.merge_heartbeats()
    with store.engine.connect() as conn:
        for cid in ("c-00000001", "c-00000002", "c-00000003"):
            newest = conn.execute(
                select(Heartbeat.cpu_percent)
                .where(Heartbeat.container_id == cid)
                .order_by(Heartbeat.ts.desc(), Heartbeat.id.desc())
                .limit(1)
            ).scalar()
            assert newest == latest_sample(store, cid)[1]


def test_pruning_a_containers_last_sample_clears_it_from_the_row(store):
    store.add_container(container("c-00000001"))
    store.add_container(container("c-00000002"))
    store.record_heartbeats(
        [sample("c-00000001", T0, cpu=1), sample("c-00000002", T0 + timedelta(hours=1), cpu=2)]
    )
    assert store.prune_heartbeats(T0 + timedelta(minutes=30)) == 1
    assert latest_sample(store, "c-00000001") == (None, None, None, None, None)
    assert latest_sample(store, "c-00000002")[1] == 2.0
    views = {v.id: v for v in store.container_views(now=T0 + timedelta(hours=1))}
    assert views["c-00000001"].cpu_percent is None and views["c-00000002"].cpu_percent == 2.0


# -- container queries ----------------------------------------------------------------------


@pytest.fixture
def fleet(store):
    """Six containers over every state, two tasks, several healths."""
    store.add_task(Task(id="t-00000001", prompt="fix tests", backend="modal"))
    store.add_task(Task(id="t-00000002", prompt="write docs", backend="modal"))
    rate = hourly_rate(2, 4096)
    rows = [
        container("c-00000001", health="healthy", task_id="t-00000001", cost_rate_per_hour=rate,
                  started_at=T0 - timedelta(hours=2)),
        container("c-00000002", health="degraded", task_id="t-00000001", cost_rate_per_hour=rate,
                  started_at=T0 - timedelta(hours=1)),
        container("c-00000003", "created", health="unknown", task_id="t-00000002"),
        container("c-00000004", "orphaned", health="unknown", cost_rate_per_hour=1.0,
                  started_at=T0 - timedelta(hours=3)),
        container("c-00000005", "stopped", health="dead", cost_accrued_usd=0.5,
                  terminated_at=T0 - timedelta(minutes=10)),
        container("c-00000006", "terminated", health="healthy", cost_accrued_usd=1.25,
                  terminated_at=T0 - timedelta(days=2)),
    ]  # fmt: skip
    for r in rows:
        store.add_container(r)
    return store


def ids(rows):
    return sorted(r.id for r in rows)


def test_active_by_state_by_health_orphans_for_task(fleet):
    assert ids(fleet.active_containers()) == [
        "c-00000001",
        "c-00000002",
        "c-00000003",
        "c-00000004",
    ]
    assert ids(fleet.containers_by_state("running")) == ["c-00000001", "c-00000002"]
    assert ids(fleet.containers_by_state("terminated")) == ["c-00000006"]
    assert ids(fleet.containers_by_health("degraded")) == ["c-00000002"]
    assert ids(fleet.containers_by_health("healthy")) == ["c-00000001"]  # terminated excluded
    assert ids(fleet.orphans()) == ["c-00000004"]
    assert ids(fleet.containers_for_task("t-00000001")) == ["c-00000001", "c-00000002"]
    assert fleet.containers_for_task("t-nothing0") == []


def test_get_container_by_prefix_and_not_found(fleet):
    assert fleet.get_container("c-00000001").id == "c-00000001"
    with pytest.raises(ParheliaError) as err:
        fleet.get_container("c-0000000")  # ambiguous prefix: a coded error naming the candidates
    assert err.value.code == "E101"
    assert "c-00000001" in err.value.message and "c-00000002" in err.value.message
    # unique prefixes with or without `c-`, as Docker takes them
    assert fleet.get_container("00000001").id == "c-00000001"
    assert fleet.get_container("c-00000001"[:9] + "1").id == "c-00000001"
    with pytest.raises(ParheliaError) as err:
        fleet.get_container("ffff")
    assert err.value.code == "E204"
    with pytest.raises(ParheliaError):
        fleet.get_task("t-nope")


def test_transition_stamps_times_writes_event_and_refuses_invalid(fleet):
    c = fleet.transition("c-00000003", "running", source="system", now=T0)
    assert c.started_at == T0
    c = fleet.transition("c-00000003", "terminated", source="user", actor="alice", now=T0)
    assert c.terminated_at == T0
    ev = fleet.events(container_id="c-00000003")
    assert [(e.old_value, e.new_value) for e in ev] == [
        ("running", "terminated"),
        ("created", "running"),
    ]
    assert ev[0].actor == "alice" and ev[0].task_id == "t-00000002"
    with pytest.raises(ParheliaError) as err:
        fleet.transition("c-00000003", "running", source="system")
    assert err.value.code == "E105"
    with pytest.raises(ParheliaError) as err:
        fleet.update_container("c-00000006", state="running")
    assert err.value.code == "E105"
    assert fleet.get_container("c-00000006").state == "terminated"


# -- events ---------------------------------------------------------------------------------


@pytest.fixture
def events(store):
    spec = [
        # (minutes after T0, type, level, container, task)
        (0, "container.state", "info", "c-00000001", "t-1"),
        (1, "container.health", "warning", "c-00000001", "t-1"),
        (2, "container.health", "error", "c-00000001", "t-1"),
        (3, "container.state", "info", "c-00000002", "t-2"),
        (4, "budget", "warning", None, None),
        (5, "user.action", "info", "c-00000002", "t-2"),
        (6, "container.health", "debug", "c-00000001", "t-1"),
    ]
    for minute, typ, level, cid, tid in spec:
        store.add_event(
            typ,
            f"{typ} {minute}",
            level=level,
            container_id=cid,
            task_id=tid,
            ts=T0 + timedelta(minutes=minute),
        )
    return store


def minutes(evs):
    return [int((e.ts - T0).total_seconds() // 60) for e in evs]


def test_events_filters(events):
    assert minutes(events.events()) == [6, 5, 4, 3, 2, 1, 0]  # newest first
    assert minutes(events.events(oldest_first=True, limit=2)) == [0, 1]
    assert minutes(events.events(container_id="c-00000001")) == [6, 2, 1, 0]
    assert minutes(events.events(task_id="t-2")) == [5, 3]
    assert minutes(events.events(types=["container.health"])) == [6, 2, 1]
    assert minutes(events.events(types=["budget", "user.action"])) == [5, 4]
    assert minutes(events.events(level="warning")) == [4, 1]
    assert minutes(events.events(min_level=EventLevel.WARNING)) == [4, 2, 1]
    assert minutes(events.events(container_id="c-00000001", level="error")) == [2]
    window = events.events(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert minutes(window) == [4, 3, 2]
    assert minutes(events.events(limit=3)) == [6, 5, 4]
    last = events.events(limit=1)[0]
    assert events.events(after_id=last.id) == []
    assert minutes(events.events(after_id=last.id - 2, oldest_first=True)) == [5, 6]


# -- indexes: the hot queries never scan events or heartbeats ------------------------------


def plans_of(store: Store, fn) -> list[tuple[str, str]]:
    """Run `fn`, capturing every SELECT the store sends, and return (sql, plan) for each."""
    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    raw = sqlite3.connect(store.sqlite_path)
    try:
        return [
            (sql, " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params)))
            for sql, params in seen
        ]
    finally:
        raw.close()


@pytest.fixture
def busy(fleet):
    """Enough rows that a plan choosing a scan would be a real choice."""
    ids_ = [f"c-0000000{i}" for i in range(1, 5)]
    fleet.record_heartbeats(
        [sample(cid, T0 - timedelta(seconds=30 * k)) for k in range(50) for cid in ids_]
    )
    fleet.add_events(
        [
            Event(
                ts=T0 - timedelta(seconds=k), type="note", level=lv, container_id=cid, task_id="t"
            )
            for k in range(50)
            for cid in ids_
            for lv in ("info", "warning")
        ]
    )
    return fleet


def assert_no_table_scan(plans, *tables):
    for sql, plan in plans:
        for t in tables:
            assert not re.search(rf"\bSCAN {t}\b(?! USING)", plan), (sql, plan)


@pytest.mark.sqlite_only
def test_events_by_container_and_level_use_their_index(busy):
    plans = plans_of(busy, lambda: busy.events(container_id="c-00000001", level="warning"))
    assert len(plans) == 1
    _sql, plan = plans[0]
    assert "SEARCH events USING INDEX ix_events_container_level_ts" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the index gives the order too


@pytest.mark.sqlite_only
def test_events_by_task_and_by_container_use_an_index(busy):
    for kwargs, index in (
        ({"task_id": "t"}, "ix_events_task_ts"),
        ({"container_id": "c-00000002"}, "ix_events_container"),
        ({"types": ["note"]}, "ix_events_type_ts"),
    ):
        [(_sql, plan)] = plans_of(busy, lambda kw=kwargs: busy.events(**kw))
        assert f"SEARCH events USING INDEX {index}" in plan, (kwargs, plan)
        assert "TEMP B-TREE" not in plan, plan


@pytest.mark.sqlite_only
def test_latest_heartbeat_per_container_comes_from_the_container_row(busy):
    plans = plans_of(busy, lambda: busy.container_views(now=T0))
    assert plans and not [p for _, p in plans if "heartbeats" in p], plans
    assert all("SCAN containers" not in p or "ix_" not in p for _, p in plans)
    history = plans_of(busy, lambda: busy.heartbeat_history("c-00000001"))
    assert "SEARCH heartbeats USING INDEX ix_heartbeats_container_ts" in history[0][1]
    # and the samples not yet merged: a scan of at most MERGE_ROWS rows, without an index to keep
    assert [p for _, p in history[1:]] == ["SCAN heartbeats_staged | USE TEMP B-TREE FOR ORDER BY"]


@pytest.mark.sqlite_only
def test_containers_by_state_uses_its_index(busy):
    [(_sql, plan)] = plans_of(busy, lambda: busy.containers_by_state("running"))
    assert "SEARCH containers USING INDEX ix_containers_state" in plan, plan
    [(_sql, plan)] = plans_of(busy, lambda: busy.orphans())
    assert "ix_containers_state" in plan, plan


@pytest.mark.sqlite_only
def test_dashboard_never_scans_events_or_heartbeats(busy):
    plans = plans_of(busy, lambda: busy.dashboard(now=T0))
    assert len(plans) >= 4
    assert_no_table_scan(plans, "heartbeats", "events")


# -- dashboard ------------------------------------------------------------------------------


def test_dashboard_view(fleet):
    fleet.record_heartbeats(
        [
            sample("c-00000001", T0 - timedelta(seconds=60), cpu=5.0),
            sample("c-00000001", T0, cpu=42.0),
        ]
    )
    fleet.add_event("budget", "50% of budget", level="warning", ts=T0)
    fleet.record_run(
        ReconcilerRun(started_at=T0, finished_at=T0 + timedelta(seconds=1), listed=4, known=4)
    )
    fleet.acquire_lease(
        "host:1", 90, now=T0, interval_seconds=60, next_run_at=T0 + timedelta(minutes=1)
    )
    view = fleet.dashboard(now=T0, budget=BudgetConfig(ceiling_usd=10.0))
    assert isinstance(view, DashboardView)
    assert all(isinstance(c, ContainerView) for c in view.containers)
    shown = {c.id: c for c in view.containers}
    # active ones plus the one stopped ten minutes ago; the one ended two days ago is history
    assert set(shown) == {"c-00000001", "c-00000002", "c-00000003", "c-00000004", "c-00000005"}
    one = shown["c-00000001"]
    assert one.cpu_percent == 42.0 and one.memory_used_mib == 256.0 and one.agent_alive is True
    assert one.task_prompt == "fix tests"
    assert one.cost_accrued_usd == pytest.approx(2 * hourly_rate(2, 4096), rel=1e-6)
    assert shown["c-00000002"].cpu_percent is None  # no heartbeat yet
    assert all(isinstance(e, EventView) for e in view.events)
    assert view.events[-1].type == "budget"  # chronological, newest last
    b = view.budget
    assert b.ceiling_usd == 10.0 and b.period == "month"
    assert b.burn_rate_per_hour == pytest.approx(2 * hourly_rate(2, 4096) + 1.0)
    # this month: both ended containers' final cost, and the active ones' cost so far
    assert b.spent_usd == pytest.approx(0.5 + 1.25 + 3 * hourly_rate(2, 4096) + 3.0)
    day = fleet.dashboard(now=T0, budget=BudgetConfig(ceiling_usd=10.0, period="day")).budget
    assert day.spent_usd == pytest.approx(0.5 + 3 * hourly_rate(2, 4096) + 3.0)
    r = view.reconciler
    assert r.last_run_at == T0 + timedelta(seconds=1) and r.last_counts["listed"] == 4
    assert r.lease_holder == "host:1" and r.next_run_at == T0 + timedelta(minutes=1)
    assert not r.stale and view.counts["running"] == 2
    assert view.to_dict()["budget"]["ceiling_usd"] == 10.0


def test_dashboard_reports_a_stale_reconciler(fleet):
    fleet.record_run(ReconcilerRun(started_at=T0 - timedelta(minutes=3), finished_at=T0))
    fleet.record_run(ReconcilerRun(started_at=T0 - timedelta(minutes=2), error="list failed"))
    fleet.record_run(ReconcilerRun(started_at=T0 - timedelta(minutes=1), error="list failed"))
    view = fleet.dashboard(now=T0)
    assert view.reconciler.stale and view.reconciler.stale_since == T0 - timedelta(minutes=2)
    assert view.needs_attention


# -- lease and settings ---------------------------------------------------------------------


def test_lease_is_held_by_one_until_it_expires(store):
    assert store.acquire_lease("a", 60, now=T0)
    assert not store.acquire_lease("b", 60, now=T0 + timedelta(seconds=30))
    assert store.acquire_lease("a", 60, now=T0 + timedelta(seconds=30))  # renew
    assert store.acquire_lease("b", 60, now=T0 + timedelta(seconds=91))  # expired: taken over
    assert store.get_lease().holder == "b"
    store.release_lease("a")  # not the holder: no effect
    assert store.get_lease().holder == "b"
    store.release_lease("b")
    assert store.get_lease() is None


def test_settings_persist_with_actor(store):
    assert store.get_setting("budget.ceiling_usd", 25.0) == 25.0
    store.set_setting("budget.ceiling_usd", 40.0, actor="alice")
    store.set_setting("budget.policy", {"mode": "block"}, actor="bob")
    assert store.get_setting("budget.ceiling_usd") == 40.0
    assert store.settings_with_prefix("budget.") == {
        "budget.ceiling_usd": 40.0,
        "budget.policy": {"mode": "block"},
    }
    with store.read() as s:
        row = s.execute(text("SELECT updated_by FROM settings WHERE key='budget.policy'")).scalar()
    assert row == "bob"


def test_read_only_session_sees_committed_rows(store):
    store.add_container(container("c-00000001"))
    with store.read() as s:
        assert s.scalars(select(Container.id)).all() == ["c-00000001"]
    assert ContainerState("running") == "running" and Health("dead") == "dead"


# -- retention of events and reconciler runs (issue 11) ------------------------------------


def _history(store: Store, n: int, start: datetime) -> None:
    store.add_events([Event(ts=start + timedelta(minutes=k), type="note") for k in range(n)])
    for k in range(n):
        store.record_run(ReconcilerRun(started_at=start + timedelta(minutes=k), holder="h"))


def test_prune_history_deletes_the_oldest_in_bounded_batches(store):
    _history(store, 10, T0)
    cut = T0 + timedelta(minutes=7)  # rows 0..6 are due
    assert store.prune_history(cut, cut, limit=4) == (4, 4)
    assert store.prune_history(cut, cut, limit=4) == (3, 3)
    assert store.prune_history(cut, cut, limit=4) == (0, 0)
    assert sorted(e.ts for e in store.events(limit=100))[0] == cut
    assert min(r.started_at for r in store.runs(limit=100)) == cut
    assert store.prune_history(T0 + timedelta(days=1), T0) == (3, 0)  # each its own retention


@pytest.mark.sqlite_only  # reads SQLite's query plans; test_postgres checks the indexes there
def test_prune_history_goes_through_the_time_indexes_and_skips_writing_when_nothing_is_due(store):
    _history(store, 50, T0)
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    for engine in {store.engine, store._write_engine}:
        event.listen(engine, "before_cursor_execute", capture)
    try:
        assert store.prune_history(T0, T0) == (0, 0)
        assert not [s for s, _ in seen if s.lstrip().upper().startswith("DELETE")]
        store.prune_history(T0 + timedelta(minutes=5), T0 + timedelta(minutes=5), limit=3)
    finally:
        for engine in {store.engine, store._write_engine}:
            event.remove(engine, "before_cursor_execute", capture)
    raw = sqlite3.connect(store.sqlite_path)
    try:
        plans = [
            " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
            for sql, params in seen
            if sql.lstrip().upper().startswith(("DELETE", "SELECT"))
        ]
    finally:
        raw.close()
    assert len(plans) >= 4
    for plan in plans:
        assert "ix_events_ts" in plan or "ix_reconciler_runs_started" in plan, plan
        assert not re.search(r"SCAN (events|reconciler_runs)\b(?! USING)", plan), plan


def test_a_batch_of_events_is_one_insert_whatever_their_shapes(store):
    """A loop's events (some with an old value, some without, in any order) go in one statement:
    the ORM's bulk insert sent one per row when their None columns alternated (1,000 INSERTs in
    a PostgreSQL reconcile of 1,500 changes)."""
    from parhelia.state.event_log import event_fields, write_events

    rows = [
        event_fields("container.state", f"change {i}", old_value="running" if i % 2 else None)
        for i in range(50)
    ]
    inserts: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            inserts.append(statement)

    event.listen(store._write_engine, "before_cursor_execute", count)
    try:
        with store.write() as s:
            write_events(s, rows)
    finally:
        event.remove(store._write_engine, "before_cursor_execute", count)
    assert len(inserts) == 1
    stored = sorted(store.events(types=["container.state"], limit=100), key=lambda e: e.id)
    assert [e.message for e in stored] == [f"change {i}" for i in range(50)]
    assert [e.old_value for e in stored][:2] == [None, "running"]


def test_container_snapshot_gives_each_row_its_own_tags(store):
    """The snapshot decodes every row's tags in one go (state/projection.py `_json_all`): each
    row still gets exactly its own, whatever their text holds."""
    awkward = {"q": 'a "b", c]', "slash": "\\", "uni": "✓ ü", "nested": {"x": [1, None, {}]}}
    tags = {"c-00000001": awkward, "c-00000002": {}, "c-00000003": {"parhelia": "1"}}
    for cid, t in tags.items():
        store.add_container(container(cid, tags=t))
    rows = store.container_snapshot(["running"])
    assert {r.id: r.tags for r in rows} == tags


def test_many_plain_events_are_stored_as_given(store):
    """A loop's hundreds of plain event rows go in one statement (on PostgreSQL by COPY,
    state/event_log.py COPY_EVENTS): every field arrives as given, awkward text and JSON too."""
    from parhelia.state.event_log import COPY_EVENTS, event_fields

    awkward = 'a\tb\nc \\ d "e" \\N ✓'
    rows = [
        event_fields(
            "note",
            f"{awkward} {i}",
            level=EventLevel.WARNING if i % 2 else EventLevel.INFO,
            container_id=f"c-{i:08x}",
            old_value=None if i % 3 else "x",
            details={awkward: [i, None, {"k": awkward}]},
            ts=T0 + timedelta(seconds=i),
        )
        for i in range(COPY_EVENTS + 1)
    ]
    store.apply_changes(events=rows)
    with store.read() as s:
        got = [
            {k: getattr(e, k) for k in rows[0]} for e in s.scalars(select(Event).order_by(Event.id))
        ]
    assert got == rows


def test_applied_changes_store_every_field_whatever_their_shape(store):
    """On PostgreSQL changes go per shape through a staging table (JSON too); a field that is
    not a column of its name (`meta`, the `metadata` column) goes the ORM's way."""
    from parhelia.state.bulk import RowChange

    for cid in ("c-00000001", "c-00000002", "c-00000003"):
        store.add_container(container(cid))
    tags = {"parhelia": "1", "q": 'a "b" ✓'}
    applied = store.apply_changes(
        [
            RowChange("c-00000001", {"tags": tags, "sandbox_id": "sb-1"}, {"state": "running"}),
            RowChange("c-00000002", {"meta": {"rate_source": "x"}, "health": "dead"}, {}),
            RowChange("c-00000003", {"state": "terminated", "exit_code": 3}, {"state": "gone"}),
        ]
    )
    assert applied.changed == {"c-00000001", "c-00000002"}  # the third's row moved: skipped
    one, two, three = (store.get_container(f"c-0000000{i}") for i in (1, 2, 3))
    assert (one.tags, one.sandbox_id) == (tags, "sb-1")
    assert (two.meta, two.health) == ({"rate_source": "x"}, "dead")
    assert (three.state, three.exit_code) == ("running", None)


def test_the_budget_guards_rows_carry_what_prices_each_active_container(store: Store):
    store.add_container(
        Container(
            id="c-0000b001",
            backend="modal",
            state="running",
            started_at=T0 - timedelta(hours=1),
            cost_rate_per_hour=0.5,
            cost_accrued_usd=0.25,
            tags={"parhelia": "1"},
            meta={"billed_usd": 1.75, "rate_source": "x"},
        )
    )
    store.add_container(Container(id="c-0000b002", backend="local", state="orphaned"))
    store.add_container(Container(id="c-0000b003", backend="local", state="terminated"))
    rows = {r.id: r for r in store.priced_active()}
    assert set(rows) == {"c-0000b001", "c-0000b002"}
    r = rows["c-0000b001"]
    assert (r.state, r.cost_rate_per_hour, r.cost_accrued_usd, r.billed_usd) == (
        "running",
        0.5,
        0.25,
        1.75,
    )
    assert r.started_at == T0 - timedelta(hours=1) and r.tags == {"parhelia": "1"}
    assert rows["c-0000b002"].billed_usd is None and rows["c-0000b002"].tags == {}
