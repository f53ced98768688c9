"""Garbage collection on the dashboard's schedule instead of the allocator's.

With a 1,000-container fleet heartbeating every second, CPython's automatic full collections
walked the whole heap at random moments, 30-210 ms each, several times a minute: the worst key
presses waited for them (bench/tui.py). The dashboard instead freezes what it loaded for its first
frame (modules, widgets, caches: out of the collector's sight for good), collects the young
generations each second (1-3 ms; a refresh's short-lived cycles die there) and the whole heap once
a minute. `take_over`, `collect_young` and `give_back` are that rule, for the dashboard and for
the bench that measures its refresh under it (bench/tui.py).
"""

from __future__ import annotations

import gc

YOUNG_SECONDS = 1.0
FULL_SECONDS = 60.0


def take_over() -> bool:
    """Collect, freeze what is left and turn automatic collection off; whether it was on."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    return was_enabled


def collect_young() -> None:
    """The collection each YOUNG_SECONDS: the generations what was allocated since is in."""
    gc.collect(1)


def give_back(was_enabled: bool) -> None:
    """Back to automatic collection (if it was on), the frozen objects included."""
    gc.unfreeze()
    if was_enabled:
        gc.enable()


class GcSchedule:
    def __init__(self) -> None:
        self._was_enabled: bool | None = None

    def start(self, app) -> None:
        if self._was_enabled is not None:
            return
        self._was_enabled = take_over()
        app.set_interval(YOUNG_SECONDS, collect_young, name="gc-young")
        app.set_interval(FULL_SECONDS, lambda: gc.collect(), name="gc-full")

    def stop(self) -> None:
        """Back to automatic collection, the frozen objects included (tests run many apps)."""
        if self._was_enabled is None:
            return
        give_back(self._was_enabled)
        self._was_enabled = None
