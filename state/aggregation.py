"""SPEC-20's aggregation of high-frequency events, one rule for every live view (the watches
now, the dashboard's events pane later).

- progress (`*.progress`, percent in `new_value`): at most one per 5 % step or 5 s per subject;
- heartbeat-derived events of info level and below: at most one per 10 s per container;
- everything else passes at once and untouched: status changes, warnings, errors, completions.

Held-back events are folded, never lost: the newest one of a window waits and is shown (with how
many it stands for) when its window ends (`flush`), or at the end of a replay (`drain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from parhelia.state.event_types import EventType
from parhelia.state.views import EventView

PROGRESS_STEP_PERCENT = 5.0
PROGRESS_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0
COMPLETION_STATES = ("stopped", "terminated")
COMPLETION_TYPES = (
    EventType.TASK_COMPLETED,
    EventType.TASK_FAILED,
    EventType.TASK_CANCELLED,
    EventType.TASK_TIMED_OUT,
)


def is_completion(e: EventView) -> bool:
    return e.type in COMPLETION_TYPES or (
        e.type == EventType.CONTAINER_STATE and e.new_value in COMPLETION_STATES
    )


def is_loud(e: EventView) -> bool:
    """What `--quiet` keeps: warnings, errors and completions."""
    return e.level in ("warning", "error") or is_completion(e)


def kind(e: EventView) -> str:
    """`progress`, `heartbeat` (may be folded) or `keep` (never held back)."""
    if e.level in ("warning", "error") or is_completion(e) or e.type == EventType.CONTAINER_STATE:
        return "keep"
    if e.type.endswith(".progress"):
        return "progress"
    if e.source == "heartbeat":
        return "heartbeat"
    return "keep"


def progress_percent(e: EventView) -> float | None:
    try:
        return float(str(e.new_value).rstrip("%"))
    except ValueError:
        return None


@dataclass
class _Window:
    shown_at: datetime
    shown_percent: float | None
    pending: EventView | None = None
    folded: int = 0


@dataclass
class Aggregator:
    """Feed events in order; print what `feed`, `flush` and `drain` return. `folded[id]` says how
    many held-back events an emitted one stands for."""

    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    folded: dict[int, int] = field(default_factory=dict)

    def feed(self, e: EventView) -> list[EventView]:
        k = kind(e)
        if k == "keep":
            return [e]
        key = (k, e.container_id or e.task_id or "")
        w = self.windows.get(key)
        pct = progress_percent(e) if k == "progress" else None
        if w is None or self._due(k, w, e.ts, pct):
            self.windows[key] = _Window(e.ts, pct)
            # a held-back event is superseded by this newer one: it is folded into it
            return [self._with_fold(e, w.folded + 1 if w and w.pending else 0)]
        w.folded += 1 if w.pending else 0
        w.pending = e
        return []

    def flush(self, now: datetime) -> list[EventView]:
        """Held-back events whose window has ended by `now`."""
        out = []
        for key, w in self.windows.items():
            if w.pending is not None and now - w.shown_at >= _span(key[0]):
                out.append(self._release(key, w))
        return sorted(out, key=lambda e: (e.ts, e.id))

    def drain(self) -> list[EventView]:
        """Every held-back event (the end of a replay or export)."""
        out = [self._release(k, w) for k, w in self.windows.items() if w.pending is not None]
        return sorted(out, key=lambda e: (e.ts, e.id))

    def next_due(self) -> datetime | None:
        dues = [w.shown_at + _span(k[0]) for k, w in self.windows.items() if w.pending]
        return min(dues, default=None)

    def _release(self, key: tuple[str, str], w: _Window) -> EventView:
        e = w.pending
        assert e is not None
        self.windows[key] = _Window(max(w.shown_at + _span(key[0]), e.ts), progress_percent(e))
        return self._with_fold(e, w.folded)

    def _with_fold(self, e: EventView, folded: int) -> EventView:
        if folded:
            self.folded[e.id] = folded
        return e

    @staticmethod
    def _due(k: str, w: _Window, ts: datetime, pct: float | None) -> bool:
        if ts - w.shown_at >= _span(k):
            return True
        if k == "progress" and pct is not None:
            return (
                pct >= 100.0
                or w.shown_percent is None
                or abs(pct - w.shown_percent) >= PROGRESS_STEP_PERCENT
            )
        return False


def _span(k: str) -> timedelta:
    return timedelta(seconds=PROGRESS_SECONDS if k == "progress" else HEARTBEAT_SECONDS)
