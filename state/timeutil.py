"""Timezone-aware UTC everywhere: one clock, one conversion."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Attach UTC to naive datetimes (SQLite drops tzinfo) and convert aware ones."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def age_seconds(since: datetime | None, now: datetime) -> float | None:
    if since is None:
        return None
    return max(0.0, (now - as_utc(since)).total_seconds())


def compact_duration(seconds: float) -> str:
    """The one short form of a duration, everywhere a person reads one: 42s, 3m 05s (seconds
    only under ten minutes, where they still tell), 17m, 2h 15m, 3d 4h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
