"""Benchmark Claude Code's hooks as an activity source (issue 19): the wall time of one
`parhelia session hook PreToolUse` (what a tool call waits for when that hook is configured)
beside `parhelia help E200` (the CLI's start-up alone), inside a session and outside one; and the
one query a session listing makes for the hooks' word (`latest_activities`) with many activity
events in the store. A temporary SQLite store. Run: `python bench/agent_hooks.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.state.models import Container
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.agent_hooks import latest_activities, record_hook


def wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--containers", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    url = f"sqlite:///{root / 'bench.db'}"
    store = Store(url)
    ids = [f"c-{n:08x}" for n in range(args.containers)]
    with store.write() as s:
        for cid in ids:
            s.add(Container(id=cid, backend="local", state="running", health="healthy"))
    env = {**os.environ, "PARHELIA_DB_URL": url, "PARHELIA_BACKEND": "local"}
    env.pop("PARHELIA_CONTAINER_ID", None)
    cli = [sys.executable, "-m", "parhelia.app"]
    base = wall([*cli, "help", "E200"], env, args.runs)
    outside = wall([*cli, "session", "hook", "PreToolUse"], env, args.runs)
    inside = wall(
        [*cli, "session", "hook", "PreToolUse"], {**env, "PARHELIA_CONTAINER_ID": ids[0]}, args.runs
    )
    print(f"load {os.getloadavg()[0]:.2f} (1 min)")
    print(f"parhelia help E200 (start-up alone): {base * 1000:7.0f} ms")
    print(f"session hook, outside a session:     {outside * 1000:7.0f} ms ({outside / base:.2f}x)")
    print(f"session hook, inside a session:      {inside * 1000:7.0f} ms ({inside / base:.2f}x)")
    # many hook events: each container's activity changed every few seconds for the last window
    now = utcnow()
    for step in range(10):
        for n, cid in enumerate(ids):
            event = ("Notification", "Stop", "PreToolUse")[(step + n) % 3]
            record_hook(store, cid, event, now=now - timedelta(seconds=10 * (10 - step)))
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        found = latest_activities(store, ids, now)
        times.append(time.perf_counter() - started)
    assert len(found) == len(ids)
    print(
        f"latest_activities for {len(ids)} containers over {10 * len(ids)} events: "
        f"{statistics.median(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
