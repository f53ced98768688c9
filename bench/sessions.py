"""Benchmark what running local agents in tmux sessions costs (issue 19): time from `create` to the
agent's first log line, and `terminate` of a running agent, with and without tmux; and reading one
session's state and screen (what `parhelia session list` does per container). Real processes and a
real tmux under a temporary root. Run: `python bench/sessions.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.workers import sessions
from parhelia.workers.backends.base import SandboxSpec
from parhelia.workers.backends.local import LocalBackend

AGENT = [sys.executable, "-c", "print('up', flush=True); import time; time.sleep(60)"]


def until(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.002)


def run(tmux: bool, runs: int) -> tuple[list[float], list[float], list[float]]:
    backend = LocalBackend(Path(tempfile.mkdtemp()) / "sb", terminate_grace=5.0, tmux=tmux)
    first, stop, read = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        info = backend.create(SandboxSpec("c-bench", "ta-bench", AGENT))
        log = backend.root / info.sandbox_id / "agent.log"
        until(lambda log=log: log.exists() and "up" in log.read_text())
        first.append(time.perf_counter() - started)
        if tmux:
            socket = sessions.socket_path(backend.root, info.sandbox_id)
            t = time.perf_counter()
            [pane] = sessions.read_sessions(socket)
            sessions.capture(socket, pane.name)
            read.append(time.perf_counter() - t)
        t = time.perf_counter()
        backend.terminate(info.sandbox_id)
        stop.append(time.perf_counter() - t)
    return first, stop, read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    plain_first, plain_stop, _ = run(False, runs)
    tmux_first, tmux_stop, read = run(True, runs)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"create -> first log line  direct {ms(plain_first):7.1f} ms   tmux {ms(tmux_first):7.1f} ms"
          f"   ratio {ms(tmux_first) / ms(plain_first):.2f}")  # fmt: skip
    print(f"terminate (SIGTERM)       direct {ms(plain_stop):7.1f} ms   tmux {ms(tmux_stop):7.1f} ms"
          f"   ratio {ms(tmux_stop) / ms(plain_stop):.2f}")  # fmt: skip
    print(f"read one session (list + capture-pane): {ms(read):.1f} ms (median of {runs})")


if __name__ == "__main__":
    main()
