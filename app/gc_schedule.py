"""Garbage collection on the dashboard's schedule instead of the allocator's.

With a 1,000-container fleet heartbeating every second, CPython's automatic full collections
walked the whole heap at random moments, 30-210 ms each, several times a minute: the worst key
presses waited for them (bench/tui.py). The dashboard instead freezes what it loaded for its first
frame (modules, widgets, caches: out of the collector's sight for good), collects the young
generations each second (1-3 ms; a refresh's short-lived cycles die there) and the whole heap once
a minute.
"""

from __future__ import annotations

import gc

YOUNG_SECONDS = 1.0
FULL_SECONDS = 60.0


class GcSchedule:
    def __init__(self) -> None:
        self._was_enabled: bool | None = None

    def start(self, app) -> None:
        if self._was_enabled is not None:
            return
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        app.set_interval(YOUNG_SECONDS, lambda: gc.collect(1), name="gc-young")
        app.set_interval(FULL_SECONDS, lambda: gc.collect(), name="gc-full")

    def stop(self) -> None:
        """Back to automatic collection, the frozen objects included (tests run many apps)."""
        if self._was_enabled is None:
            return
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None
