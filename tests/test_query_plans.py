"""Every query the dashboard, the detail view and the reconciler's snapshot send can use an index:
none scans containers, events or heartbeats whole. A store keeps every container it ever ran, so
a scan of `containers` grows with history, not with the fleet on screen (issue 18).

SQLite: `EXPLAIN QUERY PLAN` of each captured SELECT on the store as Parhelia leaves it (no
ANALYZE). PostgreSQL: `EXPLAIN` with sequential scans priced out, so a usable index is chosen."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import event, insert

from parhelia.state.keys import ACTIVE
from parhelia.state.live_views import LiveContainers
from parhelia.state.models import Container, Event, Task
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow

NOW = utcnow()
TABLES = ("containers", "events", "heartbeats")


def _history(store: Store) -> None:
    """20 live containers among 2,000 that ended days ago, with events and heartbeats."""
    rows, tasks = [], []
    for i in range(2_000):
        live = i < 20
        born = NOW - timedelta(days=3)
        tasks.append({"id": f"t-{i:08x}", "prompt": "p", "backend": "local", "created_at": born})
        rows.append(
            {
                "id": f"c-{i:08x}",
                "backend": "local",
                "sandbox_id": f"sb-{i}",
                "task_id": f"t-{i:08x}",
                "state": "running" if live else "terminated",
                "health": "healthy",
                "created_at": born,
                "started_at": born,
                "terminated_at": None if live else NOW - timedelta(days=2),
                "last_heartbeat_at": NOW,
                "tags": {},
                "meta": {},
                "updated_at": NOW,
            }
        )
    with store.write() as s:
        s.execute(insert(Task), tasks)
        s.execute(insert(Container), rows)
    store.add_events(
        [
            Event(
                ts=NOW - timedelta(seconds=k), type="note", level="info", container_id=f"c-{k:08x}"
            )
            for k in range(500)
        ]
    )
    store.record_heartbeats(
        [
            {
                "container_id": f"c-{i:08x}",
                "ts": NOW - timedelta(seconds=30 * k),
                "cpu_percent": 1.0,
                "memory_mib": 1.0,
                "memory_percent": 1.0,
                "disk_percent": 1.0,
                "uptime_seconds": 1.0,
                "agent_alive": True,
            }
            for i in range(20)
            for k in range(20)
        ]
    )


def _views(store: Store) -> None:
    store.dashboard(now=NOW)
    # a refreshing dashboard: its first read (the narrow read, then the rows whole by id), then
    # a refresh after a heartbeat cycle (the narrow read alone)
    live = LiveContainers()
    store.dashboard(now=NOW, live=live)
    store.record_heartbeats(
        [], [{"id": "c-00000001", "last_heartbeat_at": NOW, "missed_heartbeats": 1}]
    )
    store.dashboard(now=NOW, live=live)
    store.container_detail("c-00000001", now=NOW)
    store.container_snapshot(sorted({*ACTIVE, "stopped"}))


def _captured(store: Store, fn) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "pg_notify" not in statement:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        fn(store)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return seen


def test_sqlite_dashboard_detail_and_snapshot_never_scan_a_big_table(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        _history(store)
        seen = _captured(store, _views)
        raw = sqlite3.connect(store.sqlite_path)
        try:
            plans = [
                (sql, " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params)))
                for sql, params in seen
            ]
        finally:
            raw.close()
    finally:
        store.close()
    touched = {t for _, plan in plans for t in TABLES if re.search(rf"\b{t}\b", plan)}
    assert touched == set(TABLES), plans  # each table is read: the check below is not vacuous
    for sql, plan in plans:
        for table in TABLES:
            assert not re.search(rf"\bSCAN {table}\b(?! USING)", plan), (sql, plan)


def test_postgresql_dashboard_detail_and_snapshot_never_scan_a_big_table(pg_database):
    store = Store(pg_database)
    try:
        _history(store)
        seen = _captured(store, _views)
        plans = []
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("SET enable_seqscan = off")  # a usable index is then chosen
            for sql, params in seen:
                rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
                plans.append((sql, " | ".join(r[0] for r in rows)))
    finally:
        store.close()
    assert len(plans) >= 6
    for sql, plan in plans:
        for table in TABLES:
            # (heartbeats_staged: the few samples not yet merged, scanned by design)
            assert not re.search(rf"Seq Scan on {table}\b", plan), (sql, plan)


@pytest.mark.parametrize("analyzed", [False, True])
def test_sqlite_live_containers_read_through_the_state_index_even_after_analyze(tmp_path, analyzed):
    """`ANALYZE` (run by hand, or by a bench's bulk load) tells SQLite that `state` has two values
    in 2,000 rows; the live rows are 1 % of them all the same, and must not cost a scan."""
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        _history(store)
        if analyzed:
            raw = sqlite3.connect(store.sqlite_path)
            raw.execute("ANALYZE")
            raw.commit()
            raw.close()
        seen = _captured(
            store, lambda s: (s.dashboard(now=NOW), s.dashboard(now=NOW, live=LiveContainers()))
        )
        raw = sqlite3.connect(store.sqlite_path)
        try:
            plans = [
                " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
                for sql, params in seen
                if "FROM containers" in sql
            ]
        finally:
            raw.close()
    finally:
        store.close()
    assert plans
    for plan in plans:
        assert not re.search(r"\bSCAN containers\b(?! USING)", plan), plan
