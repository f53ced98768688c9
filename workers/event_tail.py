"""Read the store's new events, each exactly once, oldest first: the tail under `events watch`
(`workers.event_follow`) and the MCP server's push (`app.mcp_server`).

On SQLite writers are serialised, so event ids commit in order and "id > the last one seen" is
complete. On PostgreSQL an id is taken at insert and two writers can commit in the other order:
event 11 may become visible after event 12 was read. So there the tail re-reads a window of
LOOKBACK ids below the highest one seen and skips the ids it already delivered; a row is missed
only if more than LOOKBACK events were committed by others between its insert and its commit.
"""

from __future__ import annotations

from typing import Any

from parhelia.state import db
from parhelia.state.models import Event
from parhelia.state.store import Store

PAGE = 5000
LOOKBACK = 1000  # ids re-read below the highest seen (PostgreSQL only)


class EventTail:
    """`read()` returns the events committed since the last call that match `filters`."""

    def __init__(
        self, store: Store, *, after_id: int | None = None, filters: dict[str, Any] | None = None
    ) -> None:
        self.store = store
        self.filters = dict(filters or {})
        self.lookback = LOOKBACK if db.is_postgresql(store.url) else 0
        self.after_id = store.last_event_id() if after_id is None else after_id
        # ids already there (or delivered) inside the window: not new when read again
        self._seen: set[int] = set()
        if self.lookback and self.after_id:
            low = max(0, self.after_id - self.lookback)
            rows = store.events(after_id=low, oldest_first=True, limit=PAGE, **self.filters)
            self._seen = {r.id for r in rows if r.id is not None and r.id <= self.after_id}

    def read(self) -> list[Event]:
        out: list[Event] = []
        while True:
            low = max(0, self.after_id - self.lookback)
            rows = self.store.events(after_id=low, oldest_first=True, limit=PAGE, **self.filters)
            fresh = [r for r in rows if r.id not in self._seen and r.id is not None]
            if self.lookback:
                self._seen.update(r.id for r in fresh)
            if fresh:
                self.after_id = max(self.after_id, max(r.id for r in fresh))
            out += fresh
            if not fresh or len(rows) < PAGE:
                break
        if self.lookback:  # forget what fell out of the window
            floor = self.after_id - self.lookback
            self._seen = {i for i in self._seen if i > floor}
        return out
