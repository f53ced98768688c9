"""`parhelia reconciler start`: the loops of `workers/loops.py`, logged, until stopped.

The runner works on its own thread while the caller's thread only waits for `stop`, so a SIGTERM
is answered within `grace` seconds whatever a backend call is doing; the lease is released on the
way out even if the runner is still inside a call (its thread is a daemon and dies with the process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from parhelia.workers.loops import LoopRunner

Log = Callable[[str], object]
STOP_GRACE_SECONDS = 5.0


def run_daemon(
    runner: LoopRunner,
    stop: threading.Event,
    *,
    log: Log | None = None,
    grace: float = STOP_GRACE_SECONDS,
) -> bool:
    """Run the loops on a daemon thread until `stop`; True when they ended within `grace`."""
    say = log or (lambda _line: None)
    thread = threading.Thread(
        target=runner.run,
        args=(stop, _logger(say), _error_logger(say)),
        name="parhelia-loops",
        daemon=True,
    )
    thread.start()
    while not stop.wait(0.5):  # a bounded wait keeps the main thread free for signal handlers
        if not thread.is_alive():
            break
    runner.kick()
    thread.join(grace)
    if thread.is_alive():
        say(f"a backend call is still running after {grace:g} s; leaving it behind")
        try:
            runner.reconciler.release()
        except Exception as exc:
            say(f"lease release failed: {exc}")
        return False
    return True


def _logger(say: Log):
    def on_cycle(name: str, result) -> None:
        if isinstance(result, list):
            for line in result:
                say(f"{name}: {line}")
        elif hasattr(result, "summary"):
            say(result.summary())

    return on_cycle


def _error_logger(say: Log):
    def on_error(name: str, exc: Exception) -> None:
        code = getattr(exc, "code", type(exc).__name__)
        say(f"{name}: failed ({code}): {getattr(exc, 'message', exc)}")

    return on_error
