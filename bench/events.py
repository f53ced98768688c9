"""Benchmark live events and export. Run: `python bench/events.py` (add `--delivery-only`,
`--export-only` or `--status-only` for one part).

- delivery: `parhelia events watch --json` runs as its own process on a fresh store; another
  process commits 250 events one by one (20-60 ms apart); each event's time from that commit to
  the line arriving on the watch's stdout. Prints p50/p95/max and the ratio to SPEC-20's 500 ms
  goal (target p95 < 200 ms).
- status: `parhelia status` on an empty store, best of 5 runs as a fresh process (target
  < 0.5 s), beside its floor measured in the same run (a fresh Python that imports the store,
  SQLAlchemy and SQLModel, and opens it: what no status can do without) and `parhelia help
  E200` (no database) for context.
- export: `parhelia events export` (the same `write_rows` the command runs) over 1,000,000
  events, as JSON lines and as CSV, to /dev/null. Target >= 100,000 rows/s. Beside it, in the same
  run, the floor: the same SELECT through plain sqlite3 and `json.dumps` of each tuple, no
  Parhelia; each format's ratio to it.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

sys.path.insert(0, str(Path(__file__).parent))
import store as store_bench

from parhelia.state.store import Store

N_DELIVERED = 250
GOAL_MS = 500.0
TARGET_P95_MS = 200.0
TARGET_ROWS_PER_S = 100_000
N_EXPORT = 1_000_000

WRITER = """
import random, sys, time
from parhelia.state.store import Store
store = Store(sys.argv[1])
random.seed(3)
for i in range(int(sys.argv[2])):
    time.sleep(random.uniform(0.02, 0.06))
    store.add_event("note", f"tick {i}")
    print(i, time.time(), flush=True)
