"""The foreground loop runner behind `parhelia reconciler start`.

Reconcile every interval (backing off after failures), poll heartbeats every heartbeat interval and
check the budget after each poll. Each tick is scheduled from when the previous one finished, so
ticks never overlap. Only the lease holder polls and guards: a standby process just retries the
lease each interval and takes over once it expires. Returns when `stop` is set, releasing the lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from parhelia.state.settings import Settings

Log = Callable[[str], object]


def run_loops(
    reconciler,
    poller,
    guard,
    settings: Settings,
    stop: threading.Event,
    *,
    log: Log | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
) -> None:
    """Run until `stop` is set. `monotonic` and `wait` are injectable so tests drive time."""
    say = log or (lambda _line: None)
    wait = wait or stop.wait
    poll_every = settings.heartbeat.interval_seconds
    next_reconcile = next_poll = monotonic()
    holder = False
    try:
        while not stop.is_set():
            if monotonic() >= next_reconcile:
                holder = _tick(lambda: reconciler.run_once(), say, "reconcile", default=holder)
                if not isinstance(holder, bool):
                    holder = holder.acted
                next_reconcile = monotonic() + reconciler.next_delay()
            if stop.is_set():
                break
            if holder and monotonic() >= next_poll:
                _tick(poller.run_once, say, "heartbeat")
                _tick(guard.check, say, "budget")
                next_poll = monotonic() + poll_every
            due = min(next_reconcile, next_poll) if holder else next_reconcile
            wait(max(0.0, due - monotonic()))
    finally:
        try:
            reconciler.release()
        except Exception as exc:  # a closed database must not hide the original exit reason
            say(f"lease release failed: {exc}")


def _tick(fn, say: Log, name: str, default=None):
    """Run one tick; an error is logged and the loop goes on (the reconciler backs off itself)."""
    try:
        result = fn()
    except Exception as exc:
        code = getattr(exc, "code", type(exc).__name__)
        say(f"{name}: failed ({code}): {getattr(exc, 'message', exc)}")
        return default
    if isinstance(result, list):
        for line in result:
            say(f"{name}: {line}")
    elif hasattr(result, "summary"):
        say(result.summary())
    return result
