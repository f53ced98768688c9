"""Commit in one process to change signal in another, on PostgreSQL (LISTEN/NOTIFY).

Run: `python bench/pg_notify.py [--db postgresql+psycopg://...]` (without --db it starts a
throwaway server as the tests do). A writer process commits one event every 200 ms and prints each
commit's wall time; this process listens as the dashboard does (`workers.db_watch.watch_store`,
with its burst grouping) and notes when each signal arrives. Target: p95 < 500 ms.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.pg_server

from parhelia.state.store import Store
from parhelia.workers.db_watch import watch_store

N = 60
WRITER = """
import sys, time
from parhelia.state.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    time.sleep(0.2)
    store.add_event("note", f"write {i}")
    print(time.time(), flush=True)
store.close()
"""


def measure(url: str) -> list[float]:
    Store(url).close()  # migrated before anyone listens
    arrivals: list[float] = []
    stop = threading.Event()
    listener = threading.Thread(
        target=watch_store, args=(url, lambda: arrivals.append(time.time()), stop), daemon=True
    )
    listener.start()
    time.sleep(1.0)  # bench only: let LISTEN start before the first commit
    out = subprocess.run(
        [sys.executable, "-c", WRITER, url, str(N)], capture_output=True, text=True, check=True
    ).stdout
    time.sleep(1.0)
    stop.set()
    listener.join(5)
    commits = [float(x) for x in out.split()]
    latencies = []
    for c in commits:
        after = [a for a in arrivals if a >= c]
        if after:
            latencies.append((after[0] - c) * 1000)
    return latencies


def main() -> int:
    cluster = None
    if "--db" in sys.argv:
        url = sys.argv[sys.argv.index("--db") + 1]
    else:
        from tests.pg_server import PgCluster

        cluster = PgCluster.start(durable=True)
        cluster.admin("CREATE DATABASE bench_notify")
        url = cluster.url("bench_notify")
    try:
        lat = sorted(measure(url))
    finally:
        if cluster is not None:
            cluster.stop()
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(f"commit -> change signal in another process, {len(lat)}/{N} commits heard")
    print(
        f"median {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms, max {lat[-1]:.0f} ms  "
        f"ratio to target (500 ms) {500 / p95:.2f}x  {'OK' if p95 < 500 and len(lat) == N else 'MISSED'}"
    )
    return 0 if p95 < 500 and len(lat) == N else 1


if __name__ == "__main__":
    sys.exit(main())
