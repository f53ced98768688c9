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
