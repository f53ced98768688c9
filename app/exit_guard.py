"""How the dashboard process ends when its terminal goes away or it is asked to stop.

Three things learned the hard way (two demo dashboards ran unseen at 41 % CPU each, their agents
with them, and ignored SIGTERM):
- a killed tmux server hangs up `make demo`, not its child, so no SIGHUP may come: the terminal
  itself is watched for the hang-up;
- on a dead terminal Textual's writer thread dies and the main thread blocks for ever on its full
  queue, so a clean `app.exit` never happens: after a grace the exit is forced, cleanup first;
- signals must not be blocked while agents are started: they inherit the mask and ignore SIGTERM.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from textual.app import App

HANG_UP_GRACE_SECONDS = 3.0  # a clean exit after SIGHUP/SIGTERM, before it is forced
STOP_TIMEOUT_SECONDS = 30.0  # for the cleanup (stopping the loops and a demo's agents)


class ExitGuard:
    """Runs `cleanup` exactly once however the process ends, and turns a hang-up into an exit."""

    def __init__(self, app: App, cleanup: Callable[[], None]) -> None:
        self.app, self._cleanup = app, cleanup
        self._stopping, self._stopped = threading.Lock(), threading.Event()
        self.hung_up = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, self.hang_up)
        out = sys.__stdout__
        if out is not None and out.isatty():
            threading.Thread(
                target=self._watch_terminal,
                args=(out.fileno(),),
                name="terminal-watch",
                daemon=True,
            ).start()

    def stop(self) -> None:
        """Once; a second caller waits for the first to finish."""
        if not self._stopping.acquire(blocking=False):
            self._stopped.wait(STOP_TIMEOUT_SECONDS)
            return
        try:
            self._cleanup()
        finally:
            self._stopped.set()

    def hang_up(self, signum: int, _frame=None) -> None:
        if self.hung_up.is_set():
            return
        self.hung_up.set()
        if not self.app.is_running:
            return  # still starting: the caller skips `app.run` and stops
        self.app.call_later(self.app.exit)
        threading.Thread(target=self._force, args=(signum,), name="hang-up", daemon=True).start()

    def _force(self, signum: int) -> None:
        time.sleep(HANG_UP_GRACE_SECONDS)
        self.stop()
        os._exit(128 + signum)

    def _watch_terminal(self, fd: int) -> None:
        while not self._stopped.wait(1.0):
            if terminal_gone(fd):
                self.hang_up(signal.SIGHUP)
                return


def terminal_gone(fd: int) -> bool:
    """True once the terminal on `fd` has hung up (its other end closed)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)  # hang-ups and errors are reported whatever is asked
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(0))
