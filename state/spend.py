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
    """`spend_buckets` from plain `(key, start, end or None while running, cost)` spans."""
    return spread_seconds(
        (
            (key, as_utc(started).timestamp(), as_utc(ended).timestamp() if ended else None, cost)
            for key, started, ended, cost in spans
        ),
        since=since,
        now=now,
        size=size,
    )


def spread_seconds(
    spans: Iterable[tuple[str, float, float | None, float]],
    *,
    since: datetime,
    now: datetime,
    size: timedelta,
) -> dict[datetime, dict[str, float]]:
    """`spread` from spans whose start and end are epoch seconds: what the dashboard's trend
    reads without building container views or datetimes (10,000 live containers at a time)."""
    first = bucket_start(since, size)
    starts: list[datetime] = []
    t = first
    while t <= now:
        starts.append(t)
        t += size
    sums: list[defaultdict[str, float]] = [defaultdict(float) for _ in starts]
    full: defaultdict[str, list[float]] = defaultdict(lambda: [0.0] * (len(starts) + 1))
    origin, step = first.timestamp(), size.total_seconds()
    since_s, now_s, count = as_utc(since).timestamp(), as_utc(now).timestamp(), len(starts)
    for key, start, ended, cost in spans:
        end = ended if ended is not None else now_s
        if cost <= 0 or end <= since_s:
            continue
        per = cost / max(end - start, 1e-9)  # spread evenly over the time it ran
        a = max(start, origin)
        if end <= a:
            continue
        ka, kb = int((a - origin) // step), min(int((end - origin) // step), count - 1)
        if ka == kb:
            sums[ka][key] += per * (end - a)
            continue
        sums[ka][key] += per * (origin + (ka + 1) * step - a)
        if (tail := min(end, origin + (kb + 1) * step) - (origin + kb * step)) > 0:
            sums[kb][key] += per * tail
        if kb > ka + 1:  # the whole hours between: one difference-array entry each end
            diff = full[key]
            diff[ka + 1] += per * step
            diff[kb] -= per * step
    for key, diff in full.items():
        running = 0.0
        for k in range(count):
            running += diff[k]
            if abs(running) > 1e-12:  # not a rounding residue of a span that ended
                sums[k][key] += running
    return {t: dict(v) for t, v in zip(starts, sums, strict=True)}


def hourly_trend(
    spans: Iterable[tuple[str, datetime, datetime | None, float]], now: datetime
) -> tuple[float, ...]:
    """Spend per hour over the last `TREND_HOURS` hours, oldest first, the current hour last:
    the budget pane's sparkline."""
    return hourly_trend_seconds(
        (
            (key, as_utc(started).timestamp(), as_utc(ended).timestamp() if ended else None, cost)
            for key, started, ended, cost in spans
        ),
        now,
    )


def hourly_trend_seconds(
    spans: Iterable[tuple[str, float, float | None, float]], now: datetime
) -> tuple[float, ...]:
    """`hourly_trend` from spans in epoch seconds (`spread_seconds`)."""
    since = now - timedelta(hours=TREND_HOURS - 1)
    series = spread_seconds(spans, since=since, now=now, size=BUCKETS["hour"])
    return tuple(round(sum(part.values()), 6) for part in series.values())[-TREND_HOURS:]


def sparkline(values: list[float]) -> str:
    """One block per value, scaled to the largest (a blank line reads as no spend)."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(
        SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values
    )
