"""Plain-text pieces for CLI tables (SPEC-21's `parhelia containers` layout).

Ages, money and totals come from `parhelia.widgets.formatting`, the formatter the dashboard and
`--once` use, so the CLI never reads differently from the screen.
"""

from __future__ import annotations

from datetime import datetime

from parhelia.state.views import ContainerView
from parhelia.widgets.formatting import ESTIMATE_NOTE, age, money, rate_text, totals_line

__all__ = ["ESTIMATE_NOTE", "age", "container_rows", "money", "rate_text", "totals_line"]


def container_rows(rows: list[ContainerView], now: datetime) -> list[list[str]]:
    return [
        [
            c.id,
            c.sandbox_id or "-",
            c.state,
            c.health,
            c.task_id or "-",
            age(c.started_at or c.created_at, now),
            ("~" if c.rate_estimated else "") + money(c.cost_accrued_usd),
        ]
        for c in rows
    ]
