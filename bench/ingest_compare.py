"""Heartbeat ingest on SQLite and on a PostgreSQL database side by side (`bench/store.py --db URL`).

Each database gets 1,000 containers and 2,000,000 stored heartbeats (bulk-loaded, indexes rebuilt
after), then 100 poller-shaped cycles through `Store.record_heartbeats`: 1,000 samples plus the
1,000 container updates in one transaction each. Target: >= 50,000 rows/s on PostgreSQL.

The PostgreSQL database must hold no Parhelia rows; the bench empties its tables again at the end.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import store as sb  # bench/store.py: run as `python bench/store.py --db URL`
from sqlalchemy import text

from parhelia.state.copy import row_counts, tables
from parhelia.state.store import Store

HEARTBEAT_COLUMNS = [
    "container_id",
    "ts",
    "cpu_percent",
    "memory_mib",
    "memory_percent",
    "disk_percent",
    "uptime_seconds",
    "agent_alive",
]


def pg_bulk_heartbeats(store: Store, rows) -> None:
    """COPY the rows into heartbeats with its indexes dropped, then rebuild them from their DDL."""
    raw = store._write_engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.transaction():
            ddl = [
                r[0]
                for r in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'heartbeats' "
                    "AND indexname LIKE 'ix_%'"
                )
            ]
            for stmt in ddl:
                conn.execute("DROP INDEX " + stmt.split()[2])
            with conn.cursor().copy(
                f"COPY heartbeats ({','.join(HEARTBEAT_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            for stmt in ddl:
                conn.execute(stmt)
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        raw.close()


def pg_rate(url: str) -> tuple[float, float]:
    """(rows/s on an empty table, rows/s with 2M stored) on PostgreSQL."""
    store = Store(url)
    try:
        if any(row_counts(store.engine).values()):
            raise SystemExit(f"{store.label} holds Parhelia rows; give the bench an empty database")
        ids = sb.seed_containers(store)
        empty = sb.ingest_bench(store, ids)
        t = time.perf_counter()
        pg_bulk_heartbeats(
            store,
            ((cid, ts.replace(tzinfo=sb.UTC), *rest) for cid, ts, *rest in _heartbeats(ids)),
        )
        print(
            f"postgresql setup: {sb.N_HEARTBEATS:,} heartbeats in {time.perf_counter() - t:.1f} s"
        )
        return empty, sb.ingest_bench(store, ids)
    finally:
        with store.write() as s:
            names = ", ".join(t.name for t in tables())
            s.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        store.close()


def _heartbeats(ids):
    from datetime import datetime

    for row in sb.heartbeat_rows(ids):
        yield (row[0], datetime.fromisoformat(row[1]), *row[2:])


def sqlite_rate() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        ids = sb.seed_containers(store)
        empty = sb.ingest_bench(store, ids)
        sb.bulk_load(store, "heartbeats", HEARTBEAT_COLUMNS, sb.heartbeat_rows(ids))
        stored = sb.ingest_bench(store, ids)
        store.close()
    return empty, stored


def main(url: str) -> int:
    pg_empty, pg_stored = pg_rate(url)
    lite_empty, lite_stored = sqlite_rate()
    label = Store(url, migrate=False).label
    print(f"heartbeat ingest, cycles of {sb.INGEST_BATCH:,} samples + {sb.INGEST_BATCH:,} updates")
    for name, rate in (
        ("sqlite, empty table", lite_empty),
        ("sqlite, 2M stored", lite_stored),
        (f"postgresql, empty table ({label})", pg_empty),
        ("postgresql, 2M stored", pg_stored),
    ):
        sb.report(f"ingest: {name}", f"{rate:,.0f} rows/s", rate / 50_000, rate >= 50_000)
    return 0 if pg_stored >= 50_000 else 1
