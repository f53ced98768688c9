"""Heartbeat ingest on SQLite and on a PostgreSQL database side by side (`bench/store.py --db URL`;
`--db auto` starts a throwaway PostgreSQL 15 server on 127.0.0.1 as the tests do, with PostgreSQL's
default durability: fsync on, synchronous_commit on).

Each database gets 1,000 containers and 2,000,000 stored heartbeats (bulk-loaded, indexes rebuilt
after), then 100 poller-shaped cycles through `Store.record_heartbeats`: 1,000 samples plus the
1,000 container updates in one transaction each. Target: >= 50,000 rows/s on PostgreSQL.

The floor, on the same server in the same run: plain psycopg `COPY` of 1,000 rows per committed
transaction into a copy of the heartbeats table (same indexes) holding the same 2,000,000 rows, with
no container updates: what the server and the machine allow at all.

The PostgreSQL database must hold no Parhelia rows; the bench empties its tables again at the end.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.pg_server

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


def pg_floor(store: Store, ids: list[str]) -> float:
    """rows/s of plain COPY, 1,000 rows per commit, into an indexed table of 2M heartbeats."""
    raw = store._write_engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("CREATE TABLE bench_floor (LIKE heartbeats INCLUDING ALL)")
        conn.execute("INSERT INTO bench_floor SELECT * FROM heartbeats")
        conn.commit()
        conn.execute("ANALYZE bench_floor")
        conn.commit()
        cols = ",".join(HEARTBEAT_COLUMNS)
        t = time.perf_counter()
        for b in range(sb.INGEST_BATCHES):
            ts = sb.NOW + sb.timedelta(seconds=30 * (b + 1))
            with conn.cursor().copy(f"COPY bench_floor ({cols}) FROM STDIN") as copy:
                for cid in ids[: sb.INGEST_BATCH]:
                    copy.write_row((cid, ts, 10.0, 300.0, 7.0, 20.0, 60.0 * b, True))
            conn.commit()
        rate = sb.INGEST_BATCHES * sb.INGEST_BATCH / (time.perf_counter() - t)
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
        return rate
    finally:
        raw.close()


def pg_rate(url: str) -> tuple[float, float, float]:
    """(rows/s on an empty table, rows/s with 2M stored, the floor's rows/s) on PostgreSQL."""
    store = Store(url)
    try:
        counts = row_counts(store.engine)
        counts.pop("settings", None)  # the control-plane id, made by the open just above
        if any(counts.values()):
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
        stored = sb.ingest_bench(store, ids)
        return empty, stored, pg_floor(store, ids)
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


def main(url: str | None) -> int:
    import os

    cluster = None
    if url in (None, "auto"):
        from tests.pg_server import PgCluster

        cluster = PgCluster.start(durable=True)
        cluster.admin("CREATE DATABASE bench_ingest")
        url = cluster.url("bench_ingest")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    try:
        label = Store(url, migrate=False).label
        pg_empty, pg_stored, floor = pg_rate(url)
    finally:
        if cluster is not None:
            cluster.stop()
    lite_empty, lite_stored = sqlite_rate()
    print(f"heartbeat ingest, cycles of {sb.INGEST_BATCH:,} samples + {sb.INGEST_BATCH:,} updates")
    for name, rate in (
        ("sqlite, empty table", lite_empty),
        ("sqlite, 2M stored", lite_stored),
        (f"postgresql, empty table ({label})", pg_empty),
        ("postgresql, 2M stored", pg_stored),
    ):
        sb.report(f"ingest: {name}", f"{rate:,.0f} rows/s", rate / 50_000, rate >= 50_000)
    print(
        f"floor (plain COPY of 1,000 rows per commit, 2M stored, no updates): {floor:,.0f} rows/s; "
        f"postgresql/floor {pg_stored / floor:.2f}, postgresql/sqlite {pg_stored / lite_stored:.2f}"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end")
    return 0 if pg_stored >= 50_000 else 1
