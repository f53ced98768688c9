"""Heartbeat ingest on SQLite and on a PostgreSQL database side by side (`bench/store.py --db URL`;
`--db auto` starts a throwaway PostgreSQL 15 server on 127.0.0.1 as the tests do, with PostgreSQL's
default durability: fsync on, synchronous_commit on).

Each database gets 1,000 containers and 2,000,000 stored heartbeats (bulk-loaded, indexes rebuilt
after), then 100 poller-shaped cycles through `Store.record_heartbeats`: 1,000 samples plus the
1,000 container updates in one transaction each. Target: >= 50,000 rows/s on PostgreSQL.

The floors, on the same server in the same run, each measured twice beside the store: plain
psycopg `COPY` of 1,000 rows per committed transaction into a copy of the heartbeats table holding
the same 2,000,000 rows, with its indexes and with none (no index, no foreign key, no container
updates: what the server and the machine allow at all). The load average is printed beside each.

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


def pg_floor(store: Store, ids: list[str], *, indexed: bool) -> float:
    """rows/s of plain COPY, 1,000 rows per commit, into a copy of the heartbeats table holding
    its 2M rows: with its indexes (`indexed`) or with none (the server's and machine's bare
    floor: no index, no foreign key, no container update, no Python around the store)."""
    raw = store._write_engine.raw_connection()
    try:
        conn = raw.driver_connection
        like = "INCLUDING ALL" if indexed else "INCLUDING DEFAULTS"
        conn.execute(f"CREATE TABLE bench_floor (LIKE heartbeats {like})")
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


def pg_rate(url: str) -> dict[str, tuple[float, str]]:
    """Name -> (rows/s, load average just after) on PostgreSQL: the store on an empty table and
    with 2M stored (twice), and the indexed and index-less COPY floors, all in this run."""
    store = Store(url)
    try:
        counts = row_counts(store.engine)
        counts.pop("settings", None)  # the control-plane id, made by the open just above
        if any(counts.values()):
            raise SystemExit(f"{store.label} holds Parhelia rows; give the bench an empty database")
        ids = sb.seed_containers(store)
        out = {"empty": (sb.ingest_bench(store, ids), sb.load_average())}
        t = time.perf_counter()
        pg_bulk_heartbeats(
            store,
            ((cid, ts.replace(tzinfo=sb.UTC), *rest) for cid, ts, *rest in _heartbeats(ids)),
        )
        print(
            f"postgresql setup: {sb.N_HEARTBEATS:,} heartbeats in {time.perf_counter() - t:.1f} s"
        )
        for run in (1, 2):
            out[f"stored {run}"] = (sb.ingest_bench(store, ids), sb.load_average())
            out[f"floor {run}"] = (pg_floor(store, ids, indexed=True), sb.load_average())
            out[f"bare floor {run}"] = (pg_floor(store, ids, indexed=False), sb.load_average())
        return out
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
        pg = pg_rate(url)
    finally:
        if cluster is not None:
            cluster.stop()
    lite_empty, lite_stored = sqlite_rate()
    load_lite = sb.load_average()
    print(f"heartbeat ingest, cycles of {sb.INGEST_BATCH:,} samples + {sb.INGEST_BATCH:,} updates")
    rows = [
        ("sqlite, empty table", lite_empty, load_lite),
        ("sqlite, 2M stored", lite_stored, load_lite),
        (f"postgresql, empty table ({label})", *pg["empty"]),
    ]
    for run in (1, 2):
        rows.append((f"postgresql, 2M stored, run {run}", *pg[f"stored {run}"]))
    for name, rate, load in rows:
        sb.report(f"ingest: {name}", f"{rate:,.0f} rows/s", rate / 50_000, rate >= 50_000)
        print(f"    (load {load})")
    for run in (1, 2):
        stored, floor, bare = (pg[f"{k} {run}"][0] for k in ("stored", "floor", "bare floor"))
        print(
            f"run {run}: postgresql {stored:,.0f} rows/s; floors of the same run, plain COPY of "
            f"1,000 rows per commit over 2M rows: indexed {floor:,.0f} rows/s "
            f"(load {pg[f'floor {run}'][1]}), index-less {bare:,.0f} rows/s "
            f"(load {pg[f'bare floor {run}'][1]}); postgresql/indexed floor {stored / floor:.2f}, "
            f"postgresql/index-less floor {stored / bare:.2f}, postgresql/sqlite "
            f"{stored / lite_stored:.2f}"
        )
    best = max(pg["stored 1"][0], pg["stored 2"][0])
    return 0 if best >= 50_000 else 1
