"""The events pane: a live tail, newest last, that stops following when the user scrolls up.

Only events newer than the last one written are appended on a refresh; a filter change (minimum
level, type, free text) rewrites the pane from the events it holds. Following resumes as soon as
the view is back at the end (End, or scrolling down).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.widgets import RichLog

from parhelia.state.views import EventView
from parhelia.widgets.formatting import event_text

LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class EventFilter:
    min_level: str = "debug"
    types: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, min_level: str = "debug") -> EventFilter:
        types: list[str] = []
        words: list[str] = []
        level = min_level
        for token in text.split():
            name, sep, value = token.partition(":")
            if sep and name.lower() == "type" and value:
                types += [v for v in value.lower().split(",") if v]
            elif sep and name.lower() == "level" and value.lower() in LEVELS:
                level = value.lower()
            else:
                words.append(token.lower())
        return cls(level, tuple(types), tuple(words))

    def matches(self, e: EventView) -> bool:
        if LEVELS.index(e.level) < LEVELS.index(self.min_level):
            return False
        if self.types and not any(e.type.startswith(t) for t in self.types):
            return False
        if self.words:
            hay = (
                f"{e.type} {e.source} {e.container_id or ''} {e.task_id or ''} {e.message}".lower()
            )
            return all(w in hay for w in self.words)
        return True

    def describe(self) -> str:
        parts = [] if self.min_level == "debug" else [f"level ≥ {self.min_level}"]
        if self.types:
            parts.append("type " + ",".join(self.types))
        if self.words:
            parts.append(" ".join(self.words))
        return " · ".join(parts)


class EventsLog(RichLog):
    """Live events: state, health, orphan, budget and user actions, with their actor."""

    BINDINGS = [
        Binding("l", "cycle_level", "Level", tooltip="Show events at or above the next level"),
        Binding("end", "follow", "Follow", show=False, tooltip="Jump to the newest and follow"),
    ]

    def __init__(self, *, max_events: int = 500, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=max_events, wrap=True, markup=False, auto_scroll=False)
        self.max_events = max_events
        self.filter = EventFilter()
        self.filter_text = ""
        self._events: list[EventView] = []
        self._last_id = 0
        self.following = True

    def show(self, events: list[EventView]) -> None:
        """Append what is new since the last refresh (events come oldest first)."""
        fresh = [e for e in events if e.id > self._last_id]
        if not fresh:
            return
        self._last_id = fresh[-1].id
        self._events = (self._events + fresh)[-self.max_events :]
        self.following = self.is_vertical_scroll_end or not self.lines
        for e in fresh:
            if self.filter.matches(e):
                self.write(event_text(e), scroll_end=self.following)
        self._update_title()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.filter = EventFilter.parse(text, self.filter.min_level)
        self._rewrite()

    def action_cycle_level(self) -> None:
        nxt = LEVELS[(LEVELS.index(self.filter.min_level) + 1) % len(LEVELS)]
        self.filter = EventFilter(nxt, self.filter.types, self.filter.words)
        self._rewrite()

    def action_follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False)
        self._update_title()

    def _rewrite(self) -> None:
        self.clear()
        for e in self._events:
            if self.filter.matches(e):
                self.write(event_text(e), scroll_end=True)
        self.following = True
        self._update_title()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        following = self.is_vertical_scroll_end
        if following != self.following:
            self.following = following
            self._update_title()

    def _update_title(self) -> None:
        shown = self.filter.describe()
        follow = "following" if self.following else "paused · End to follow"
        self.border_subtitle = f"{shown} · {follow}" if shown else follow
