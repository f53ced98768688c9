"""Money: the one rate table (with its source and date) and every cost formula.

Rates are Modal's published sandbox prices; configuration may override them (`[rates]`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from parhelia.state.timeutil import as_utc

GPU_RATES: dict[str, float] = {
    "T4": 0.59,
    "L4": 0.80,
    "A10G": 1.10,
    "L40S": 1.95,
    "A100-40GB": 2.10,
    "A100-80GB": 2.50,
    "H100": 3.95,
    "H200": 4.54,
    "B200": 6.25,
}

REGION_MULTIPLIERS = {"broad": 1.5, "narrow": 1.75}


@dataclass(frozen=True)
class RateTable:
    cpu_core_hour: float
    memory_gib_hour: float
    gpu_hour: dict[str, float] = field(default_factory=dict)
    source: str = "Modal published sandbox pricing"
    as_of: str = "2026-06"

    def with_overrides(
        self,
        cpu_core_hour: float = 0.0,
        memory_gib_hour: float = 0.0,
        gpu: dict[str, float] | None = None,
    ) -> RateTable:
        """Apply `[rates]` overrides; zero means keep the published rate."""
        if not (cpu_core_hour or memory_gib_hour or gpu):
            return self
        return replace(
            self,
            cpu_core_hour=cpu_core_hour or self.cpu_core_hour,
            memory_gib_hour=memory_gib_hour or self.memory_gib_hour,
            gpu_hour={**self.gpu_hour, **(gpu or {})},
            source=f"{self.source} with configured overrides",
        )


DEFAULT_RATES = RateTable(cpu_core_hour=0.1419, memory_gib_hour=0.0242, gpu_hour=dict(GPU_RATES))


def region_multiplier(region: str | None) -> float:
    """Pinning to a region costs more: 1.5x for a broad region (e.g. `us`), 1.75x for a narrow one."""
    if not region:
        return 1.0
    if region in REGION_MULTIPLIERS:
        return REGION_MULTIPLIERS[region]
    # Modal's broad regions are continents/countries ("us", "eu", "ap"); anything more specific is narrow.
    return REGION_MULTIPLIERS["broad"] if len(region) <= 3 else REGION_MULTIPLIERS["narrow"]


def hourly_rate(
    cpu: float,
    memory_mib: float,
    gpu: str | None = None,
    region: str | None = None,
    rates: RateTable = DEFAULT_RATES,
) -> float:
    """Dollars per hour for a sandbox with these resources."""
    rate = cpu * rates.cpu_core_hour + (memory_mib / 1024.0) * rates.memory_gib_hour
    if gpu:
        name, _, count = gpu.partition(":")
        rate += rates.gpu_hour.get(name, 0.0) * (int(count) if count else 1)
    return round(rate * region_multiplier(region), 6)


def runtime_hours(started: datetime | None, ended: datetime | None, now: datetime) -> float:
    if started is None:
        return 0.0
    end = as_utc(ended) if ended is not None else now
    return max(0.0, (end - as_utc(started)).total_seconds() / 3600.0)


def accrued_cost(
    rate_per_hour: float, started: datetime | None, ended: datetime | None, now: datetime
) -> float:
    return rate_per_hour * runtime_hours(started, ended, now)


def burn_rate(rates_per_hour: Iterable[float]) -> float:
    """The fleet's spend per hour: the sum of the running containers' rates."""
    return sum(rates_per_hour)


def estimate_task(
    cpu: float,
    memory_mib: float,
    gpu: str | None,
    region: str | None,
    timeout_minutes: float,
    rates: RateTable = DEFAULT_RATES,
) -> float:
    """The most a task can cost: its rate for its whole timeout."""
    return hourly_rate(cpu, memory_mib, gpu, region, rates) * timeout_minutes / 60.0


def hours_until(spent: float, ceiling: float, burn_per_hour: float) -> float | None:
    """Hours until the ceiling is reached at this burn rate; None when not burning or already past."""
    if burn_per_hour <= 0 or spent >= ceiling:
        return None
    return (ceiling - spent) / burn_per_hour
