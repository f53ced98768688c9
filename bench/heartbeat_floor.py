"""What plain SQLite can ingest on this machine, without Parhelia. Run: `python bench/heartbeat_floor.py`.

The floor under issue 2's ingest target (50,000 heartbeat rows/s with 2,000,000 stored). Raw
`sqlite3` with the pragmas the store uses (WAL, synchronous NORMAL, 64 MB cache), 1,000 samples a
cycle (one per container), 100 cycles, the checkpoint of what they wrote included, and no container
updates or Python around it:

- direct: into the heartbeats table with its `(container_id, ts)` index, as the store does; each
  cycle dirties about one index page per container;
- staging: into a small table, merged into heartbeats in container order every N cycles, the
  cheapest design that keeps history indexed by container;
- direct + container updates: the direct inserts plus the rest of a poller cycle's work in the same
  transaction, as raw SQL: each sample's container row takes its heartbeat columns and newest
  sample (the store's own UPDATE, guarded against an older sample), and the heartbeats' foreign
  key is enforced. The floor of the whole cycle, where `direct` is the floor of its inserts.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

STORED = 2_000_000
CONTAINERS = 1_000
CYCLES = 100
TARGET = 50_000
COLUMNS = "container_id, ts, cpu, mem, memp, disk, up, alive"
INSERT = f"INSERT INTO {{table}} ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"


def connect(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "cache_size=-65536",
        "wal_autocheckpoint=20000",
    ):
        c.execute(f"PRAGMA {pragma}")
    return c


# The store's container row (bench/store.py seeds these values), and the poller's UPDATE of it:
# heartbeat columns and sample on each row that holds no newer sample (all of them here: the store
# then sends nothing more; state/bulk.py `_update_newer`).
CONTAINER_TABLE = """CREATE TABLE containers (id VARCHAR(32) NOT NULL PRIMARY KEY,
    backend VARCHAR(16) NOT NULL, sandbox_id VARCHAR(128), task_id VARCHAR(32),
    session_id VARCHAR(64), state VARCHAR(16) NOT NULL, health VARCHAR(16) NOT NULL,
    created_at DATETIME NOT NULL, started_at DATETIME, terminated_at DATETIME, exit_code INTEGER,
    termination_reason VARCHAR(64), terminated_by VARCHAR(64), last_heartbeat_at DATETIME,
    missed_heartbeats INTEGER NOT NULL, cpu_cores FLOAT NOT NULL, memory_mib INTEGER NOT NULL,
    gpu VARCHAR(32), region VARCHAR(32), cost_rate_per_hour FLOAT NOT NULL,
    cost_accrued_usd FLOAT NOT NULL, tags JSON NOT NULL, metadata JSON NOT NULL,
    updated_at DATETIME NOT NULL, last_sample_at DATETIME, last_cpu_percent FLOAT,
    last_memory_mib FLOAT, last_memory_percent FLOAT, last_agent_alive BOOLEAN)"""
NEWER = "(last_sample_at IS NULL OR last_sample_at <= ?)"
UPDATE = (
    "UPDATE containers SET last_heartbeat_at = ?, missed_heartbeats = ?, "
    + ", ".join(
        f"{col} = ?"
        for col in (
            "last_sample_at",
            "last_cpu_percent",
            "last_memory_mib",
            "last_memory_percent",
            "last_agent_alive",
        )
    )
    + f" WHERE id = ? AND {NEWER}"
)


def build(path: Path, ids: list[str]) -> None:
    c = connect(path)
    c.execute(CONTAINER_TABLE)
    t0 = "2026-11-23 00:00:00.000000"
    c.executemany(
        "INSERT INTO containers (id, backend, sandbox_id, task_id, state, health, created_at, "
        "started_at, last_heartbeat_at, missed_heartbeats, cpu_cores, memory_mib, "
        "cost_rate_per_hour, cost_accrued_usd, tags, metadata, updated_at) "
        "VALUES (?, 'modal', ?, ?, 'running', 'healthy', ?, ?, ?, 0, 2.0, 4096, 0.38, 0.0, "
        """'{"parhelia": "1"}', '{}', ?)""",
        [(x, f"sb-{i:06d}", f"t-{x[2:]}", t0, t0, t0, t0) for i, x in enumerate(ids)],
    )
    for table in ("heartbeats", "recent"):
        c.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, "
            "container_id TEXT NOT NULL REFERENCES containers (id) ON DELETE CASCADE, "
            "ts TEXT NOT NULL, cpu REAL, mem REAL, memp REAL, disk REAL, up REAL, alive INT)"
        )
    c.execute("BEGIN")
    c.executemany(
        INSERT.format(table="heartbeats"),
        (
            (ids[i % CONTAINERS], f"2026-11-23 00:00:00.{i // CONTAINERS:06d}", 1, 2, 3, 4, 5, 1)
            for i in range(STORED)
        ),
    )
    c.execute("COMMIT")
    c.execute("CREATE INDEX ix_heartbeats_container_ts ON heartbeats (container_id, ts)")
    c.execute("CREATE INDEX ix_heartbeats_ts ON heartbeats (ts)")
    c.execute("CREATE INDEX ix_recent_container_ts ON recent (container_id, ts)")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


class Cycles:
    """A variant's CYCLES cycles on the database at `path`, one `cycle(b)` call each, timed by
    itself, so a caller may run its own work between them (bench/store.py alternates them with
    the store's cycles: both then run under the same load). `merge_every` None inserts directly
    into heartbeats; `updates` also updates each sample's container row, with the heartbeats'
    foreign key enforced. After `finish()` (the checkpoint of what they wrote), `rate` holds rows/s
    and `cpu_ms` the CPU per cycle of the calling thread, where SQLite runs them."""

    def __init__(self, path: Path, ids: list[str], merge_every: int | None, updates: bool):
        self.ids, self.merge_every, self.updates = ids, merge_every, updates
        self.c = connect(path)
        if updates:
            self.c.execute("PRAGMA foreign_keys=ON")
        self.table = "heartbeats" if merge_every is None else "recent"
        self.wall = self.cpu = 0.0
        self.rate = self.cpu_ms = 0.0

    def cycle(self, b: int) -> None:
        t, cpu = time.perf_counter(), time.thread_time()
        c, ids, merge_every = self.c, self.ids, self.merge_every
        ts = f"2026-11-24 10:{b // 60:02d}:{b % 60:02d}.000000"
        c.execute("BEGIN")
        if self.updates:
            c.executemany(UPDATE, [(ts, 0, ts, 1, 2, 3, 1, x, ts) for x in ids])
        c.executemany(INSERT.format(table=self.table), [(x, ts, 1, 2, 3, 4, 5, 1) for x in ids])
        if merge_every and b % merge_every == merge_every - 1:
            c.execute(
                f"INSERT INTO heartbeats ({COLUMNS}) SELECT {COLUMNS} FROM recent "
                "ORDER BY container_id, ts"
            )
            c.execute("DELETE FROM recent")
        c.execute("COMMIT")
        self.wall += time.perf_counter() - t
        self.cpu += time.thread_time() - cpu

    def finish(self) -> None:
        t, cpu = time.perf_counter(), time.thread_time()
        self.c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.c.close()
        self.wall += time.perf_counter() - t
        self.cpu += time.thread_time() - cpu
        self.rate = CYCLES * len(self.ids) / self.wall
        self.cpu_ms = self.cpu * 1000 / CYCLES


VARIANTS = (  # name, merge every N cycles (None: direct), with the container updates
    ("direct", None, False),
    ("staging, merge every 10", 10, False),
    ("staging, merge every 30", 30, False),
    ("direct + container updates", None, True),
)


CPU_MS: dict[str, float] = {}  # variant name -> CPU ms per cycle, of its last measurement


class Floor:
    """One 2M-row database built in `tmp`, from which each variant runs on a fresh copy, alone
    (`run`) or a cycle at a time between a caller's own (`cycles`), as often as asked."""

    def __init__(self, tmp: Path, *, quiet: bool = False) -> None:
        self.ids = [f"c-{i:08x}" for i in range(CONTAINERS)]
        self.base, self.copy = tmp / "base.db", tmp / "run.db"
        t = time.perf_counter()
        build(self.base, self.ids)
        if not quiet:
            print(f"setup: {STORED:,} heartbeats in {time.perf_counter() - t:.1f} s")

    def cycles(self, name: str) -> Cycles:
        """The cycles of the variant `name`, on a fresh copy of the base."""
        merge_every, updates = next((m, u) for n, m, u in VARIANTS if n == name)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.copy}{suffix}").unlink(missing_ok=True)
        shutil.copy(self.base, self.copy)
        return Cycles(self.copy, self.ids, merge_every, updates)

    def run(self, name: str) -> float:
        """Rows/s of the variant `name`, run alone (its CPU per cycle left in `CPU_MS`)."""
        cycles = self.cycles(name)
        for b in range(CYCLES):
            cycles.cycle(b)
        cycles.finish()
        CPU_MS[name] = cycles.cpu_ms
        return cycles.rate


def floors(variants=VARIANTS, *, quiet: bool = False) -> dict[str, float]:
    """Rows/s of each variant (name -> rate), on a fresh copy of one 2M-row database each."""
    with tempfile.TemporaryDirectory() as tmp:
        floor = Floor(Path(tmp), quiet=quiet)
        return {name: floor.run(name) for name, _, _ in variants}


def main() -> int:
    for name, rate in floors().items():
        print(
            f"raw sqlite3, {name:<26} {rate:>9,.0f} rows/s   ratio to {TARGET:,}: {rate / TARGET:.2f}x"
            f"   CPU {CPU_MS[name]:.1f} ms per cycle"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
