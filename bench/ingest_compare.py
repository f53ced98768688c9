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

Beside each figure, the CPU time one 1,000-row cycle cost: the server's (all its processes, read
from /proc when the server runs on this machine, as `--db auto`'s does) and this process's. On a
shared machine rows/s follow the load; CPU per cycle does not, and says what rate one free core
would allow: 1,000 rows per (server + client) ms.

The PostgreSQL database must hold no Parhelia rows; the bench empties its tables again at the end.
"""

from __future__ import annotations

import os
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


class CpuMeter:
    """CPU time between `start()` and `stop()`, per cycle: this process's, and the PostgreSQL
    server's (what each process `pg_stat_activity` lists spent meanwhile, read from
    /proc/<pid>/stat; None when they are not readable here, as for a server on another machine)."""

    TICK_S = 1 / os.sysconf("SC_CLK_TCK")

    def __init__(self, store: Store, cycles: int = 0) -> None:
        self.store, self.cycles = store, cycles or sb.INGEST_BATCHES
        self.server_ms: float | None = None
        self.client_ms = 0.0

    def _server_cpu(self) -> dict[int, float] | None:
        """CPU seconds so far of each server process `pg_stat_activity` lists."""
        if self.store.engine.dialect.name != "postgresql":
            return None  # SQLite runs in this process: its CPU is the client's
        with self.store.engine.connect() as conn:
            pids = conn.exec_driver_sql("SELECT pid FROM pg_stat_activity").scalars().all()
        cpu = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                if pid == pids[0]:
                    return None  # not this machine's processes
                continue  # ended meanwhile
            cpu[pid] = (int(fields[11]) + int(fields[12])) * self.TICK_S  # utime + stime
        return cpu

    def start(self) -> None:
        self._server0, self._client0 = self._server_cpu(), time.process_time()

    def stop(self) -> None:
        client, server = time.process_time(), self._server_cpu()
        self.client_ms = (client - self._client0) * 1000 / self.cycles
        if server is not None and self._server0 is not None:
            # per process: one that ended meanwhile (an autovacuum worker) is left out, not
            # subtracted; one that started meanwhile counts whole
            spent = sum(s - self._server0.get(pid, 0.0) for pid, s in server.items())
            self.server_ms = spent * 1000 / self.cycles

    def __str__(self) -> str:
        server = "n/a" if self.server_ms is None else f"{self.server_ms:.1f} ms"
        if self.store.engine.dialect.name != "postgresql":
            server = "in this process"
        line = f"CPU per 1,000-row cycle: server {server}, client {self.client_ms:.1f} ms"
        cpu_ms = self.client_ms + (self.server_ms or 0.0)
        if server != "n/a" and cpu_ms:  # a cycle runs its steps one after another
            line += f" (one free core: {1e6 / cpu_ms:,.0f} rows/s)"
        return line


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


def pg_floor(
    store: Store, ids: list[str], *, indexed: bool, meter: CpuMeter | None = None
) -> float:
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
        if meter is not None:
            meter.start()
        t = time.perf_counter()
        for b in range(sb.INGEST_BATCHES):
            ts = sb.NOW + sb.timedelta(seconds=30 * (b + 1))
            with conn.cursor().copy(f"COPY bench_floor ({cols}) FROM STDIN") as copy:
                for cid in ids[: sb.INGEST_BATCH]:
                    copy.write_row((cid, ts, 10.0, 300.0, 7.0, 20.0, 60.0 * b, True))
            conn.commit()
        rate = sb.INGEST_BATCHES * sb.INGEST_BATCH / (time.perf_counter() - t)
        if meter is not None:
            meter.stop()
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
        return rate
    finally:
        raw.close()


def pg_rate(url: str) -> dict[str, tuple[float, str, CpuMeter]]:
    """Name -> (rows/s, load average just after, CPU per cycle) on PostgreSQL: the store on an
    empty table and with 2M stored (twice), and the indexed and index-less COPY floors, all in
    this run."""
    store = Store(url)
    try:
        counts = row_counts(store.engine)
        counts.pop("settings", None)  # the control-plane id, made by the open just above
        if any(counts.values()):
            raise SystemExit(f"{store.label} holds Parhelia rows; give the bench an empty database")
        ids = sb.seed_containers(store)

        def measured(run) -> tuple[float, str, CpuMeter]:
            meter = CpuMeter(store)
            return run(meter), sb.load_average(), meter

        out = {"empty": measured(lambda m: sb.ingest_bench(store, ids, meter=m))}
        t = time.perf_counter()
        pg_bulk_heartbeats(
            store,
            ((cid, ts.replace(tzinfo=sb.UTC), *rest) for cid, ts, *rest in _heartbeats(ids)),
        )
        print(
            f"postgresql setup: {sb.N_HEARTBEATS:,} heartbeats in {time.perf_counter() - t:.1f} s"
        )
        for run in (1, 2):
            out[f"stored {run}"] = measured(lambda m: sb.ingest_bench(store, ids, meter=m))
            out[f"floor {run}"] = measured(lambda m: pg_floor(store, ids, indexed=True, meter=m))
            out[f"bare floor {run}"] = measured(
                lambda m: pg_floor(store, ids, indexed=False, meter=m)
            )
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


def sqlite_rate() -> tuple[float, float, CpuMeter]:
    """(rows/s on an empty table, rows/s with 2M stored, CPU per cycle of the latter)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        ids = sb.seed_containers(store)
        empty = sb.ingest_bench(store, ids)
        sb.bulk_load(store, "heartbeats", HEARTBEAT_COLUMNS, sb.heartbeat_rows(ids))
        meter = CpuMeter(store)
        stored = sb.ingest_bench(store, ids, meter=meter)
        store.close()
    return empty, stored, meter


def main(url: str | None) -> int:
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
    lite_empty, lite_stored, lite_meter = sqlite_rate()
    load_lite = sb.load_average()
    print(f"heartbeat ingest, cycles of {sb.INGEST_BATCH:,} samples + {sb.INGEST_BATCH:,} updates")
    rows = [
        ("sqlite, empty table", lite_empty, load_lite, None),
        ("sqlite, 2M stored", lite_stored, load_lite, lite_meter),
        (f"postgresql, empty table ({label})", *pg["empty"]),
    ]
    for run in (1, 2):
        rows.append((f"postgresql, 2M stored, run {run}", *pg[f"stored {run}"]))
    for name, rate, load, meter in rows:
        sb.report(f"ingest: {name}", f"{rate:,.0f} rows/s", rate / 50_000, rate >= 50_000)
        print(f"    (load {load})" + (f"; {meter}" if meter else ""))
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
        print(f"    indexed floor {pg[f'floor {run}'][2]}")
        print(f"    index-less floor {pg[f'bare floor {run}'][2]}")
    best = max(pg["stored 1"][0], pg["stored 2"][0])
    return 0 if best >= 50_000 else 1
