"""Spend over time: each container's accrued cost spread evenly over the time it ran, summed into
hour or day buckets (optionally per task or container). The buckets add up to the same accrued
costs the budget counts; only where in time they fall is an estimate (rates are flat)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from parhelia.state.timeutil import as_utc
from parhelia.state.views import ContainerView

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
SPARK = "▁▂▃▄▅▆▇█"
TREND_HOURS = 24  # the dashboard's spend trend: hourly buckets, this many back


def bucket_start(ts: datetime, size: timedelta) -> datetime:
    ts = as_utc(ts)
    if size >= timedelta(days=1):
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def spend_buckets(
    containers: Iterable[ContainerView],
    *,
    since: datetime,
    now: datetime,
    size: timedelta,
    by: str | None = None,
) -> dict[datetime, dict[str, float]]:
    """{bucket start: {key: usd}} from `since` to `now`, every bucket present (zeros included);
    the key is the task or container id with `by`, else "all"."""
    spans = (
        (
            (c.task_id or "-") if by == "task" else c.id if by == "container" else "all",
            c.started_at or c.created_at,
            c.terminated_at,
            c.cost_accrued_usd,
        )
        for c in containers
    )
    return spread(spans, since=since, now=now, size=size)


def spread(
    spans: Iterable[tuple[str, datetime, datetime | None, float]],
    *,
    since: datetime,
    now: datetime,
    size: timedelta,
) -> dict[datetime, dict[str, float]]:
    """`spend_buckets` from plain `(key, start, end or None while running, cost)` spans: what
    the dashboard's trend reads without building container views."""
    first = bucket_start(since, size)
    out: dict[datetime, dict[str, float]] = {}
    t = first
    while t <= now:
        out[t] = defaultdict(float)
        t += size
    for key, started, ended, cost in spans:
        start = as_utc(started)
        end = as_utc(ended) or now
        if cost <= 0 or end <= since:
            continue
        span = max((end - start).total_seconds(), 1e-9)
        t = bucket_start(max(start, first), size)
        while t < end and t <= now:
            overlap = (min(end, t + size) - max(start, t)).total_seconds()
            if overlap > 0 and t in out:
                out[t][key] += cost * overlap / span
            t += size
    return {t: dict(v) for t, v in out.items()}


def hourly_trend(
    spans: Iterable[tuple[str, datetime, datetime | None, float]], now: datetime
) -> tuple[float, ...]:
    """Spend per hour over the last `TREND_HOURS` hours, oldest first, the current hour last:
    the budget pane's sparkline."""
    since = now - timedelta(hours=TREND_HOURS - 1)
    series = spread(spans, since=since, now=now, size=BUCKETS["hour"])
    return tuple(round(sum(part.values()), 6) for part in series.values())[-TREND_HOURS:]


def sparkline(values: list[float]) -> str:
    """One block per value, scaled to the largest (a blank line reads as no spend)."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(
        SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values
    )
