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
refresh's rows (10,000 narrow rows and the pane's orders; until heartbeats kept their views,
10,000 views and their dicts too: 10-40 ms on the main thread at 10,000 containers, where a key
press waits for it). A refresh's rows live until the next refresh, so a collection walks only
the set alive at its moment: spaced K seconds apart the collections walk a K-th of the rows
made, at about the same pause each, and a key press meets one K times less often. At 1,000
containers (a few ms) it stays each second.

Under a fleet heartbeating each second at 10,000 containers a young collection's pause reached a
p95 of 67-111 ms on the main thread, and the minute's full one 60-280 ms (bench/tui.py, three
dashboards in one process): a key typed into one waits as long. Keys come in bursts (a filter
typed, a row walked to), so a collection that falls due while they come waits for a quiet moment
(`QUIET_SECONDS` without a key), at most `DEFER_MAX_SECONDS` past its time, then runs anyway.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_SECONDS = 1.0  # the young collections' shortest spacing
YOUNG_MAX_SECONDS = 8.0  # and their longest: cycles of garbage wait at most this long
YOUNG_SHARE = 0.01  # the main thread's time they may take
FULL_SECONDS = 60.0
QUIET_SECONDS = 0.5  # a collection due while keys come waits until none came for this long
DEFER_MAX_SECONDS = 5.0  # and no longer than this past its time


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
        collect_full: Callable[[], object] = gc.collect,
        clock: Callable[[], float] = time.perf_counter,
        last_key: Callable[[], float] = lambda: float("-inf"),
    ) -> None:
        self._was_enabled: bool | None = None
        self._collect, self._collect_full, self._clock = collect, collect_full, clock
        self._last_key = last_key  # when the last key came, on `clock`
        self._app = None
        self._timers: dict[str, object] = {}  # "young", "full": each one's next timer
        self._due: dict[str, float] = {}  # since when each is due, while it waits for quiet
        self.young_in = YOUNG_SECONDS  # when the next young collection is due (tests, bench)

    def start(self, app) -> None:
        if self._was_enabled is not None:
            return
        self._was_enabled = take_over()
        self._app = app
        self._next("young", YOUNG_SECONDS)
        self._next("full", FULL_SECONDS)

    def young(self) -> None:
        """The young collection, and the next one after as long as its cost says; while keys
        come, it waits for a quiet moment (`_held`)."""
        now = self._clock()
        if self._was_enabled is None or self._held("young", now):
            return
        self._collect()
        self.young_in = next_young_in(self._clock() - now)
        self._next("young", self.young_in)

    def full(self) -> None:
        """The minute's full collection; while keys come, it waits for a quiet moment."""
        if self._was_enabled is None or self._held("full", self._clock()):
            return
        self._collect_full()
        self._next("full", FULL_SECONDS)

    def _next(self, kind: str, delay: float) -> None:
        run = self.young if kind == "young" else self.full
        self._timers[kind] = self._app.set_timer(delay, run, name=f"gc-{kind}")

    def _held(self, kind: str, now: float) -> bool:
        """Whether the `kind` collection, due now (or since it was first held), waits for a
        quiet moment: QUIET_SECONDS after the last key, unless it has waited DEFER_MAX_SECONDS
        already. If so it is tried again at that moment."""
        due = self._due.setdefault(kind, now)
        since_key = now - self._last_key()
        if since_key >= QUIET_SECONDS or now - due >= DEFER_MAX_SECONDS:
            del self._due[kind]
            return False
        self._next(kind, QUIET_SECONDS - since_key)
        return True

    def stop(self) -> None:
        """Back to automatic collection, the frozen objects included (tests run many apps)."""
        if self._was_enabled is None:
            return
        for timer in self._timers.values():
            timer.stop()
        give_back(self._was_enabled)
        self._was_enabled = None
