"""The one loop runner: reconcile; then heartbeat and budget only while holding the lease.

Every front end runs the control loops through `LoopRunner`: the daemon (`reconciler start`), the
dashboard (one thread worker) and the one-shot commands (`reconciler run`, `tui --once`), so the
rules live here once:

- Reconcile every `Reconciler.next_delay()` (the interval; sooner when an unrecorded sandbox's
  grace ends first; longer while listings fail), each tick scheduled from when the last finished.
- Heartbeat and budget passes run every heartbeat interval, and only after checking that this
  process still holds the lease: a holder that lost it does nothing more.
- The lease is renewed every third of its length while holding it, whatever the reconcile delay,
  so a backing-off holder is never taken for dead.
- A one-shot pass releases the lease when it ends; `run` releases it when it stops.

Backend calls have deadlines (`workers/backends/deadline.py`), so no pass waits on a hung cloud for
longer than `timeout_seconds`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

OnCycle = Callable[[str, Any], object]  # ("reconcile" | "heartbeat" | "budget", its result)
OnError = Callable[[str, Exception], object]


class LoopRunner:
    """Runs a reconciler, a heartbeat poller and a budget guard by the rules above."""

    def __init__(
        self,
        reconciler,
        poller,
        guard,
        settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.poller = poller
        self.guard = guard
        self.settings = settings
        self.monotonic = monotonic
        self._wake = threading.Event()
        self._kicked = False
        self._wait = wait or self._wait_for_wake
        self.has_lease: bool | None = None  # None until the first reconcile says

    # -- one pass -------------------------------------------------------------------------

    def once(
        self,
        *,
        passes: bool = True,
        on_cycle: OnCycle | None = None,
        on_error: OnError | None = None,
        heartbeat_within: float | None = None,
    ):
        """One reconcile, then (if `passes` and holding the lease) a heartbeat pass and a budget
        check; the lease is released at the end. Returns the reconcile report; a failed reconcile
        raises (a failed heartbeat or budget pass goes to `on_error`, or raises when there is none).
        `heartbeat_within`: the seconds the heartbeat pass may probe for (`HeartbeatPoller.run_once`)."""
        try:
            report = self.reconciler.run_once()
            self.has_lease = report.acted
            if on_cycle:
                on_cycle("reconcile", report)
            if passes and report.acted:
                self._passes(on_cycle, on_error or _raise, heartbeat_within)
            return report
        finally:
            self.reconciler.release()

    # -- the loop -------------------------------------------------------------------------

    def kick(self) -> None:
        """Reconcile now (the dashboard's `r`); also wakes a waiting loop to see `stop`."""
        self._kicked = True
        self._wake.set()

    def run(
        self,
        stop: threading.Event,
        on_cycle: OnCycle | None = None,
        on_error: OnError | None = None,
    ) -> None:
        """Run until `stop` is set (call `kick()` after setting it to end a wait at once)."""
        on_error = on_error or (lambda _name, _exc: None)
        now = self.monotonic
        poll_every = self.settings.heartbeat.interval_seconds
        renew_every = self.settings.reconciler.lease_seconds / 3
        next_reconcile = next_poll = next_renew = now()
        try:
            while not stop.is_set():
                if self._kicked or now() >= next_reconcile:
                    self._kicked = False
                    self._reconcile(on_cycle, on_error)
                    next_reconcile = now() + self.reconciler.next_delay()
                    next_renew = now() + renew_every
                if stop.is_set():
                    break
                if self.has_lease and now() >= next_renew:
                    self.has_lease = self._guarded("lease", self.reconciler.renew, on_error, False)
                    next_renew = now() + renew_every
                if self.has_lease and now() >= next_poll:
                    self._passes(on_cycle, on_error)
                    next_poll = now() + poll_every
                due = (
                    min(next_reconcile, next_poll, next_renew) if self.has_lease else next_reconcile
                )
                self._wait(max(0.0, due - now()))
        finally:
            try:
                self.reconciler.release()
            except Exception as exc:  # a closed database must not hide the original exit reason
                on_error("lease", exc)

    # -- steps ----------------------------------------------------------------------------

    def _reconcile(self, on_cycle: OnCycle | None, on_error: OnError) -> None:
        try:
            report = self.reconciler.run_once()
        except Exception as exc:  # the reconciler counts the failure and backs off itself
            on_error("reconcile", exc)
            return
        self.has_lease = report.acted
        if on_cycle:
            on_cycle("reconcile", report)

    def _passes(
        self, on_cycle: OnCycle | None, on_error: OnError, heartbeat_within: float | None = None
    ) -> None:
        """Heartbeat then budget, each only while the lease is still ours."""
        heartbeat = (
            self.poller.run_once
            if heartbeat_within is None
            else functools.partial(self.poller.run_once, within=heartbeat_within)
        )
        for name, fn in (("heartbeat", heartbeat), ("budget", self._check_budget)):
            if not self._guarded("lease", self.reconciler.holds_lease, on_error, False):
                self.has_lease = False
                return
            result = self._guarded(name, fn, on_error, None)
            if on_cycle:
                on_cycle(name, result)

    def _check_budget(self):
        return self.guard.check() if self.guard is not None else None

    @staticmethod
    def _guarded(name: str, fn: Callable[[], Any], on_error: OnError, default):
        try:
            return fn()
        except Exception as exc:
            on_error(name, exc)
            return default

    def _wait_for_wake(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()


def _raise(_name: str, exc: Exception) -> None:
    raise exc
