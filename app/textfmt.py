"""Plain-text pieces for CLI tables (SPEC-21's `parhelia containers` layout)."""

from __future__ import annotations

from datetime import datetime

from parhelia.state.timeutil import age_seconds
from parhelia.state.views import ContainerView


def age(since: datetime | None, now: datetime) -> str:
    seconds = age_seconds(since, now)
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def money(value: float) -> str:
    return f"${value:,.3f}" if 0 < abs(value) < 0.1 else f"${value:,.2f}"


def container_rows(rows: list[ContainerView], now: datetime) -> list[list[str]]:
    return [
        [
            c.id,
            c.sandbox_id or "-",
            c.state,
            c.health,
            c.task_id or "-",
            age(c.started_at or c.created_at, now),
            money(c.cost_accrued_usd),
        ]
        for c in rows
    ]


def totals_line(rows: list[ContainerView]) -> str:
    counts: dict[str, int] = {}
    for c in rows:
        counts[c.state] = counts.get(c.state, 0) + 1
    burn = sum(c.cost_rate_per_hour for c in rows if c.is_active)
    parts = [
        f"Total: {len(rows)} containers",
        *(f"{s.capitalize()}: {n}" for s, n in sorted(counts.items())),
    ]
    return " | ".join([*parts, f"Cost: {money(burn)}/hr"])
