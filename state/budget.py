"""Budget rules: the period a ceiling applies to, threshold levels, and the forecast."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from parhelia.state.costs import hours_until
from parhelia.state.views import BudgetView

LEVELS = ("ok", "warning", "critical", "exceeded")


@dataclass(frozen=True)
class BudgetConfig:
    ceiling_usd: float = 25.0
    period: str = "month"
    policy: str = "warn"
    thresholds: tuple[int, ...] = field(default=(50, 80, 100))


def period_start(now: datetime, period: str) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def crossed_threshold(percent: float, thresholds: tuple[int, ...]) -> int | None:
    """The highest threshold (50, 80, 100...) at or below `percent`, or None."""
    hit = [t for t in sorted(thresholds) if percent >= t]
    return hit[-1] if hit else None


def level_for(percent: float, thresholds: tuple[int, ...]) -> str:
    ordered = sorted(thresholds)
    if ordered and percent >= ordered[-1]:
        return "exceeded"
    if len(ordered) >= 2 and percent >= ordered[-2]:
        return "critical"
    if ordered and percent >= ordered[0]:
        return "warning"
    return "ok"


def summarize(
    config: BudgetConfig, spent: float, burn_per_hour: float, running_gpus: int, now: datetime
) -> BudgetView:
    percent = 100.0 * spent / config.ceiling_usd if config.ceiling_usd > 0 else 0.0
    hours = hours_until(spent, config.ceiling_usd, burn_per_hour)
    return BudgetView(
        ceiling_usd=config.ceiling_usd,
        spent_usd=spent,
        burn_rate_per_hour=burn_per_hour,
        period=config.period,
        period_start=period_start(now, config.period),
        policy=config.policy,
        running_gpus=running_gpus,
        ceiling_at=now + timedelta(hours=hours) if hours is not None else None,
        level=level_for(percent, config.thresholds),
    )
