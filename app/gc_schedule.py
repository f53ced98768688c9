"""Garbage collection on the dashboard's schedule instead of the allocator's.

With a 1,000-container fleet heartbeating every second, CPython's automatic full collections
walked the whole heap at random moments, 30-210 ms each, several times a minute: the worst key
presses waited for them (bench/tui.py). The dashboard instead freezes what it loaded for its first
frame (modules, widgets, caches: out of the collector's sight for good), collects the young
generations every few seconds (a refresh's short-lived cycles die there) and the whole heap once
a minute. `take_over`, `collect_young` and `give_back` are that rule, for the dashboard and for
the bench that measures its refresh under it (bench/tui.py).

The young collection is spaced by what it costs (`next_young_in`): a collection walks what was
allocated since the last one and is still alive, and under a heartbeating fleet that is one
refresh's rows (10,000 views, their dicts and the pane's orders: 10-40 ms on the main thread at
10,000 containers, where a key press waits for it). A refresh's views live until the next
refresh, so a collection walks only the set alive at its moment: spaced K seconds apart the
collections walk a K-th of the views made, at about the same pause each, and a key press meets
one K times less often. At 1,000 containers (a few ms) it stays each second.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_SECONDS = 1.0  # the young collections' shortest spacing
YOUNG_MAX_SECONDS = 8.0  # and their longest: cycles of garbage wait at most this long
YOUNG_SHARE = 0.01  # the main thread's time they may take
FULL_SECONDS = 60.0


def take_over() -> bool:
    """Collect, freeze what is left and turn automatic collection off; whether it was on."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    return was_enabled


def collect_young() -> None:
    """The scheduled young collection: the generations what was allocated since is in."""
    gc.collect(1)


def next_young_in(pause: float) -> float:
    """Seconds until the next young collection after one that took `pause` seconds: at most
    YOUNG_SHARE of the time in collections, between YOUNG_SECONDS and YOUNG_MAX_SECONDS."""
    return min(YOUNG_MAX_SECONDS, max(YOUNG_SECONDS, pause / YOUNG_SHARE))


def give_back(was_enabled: bool) -> None:
    """Back to automatic collection (if it was on), the frozen objects included."""
    gc.unfreeze()
    if was_enabled:
        gc.enable()


class GcSchedule:
    def __init__(
        self,
        *,
        collect: Callable[[], None] = collect_young,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._was_enabled: bool | None = None
        self._collect, self._clock = collect, clock
        self._app = None
        self._young_timer = None
        self.young_in = YOUNG_SECONDS  # when the next young collection is due (tests, bench)

    def start(self, app) -> None:
        if self._was_enabled is not None:
            return
        self._was_enabled = take_over()
        self._app = app
        self._young_timer = app.set_timer(YOUNG_SECONDS, self.young, name="gc-young")
        app.set_interval(FULL_SECONDS, lambda: gc.collect(), name="gc-full")

    def young(self) -> None:
        """The young collection, and the next one after as long as its cost says."""
        if self._was_enabled is None:
            return
        t = self._clock()
        self._collect()
        self.young_in = next_young_in(self._clock() - t)
        self._young_timer = self._app.set_timer(self.young_in, self.young, name="gc-young")

    def stop(self) -> None:
        """Back to automatic collection, the frozen objects included (tests run many apps)."""
        if self._was_enabled is None:
            return
        if self._young_timer is not None:
            self._young_timer.stop()
        give_back(self._was_enabled)
        self._was_enabled = None
