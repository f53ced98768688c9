"""Money: the one rate table (with its source and date) and every cost formula.

Rates are Modal's published sandbox prices; configuration may override them (`[rates]`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from parhelia.state.errors import ParheliaError
from parhelia.state.timeutil import as_utc

# Per GPU-hour, keyed by Modal's canonical GPU names.
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

# Modal's other spellings: plain synonyms (`A100` is the 40 GB card) ...
GPU_ALIASES: dict[str, str] = {"A10": "A10G", "A100": "A100-40GB"}
# ... and spellings that mean something to Modal (`H100!`: never upgraded to an H200; `B200+`: may
# run on a newer card) and are kept as written, priced as the card they name.
GPU_PRICED_AS: dict[str, str] = {"H100!": "H100", "B200+": "B200"}
GPU_MAX_COUNT: dict[str, int] = {"A10G": 4}  # Modal's most per sandbox; 8 for every other card
MAX_GPUS = 8
NO_GPU = ("", "none", "no", "-")  # ways to say "no GPU"


class UnknownGpu(ValueError):
    """A GPU name or count Modal does not offer; the message lists what is valid. Callers turn it
    into E101 (a request) or E103 (a setting)."""


def valid_gpus_text() -> str:
    names = ", ".join([*GPU_RATES, *GPU_PRICED_AS])
    aliases = ", ".join(f"{a} = {c}" for a, c in GPU_ALIASES.items())
    return (
        f"valid: none, {names} (any case; {aliases}; optionally with a count 1-{MAX_GPUS}, "
        f"1-{GPU_MAX_COUNT['A10G']} for A10G, e.g. H100:2)"
    )


def normalize_gpu(text: str) -> str:
    """The one reading of a GPU name, in Modal's spelling: any case, aliases resolved, count kept
    (`a100:2` -> `A100-40GB:2`, `a10` -> `A10G`). Raises UnknownGpu; never guesses."""
    base, sep, count = text.strip().partition(":")
    upper = base.strip().upper()
    name = GPU_ALIASES.get(upper, upper)
    if name not in GPU_RATES and name not in GPU_PRICED_AS:
        raise UnknownGpu(f"unknown GPU type {text!r}; {valid_gpus_text()}")
    if not sep:
        return name
    limit = GPU_MAX_COUNT.get(GPU_PRICED_AS.get(name, name), MAX_GPUS)
    if not (count.strip().isdigit() and 1 <= int(count) <= limit):
        raise UnknownGpu(f"GPU count in {text!r} must be 1-{limit}; {valid_gpus_text()}")
    return f"{name}:{int(count)}"


def gpu_rate_key(text: str) -> tuple[str, int]:
    """(the rate table's name, the count) for a GPU request in any accepted spelling."""
    name, _, count = normalize_gpu(text).partition(":")
    return GPU_PRICED_AS.get(name, name), int(count) if count else 1


def normalize_gpu_rates(overrides: dict[str, float]) -> dict[str, float]:
    """`[rates] gpu` with its names normalized; a name with a count is refused (rates are per GPU)."""
    out: dict[str, float] = {}
    for raw, rate in overrides.items():
        name = normalize_gpu(raw)
        if ":" in name or name in GPU_PRICED_AS:
            raise UnknownGpu(
                f"{raw!r}: a rate is per GPU of a card; use one of {', '.join(GPU_RATES)}"
            )
        out[name] = rate
    return out


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
    if gpu and gpu.strip().lower() not in NO_GPU:
        try:
            name, count = gpu_rate_key(gpu)
        except UnknownGpu as exc:  # never priced at $0
            raise ParheliaError(
                "E101", str(exc), ["parhelia help gpu", "parhelia config show"]
            ) from None
        rate += rates.gpu_hour[name] * count
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


def current_cost(
    stored_usd: float, rate_per_hour: float, started: datetime | None, now: datetime
) -> float:
    """What a live container has cost by `now`: its rate over the time it has run, or what is
    stored for it when that is more (a cost reported by the backend, or accrued at a higher rate
    before). The one rule every view, summary and end-of-life record prices a container by."""
    return max(stored_usd, accrued_cost(rate_per_hour, started, None, now))


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
