"""The events pane: a live tail, newest last, that stops following only when the user scrolls up.

Only events newer than the last one written are appended on a refresh; a filter change (minimum
level, type, free text) or a change of width rewrites the pane from the events it holds (lines are
wrapped to the width they were written at). Following is the user's choice, never a side effect:
only a scroll up by key, wheel or scrollbar pauses it, and it resumes with End or a scroll back to
the end. While following, every write, rewrite and resize ends at the newest event, so the footer's
"following" is always true.

What it shows goes through SPEC-20's aggregation (`state.aggregation.Aggregator`, the rule the
watches use): heartbeat-derived chatter at most once per 10 s per container and progress at most
every 5 % or 5 s, the newest held-back event shown when its window ends with how many it stands
for; state changes, warnings, errors and completions always, at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.widgets import RichLog

from parhelia.state.aggregation import Aggregator
from parhelia.state.views import EventView
from parhelia.widgets.formatting import event_text
from parhelia.widgets.help_pane import PaneHelp

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
        if self.types and not any(_type_matches(e.type, t) for t in self.types):
            return False
        if self.words:
            hay = (
                f"{e.type} {e.source} {e.container_id or ''} {e.task_id or ''} {e.message}".lower()
            )
            return all(w in hay for w in self.words)
        return True

    @staticmethod
    def problems(text: str) -> list[str]:
        from parhelia.widgets.container_filter import field_problems

        return field_problems(text, {"level": LEVELS, "type": None})

    def describe(self) -> str:
        parts = [] if self.min_level == "debug" else [f"level ≥ {self.min_level}"]
        if self.types:
            parts.append("type " + ",".join(self.types))
        if self.words:
            parts.append(" ".join(self.words))
        return " · ".join(parts)


def _type_matches(event_type: str, term: str) -> bool:
    """`type:orphan` finds `container.orphaned`: a term matches the start of any word of the type
    (words split on `.` and `_`), or the whole dotted type as a prefix (`type:container.st`)."""
    if event_type.startswith(term):
        return True
    return any(word.startswith(term) for word in event_type.replace("_", ".").split("."))


class EventsLog(RichLog):
    """Live events: state, health, orphan, budget and user actions, with their actor."""

    PANE_HELP = PaneHelp("Events", selection=False)
    BINDINGS = [
        Binding("v", "cycle_level", "Level", tooltip="Show events at or above the next level"),
        Binding(
            "escape",
            "clear_filter",
            "Clear filter",
            key_display="esc",
            show=False,
            tooltip="Clear the filter",
        ),
        Binding("end", "follow", "Follow", show=False, tooltip="Jump to the newest and follow"),
    ]

    def __init__(self, *, max_events: int = 500, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=max_events, wrap=True, markup=False, auto_scroll=False)
        self.max_events = max_events
        self.filter = EventFilter()
        self.filter_text = ""
        self._events: list[EventView] = []  # what passed the aggregation, oldest first
        self._folded: dict[int, int] = {}  # event id -> how many held-back events it stands for
        self._aggregator = Aggregator()
        self._last_id = 0
        self._written_width = 0
        self.following = True

    def show(self, events: list[EventView], now: datetime | None = None) -> None:
        """Append what is new since the last refresh (events come oldest first), aggregated;
        `now` (the view's time) releases held-back events whose window has ended."""
        fresh = [e for e in events if e.id > self._last_id]
        if fresh:
            self._last_id = fresh[-1].id
        shown = [out for e in fresh for out in self._aggregator.feed(e)]
        if now is not None:
            shown += self._aggregator.flush(now)
        if not shown:
            return
        for e in shown:
            if e.id in self._aggregator.folded:
                self._folded[e.id] = self._aggregator.folded.pop(e.id)
        self._events = (self._events + shown)[-self.max_events :]
        kept = {e.id for e in self._events}
        self._folded = {k: v for k, v in self._folded.items() if k in kept}
        for e in shown:
            if self.filter.matches(e):
                self.write(self._line(e), scroll_end=self.following)
        self._update_title()

    @property
    def shown_events(self) -> list[EventView]:
        """The events the pane holds (after aggregation), oldest first."""
        return list(self._events)

    def folded(self, event_id: int) -> int:
        """How many held-back events a shown one stands for."""
        return self._folded.get(event_id, 0)

    def _line(self, e: EventView) -> Text:
        text = event_text(e)
        if folded := self._folded.get(e.id):
            text.append(f" (+{folded} folded)", style="dim")
        return text

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.filter = EventFilter.parse(text, self.filter.min_level)
        self._rewrite()

    def set_min_level(self, level: str) -> None:
        self.filter = EventFilter(level, self.filter.types, self.filter.words)
        self._rewrite()

    def action_clear_filter(self) -> None:
        if self.filter_text or self.filter.min_level != "debug":
            self.filter_text = ""
            self.filter = EventFilter()
            self._rewrite()

    def action_cycle_level(self) -> None:
        self.set_min_level(LEVELS[(LEVELS.index(self.filter.min_level) + 1) % len(LEVELS)])

    def action_follow(self) -> None:
        self._set_following(True)
        self.scroll_end(animate=False, immediate=True)

    # Only the user pauses following: a scroll up by key, wheel or scrollbar.
    def action_scroll_up(self) -> None:
        self._pause()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._pause()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._pause()
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.action_follow()

    def on_mouse_scroll_up(self, _event) -> None:
        self._pause()

    def on_scroll_to(self, _event) -> None:  # a scrollbar drag
        self.call_after_refresh(self._pause_unless_at_end)

    def on_scroll_up(self, _event) -> None:  # a click on the scrollbar above the thumb
        self._pause()

    def _pause(self) -> None:
        if self.max_scroll_y > 0:
            self._set_following(False)

    def _pause_unless_at_end(self) -> None:
        if not self.is_vertical_scroll_end:
            self._pause()

    def on_resize(self, event) -> None:
        super().on_resize(event)
        width = event.size.width
        if width and width != self._written_width and self._events:
            self._rewrite()  # lines are wrapped at the width they were written at
        elif self.following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)
        self._written_width = width or self._written_width

    def _rewrite(self) -> None:
        self.clear()
        for e in self._events:
            if self.filter.matches(e):
                self.write(self._line(e), scroll_end=self.following)
        self._written_width = self.size.width
        self._update_title()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if not self.following and new > old and self.is_vertical_scroll_end:
            self._set_following(True)  # the user scrolled back down to the newest

    def _set_following(self, following: bool) -> None:
        if following != self.following:
            self.following = following
            self._update_title()

    def _update_title(self) -> None:
        shown = self.filter.describe()
        follow = "following" if self.following else "paused · End to follow"
        self.border_subtitle = f"{shown} · {follow}" if shown else follow
