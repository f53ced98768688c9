"""Follow the store's new events from any process: woken by the database watcher
(`workers.db_watch.watch_store`: watchfiles on an SQLite file, LISTEN/NOTIFY on PostgreSQL) and
reading them through `workers.event_tail.EventTail` (complete even when PostgreSQL commits ids out
of order). Where nothing can be watched (an in-memory database, or the watcher fails) it polls,
SPEC-20's way: every 500 ms, every 2 s after 30 s without news, every 5 s after 2 minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from parhelia.state.store import Store
from parhelia.state.views import EventView

TICK_SECONDS = 0.5  # how often `on_tick` runs while watching (folded events, redraws)
# Until the watcher is surely armed (it says nothing when it is), read on every tick too, so a
# commit between the first read and the watch is not left waiting for the next change.
ARMING_SECONDS = 1.0


def poll_interval(idle_seconds: float) -> float:
    """SPEC-20's adaptive polling: 500 ms, 2 s after 30 s idle, 5 s after 2 minutes."""
    if idle_seconds >= 120:
        return 5.0
    if idle_seconds >= 30:
        return 2.0
    return 0.5


class Changes:
    """Wakes its reader when the store may have changed: the database watcher where the store can
    be watched (plus reads on every tick while it arms), SPEC-20's adaptive polling elsewhere."""

    def __init__(
        self, store: Store, *, watch: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        from parhelia.workers.db_watch import can_watch

        self.watching = bool(watch and can_watch(store.url))
        self.clock = clock
        self._changed = threading.Event()
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.started = self.last_news = clock()
        if self.watching:
            self._start_watcher()

    def wait(self, stop: threading.Event) -> bool:
        """Block for at most a tick (or a poll interval); True when the store may have news."""
        if self.watching:
            woke = self._changed.wait(TICK_SECONDS)
            self._changed.clear()
            return woke or self.clock() - self.started < ARMING_SECONDS
        stop.wait(poll_interval(self.clock() - self.last_news))
        return True

    def news(self) -> None:
        """The reader found something: polling goes back to its quickest pace."""
        self.last_news = self.clock()

    def close(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)

    def _start_watcher(self) -> None:
        from parhelia.workers.db_watch import watch_store

        def watch() -> None:
            try:
                watch_store(self.store.url, self._changed.set, self._watch_stop)
            except Exception:  # no watch possible here: fall back to SPEC-20's polling
                self.watching = False
                self._changed.set()

        self._watcher = threading.Thread(target=watch, name="db-watch", daemon=True)
        self._watcher.start()


class EventFollower:
    """Calls `on_events` with each batch of new events (oldest first) until `stop` is set."""

    def __init__(
        self,
        store: Store,
        *,
        after_id: int | None = None,
        filters: dict[str, Any] | None = None,
        watch: bool = True,
    ) -> None:
        from parhelia.state.event_log import to_event_view
        from parhelia.workers.event_tail import EventTail

        self.store = store
        self.tail = EventTail(store, after_id=after_id, filters=filters)
        self.watch = watch
        self._to_view = to_event_view
        self._changes: Changes | None = None

    @property
    def after_id(self) -> int:
        return self.tail.after_id

    def poll(self) -> list[EventView]:
        """Every event not yet seen that matches the filters, oldest first."""
        return [self._to_view(r) for r in self.tail.read()]

    def run(
        self,
        stop: threading.Event,
        on_events: Callable[[list[EventView]], object],
        on_tick: Callable[[], object] | None = None,
    ) -> None:
        self._changes = changes = Changes(self.store, watch=self.watch)
        try:
            while not stop.is_set():
                woke = changes.wait(stop)
                if stop.is_set():
                    break
                if woke:
                    batch = self.poll()
                    if batch:
                        changes.news()
                        on_events(batch)
                if on_tick is not None and not stop.is_set():
                    on_tick()
        finally:
            self.close()

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
