"""A stand-in for a coding agent, so `parhelia tui --demo` has real processes to watch and stop.

Run as `python -m parhelia.app.agent_sim --mode MODE [--seconds N] [PROMPT]`. It uses no network and
touches no files; it prints timestamped lines that look like an agent at work and burns CPU in
bursts so the dashboard's CPU column moves. Modes:

- busy:   works forever (CPU bursts and log lines) until stopped.
- finish: works for --seconds (default 20), prints a summary and exits 0.
- spiky:  like busy, with long idle stretches between hard CPU spikes.
- hang:   works for --seconds (default 8), prints that it is waiting on a tool call, then stops
          itself with SIGSTOP. The process stays (the sandbox is still running and still costs),
          but its status is "stopped", so the local backend's probe reports agent_alive=False and
          every heartbeat counts as missed: the container goes degraded, unhealthy, then dead.
          Terminate resumes it with SIGCONT after SIGTERM, so it still ends cleanly.

SIGTERM (and SIGINT) stop any mode at the next step: it prints a line and exits 143 (130 for
SIGINT), the code a shell reports for a process killed by that signal.

`--owner PID` (the demo dashboard's process): when that process is gone, the agent stops itself
as on SIGTERM, also a `hang` agent frozen by SIGSTOP (a watchdog process wakes it). A dashboard
killed before its own cleanup (SIGKILL, OOM) then leaves no demo agent running and costing.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from datetime import datetime

FILES = [
    "src/app.py",
    "src/models.py",
    "src/api/routes.py",
    "tests/test_api.py",
    "README.md",
    "src/util.py",
]
STEPS = [
    "reading {f}",
    "searching for usages of {sym} in src/",
    "editing {f} (+{n} -{m})",
    "running tests: pytest -q tests/ ({n} passed)",
    "thinking about {sym}",
    "running ruff check src/ (clean)",
]
SYMBOLS = ["parse_config", "UserSession", "retry_with_backoff", "render_table", "BudgetGuard"]
DEFAULT_SECONDS = {"finish": 20.0, "hang": 8.0}


class Stopped(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _on_signal(signum: int, _frame) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):  # stopping once is enough (the owner watch may
        signal.signal(sig, signal.SIG_IGN)  # send another while the last lines are written)
    raise Stopped(128 + signum)


def log(message: str) -> None:
    print(f"{datetime.now().strftime('%H:%M:%S')} agent: {message}", flush=True)


def burn(seconds: float) -> int:
    """Spin the CPU for a while, like a tool run or a test suite; returns a checksum so it is real work."""
    end, acc = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        acc = (acc * 31 + 7) % 1_000_003
    return acc


def step(rng: random.Random, burst: float, pause: float) -> None:
    text = rng.choice(STEPS).format(
        f=rng.choice(FILES), sym=rng.choice(SYMBOLS), n=rng.randint(1, 40), m=rng.randint(0, 12)
    )
    log(text)
    burn(burst)
    time.sleep(pause)


OWNER_POLL_SECONDS = 1.0
WAKE_TRIES = 50  # a frozen agent's watchdog wakes it for at most 5 s


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process by that id: still there
        return True
    return True


def watch_owner(owner: int) -> None:
    """SIGTERM to this process once `owner` has gone (a daemon thread: checks between steps)."""

    def watch() -> None:
        while alive(owner):
            time.sleep(OWNER_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def wake_when_owner_goes(owner: int) -> None:
    """Before this process stops itself with SIGSTOP (its threads stop too): a small child that
    sends SIGTERM then SIGCONT once `owner` (or this process) has gone. It is in the sandbox's
    process group, so a terminate ends it too."""
    me = os.getpid()
    if os.fork() != 0:
        return
    try:
        while alive(owner) and alive(me):
            time.sleep(OWNER_POLL_SECONDS)
        # Again until it has gone: an owner gone between this fork and the agent's SIGSTOP had
        # its SIGCONT come first, and the agent froze for good (seen once under load).
        for _ in range(WAKE_TRIES):
            if not alive(me):
                break
            os.kill(me, signal.SIGTERM)
            os.kill(me, signal.SIGCONT)
            time.sleep(0.1)
    finally:
        os._exit(0)


def run(mode: str, seconds: float | None, rng: random.Random, owner: int | None = None) -> int:
    started = time.monotonic()
    limit = seconds if seconds is not None else DEFAULT_SECONDS.get(mode)
    steps = 0
    log(f"starting ({mode}), pid {os.getpid()}")
    while True:
        if limit is not None and mode in ("finish", "hang") and time.monotonic() - started >= limit:
            break
        if mode == "spiky":
            step(rng, rng.choice([0.0, 0.0, 0.8]), rng.uniform(0.5, 2.0))
        else:
            step(rng, rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.6))
        steps += 1
    if mode == "hang":
        log("waiting for tool call 'bash' to return ...")
        if owner is not None:
            wake_when_owner_goes(owner)
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen until someone sends SIGCONT
        log("resumed")
        return 0
    log(f"done: {steps} steps in {time.monotonic() - started:.1f}s, all tests passing")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parhelia.app.agent_sim", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mode", choices=["busy", "finish", "hang", "spiky"], default="busy")
    parser.add_argument(
        "--seconds", type=float, default=None, help="how long finish/hang work first"
    )
    parser.add_argument("--seed", type=int, default=None, help="fix the log lines (tests)")
    parser.add_argument(
        "--owner", type=int, default=None, help="stop when this process (the demo) has gone"
    )
    parser.add_argument("prompt", nargs="?", default="", help="the task, echoed at the start")
    ns = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if ns.prompt:
            log(f"task: {ns.prompt}")
        if ns.owner is not None:
            watch_owner(ns.owner)
        return run(ns.mode, ns.seconds, random.Random(ns.seed), ns.owner)
    except Stopped as stop:
        if ns.owner is not None and not alive(ns.owner):
            log("the demo that started me has gone")
        log(f"stopping on signal (exit {stop.code})")
        return stop.code


if __name__ == "__main__":
    sys.exit(main())