store.close()
"""


def delivery(tmp: Path) -> bool:
    url = f"sqlite:///{tmp / 'live.db'}"
    Store(url).close()  # migrated before the watch opens it
    env = {**os.environ, "PARHELIA_DB_URL": url, "PARHELIA_BACKEND": "local"}
    watch = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "events", "watch", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    arrived: queue.Queue[tuple[float, dict]] = queue.Queue()

    def read() -> None:
        for line in watch.stdout:
            arrived.put((time.time(), json.loads(line)))

    threading.Thread(target=read, daemon=True).start()
    # ready when a marker written now comes through (the watch arms its watcher on start)
    marker = Store(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        marker.add_event("user.action", "ready")
        try:
            arrived.get(timeout=1.5)
            break
        except queue.Empty:
            continue
    marker.close()
    time.sleep(1.5)  # past the watch's start-up reads: from here only the watcher wakes it
    while not arrived.empty():
        arrived.get()
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, url, str(N_DELIVERED)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    committed = {int(i): float(t) for i, t in (line.split() for line in writer.stdout.splitlines())}
    got: dict[int, float] = {}
    deadline = time.monotonic() + 30
    while len(got) < N_DELIVERED and time.monotonic() < deadline:
        try:
            at, doc = arrived.get(timeout=1)
        except queue.Empty:
            continue
        if doc["type"] == "note":
            got[int(doc["message"].split()[1])] = at
    watch.terminate()
    watch.wait(timeout=10)
    lat = sorted((got[i] - committed[i]) * 1000 for i in got)
    p50 = statistics.median(lat)
    p95 = lat[int(len(lat) * 0.95) - 1]
    ok = len(lat) == N_DELIVERED and p95 < TARGET_P95_MS
    print(
        f"delivery over {len(lat)}/{N_DELIVERED} events: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {lat[-1]:.0f} ms; p95 is {p95 / GOAL_MS:.2f}x SPEC-20's {GOAL_MS:.0f} ms goal, "
        f"{p95 / TARGET_P95_MS:.2f}x the {TARGET_P95_MS:.0f} ms target  {'OK' if ok else 'MISSED'}"
    )
    return ok


def export(tmp: Path) -> bool:
    from parhelia.app.cli_events import write_rows

    store = Store(f"sqlite:///{tmp / 'export.db'}")
    ids = store_bench.seed_containers(store)
    t = time.perf_counter()
    store_bench.bulk_load(
        store,
        "events",
        ["ts", "type", "level", "container_id", "task_id", "message", "details", "source"],
        store_bench.event_rows(ids, N_EXPORT),
    )
    print(f"setup: {N_EXPORT:,} events in {time.perf_counter() - t:.1f} s")
    rt = SimpleNamespace(store=store)
    floor = raw_floor(tmp / "export.db")
    print(f"floor: plain sqlite3 SELECT + json.dumps per tuple at {floor:,.0f} rows/s")
    ok = True
    for fmt in ("jsonl", "csv"):
        with open(os.devnull, "w", encoding="utf-8") as f:
            t = time.perf_counter()
            n = write_rows(rt, f, fmt, {})
            rate = n / (time.perf_counter() - t)
        good = n == N_EXPORT and rate >= TARGET_ROWS_PER_S
        ok &= good
        print(
            f"export {fmt:<5} {n:,} rows at {rate:,.0f} rows/s; "
            f"{rate / TARGET_ROWS_PER_S:.2f}x the {TARGET_ROWS_PER_S:,} rows/s target, "
            f"{rate / floor:.2f}x the floor  "
            f"{'OK' if good else 'MISSED'}"
        )
    store.close()
    return ok


def raw_floor(path: Path) -> float:
    """Rows/s of the export's query through plain sqlite3, each row `json.dumps`ed as a tuple."""
    from parhelia.state.event_log import EVENT_ROW_COLUMNS

    cols = ", ".join(
        "replace(ts, ' ', 'T') || '+00:00'" if c == "ts" else c for c in EVENT_ROW_COLUMNS
    )
    conn = sqlite3.connect(path)
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    n = 0
    with open(os.devnull, "w", encoding="utf-8") as f:
        t = time.perf_counter()
        cursor = conn.execute(f"SELECT {cols} FROM events ORDER BY ts, id")
        while rows := cursor.fetchmany(10_000):
            f.write("".join([dumps(r) + "\n" for r in rows]))
            n += len(rows)
        rate = n / (time.perf_counter() - t)
    conn.close()
    return rate


def status(tmp: Path) -> bool:
    url = f"sqlite:///{tmp / 'empty.db'}"
    Store(url).close()
    env = {**os.environ, "PARHELIA_DB_URL": url, "PARHELIA_BACKEND": "local"}

    def best(*argv: str) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, *argv], env=env, capture_output=True)
            times.append(time.perf_counter() - t)
        return min(times)

    took = best("-m", "parhelia.app", "status")
    helped = best("-m", "parhelia.app", "help", "E200")
    # the floor: the interpreter, SQLAlchemy and SQLModel, the tables, and opening the store
    floor = best("-c", f"from parhelia.state.store import Store; Store({url!r}).close()")
    bare = best("-c", "pass")
    ok = took < 0.5
    print(
        f"status on an empty store: {took * 1000:.0f} ms; {took / 0.5:.2f}x the 500 ms target  "
        f"{'OK' if ok else 'MISSED'}\n"
        f"  floor (python + import the store + open it): {floor * 1000:.0f} ms, status is "
        f"{took / floor:.2f}x it, {(took - floor) * 1000:.0f} ms above it; "
        f"help E200 {helped * 1000:.0f} ms; bare python {bare * 1000:.0f} ms"
    )
    return ok


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if "--status-only" in sys.argv:
            return 0 if status(Path(tmp)) else 1
        if "--export-only" not in sys.argv and "--delivery-only" not in sys.argv:
            ok &= status(Path(tmp))
        if "--export-only" not in sys.argv:
            ok &= delivery(Path(tmp))
        if "--delivery-only" not in sys.argv:
            ok &= export(Path(tmp))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
