"""The settings schema: every setting's name, type and built-in default, in one place.

Loading (files, environment, flags) lives in `parhelia.app.config`; this module is pure so
workers can take a `Settings` without knowing where it came from. The naming rule: `[section] key`
in TOML is `PARHELIA_SECTION_KEY` in the environment; top-level keys have no section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from parhelia.state.costs import NO_GPU, normalize_gpu, normalize_gpu_rates
from parhelia.state.errors import ParheliaError
from parhelia.state.requests import CPU_RANGE, MEMORY_RANGE_MIB, TIMEOUT_RANGE_MIN

if TYPE_CHECKING:
    from parhelia.state.budget import BudgetConfig


@dataclass
class AgentSettings:
    # `--` ends the options: a prompt that starts with `-` stays the prompt, never a flag.
    command: str = "claude -p --max-turns {max_turns} -- {prompt}"
    max_turns: int = 25
    # Environment variables a local agent gets besides PATH, HOME, locale, TERM, ANTHROPIC_* and
    # CLAUDE_* (names or patterns such as GITHUB_*); Modal tokens and the database URL never.
    env: list[str] = field(default_factory=list)


@dataclass
class ModalSettings:
    app: str = "parhelia"
    image: str = "python:3.11-slim"
    environment: str = ""
    secrets: list[str] = field(default_factory=list)
    idle_timeout_seconds: int = 0
    timeout_seconds: float = (
        10.0  # deadline of each call to Modal (see workers/backends/deadline.py)
    )


@dataclass
class LocalSettings:
    root: str = ""  # empty: <user data dir>/sandboxes
    terminate_grace_seconds: float = 5.0
    timeout_seconds: float = 10.0  # deadline of each list, create and terminate call


@dataclass
class DefaultsSettings:
    """Built-in defaults for a new task; the guided prompt layers config and last-used on top."""

    cpu: float = 1.0
    memory_mib: int = 2048
    gpu: str = "none"
    region: str = ""
    timeout_minutes: int = 60


@dataclass
class ReconcilerSettings:
    interval_seconds: float = 60.0
    orphan_grace_seconds: float = 120.0
    stale_seconds: float = 300.0
    lease_seconds: float = 180.0
    max_backoff_seconds: float = 600.0


@dataclass
class HeartbeatSettings:
    interval_seconds: float = 30.0
    retention_hours: float = 24.0
    concurrency: int = 16
    probe_timeout_seconds: float = 10.0
    degraded_missed: int = 2
    unhealthy_missed: int = 5
    dead_missed: int = 10


@dataclass
class RetentionSettings:
    """How long history is kept; heartbeats have their own `[heartbeat] retention_hours`."""

    events_days: float = 30.0
    runs_days: float = 7.0


@dataclass
class PolicySettings:
    orphans: str = "flag"  # flag | terminate
    dead: str = "flag"  # flag | terminate
    budget: str = "warn"  # warn | block | stop
    max_runtime_hours: float = 0.0  # 0: no limit


@dataclass
class BudgetSettings:
    ceiling_usd: float = 25.0
    period: str = "month"  # day | week | month
    warn_percent: list[int] = field(default_factory=lambda: [50, 80, 100])


@dataclass
class RatesSettings:
    """Overrides of the published rate table (`parhelia.state.costs.DEFAULT_RATES`); 0 keeps the default."""

    cpu_core_hour: float = 0.0
    memory_gib_hour: float = 0.0
    gpu: dict[str, float] = field(default_factory=dict)


@dataclass
class TuiSettings:
    refresh_seconds: float = 1.0
    theme: str = "textual-dark"
    event_rows: int = 200


@dataclass
class CheckpointSettings:
    """Workspace checkpoints (`parhelia checkpoint ...`)."""

    on_terminate: bool = True  # snapshot before the budget guard or orphan policy terminates
    keep: int = 10  # per container; `parhelia checkpoint cleanup` deletes older ones
    on_detach: bool = False  # snapshot when a user detaches from `parhelia session attach`


@dataclass
class Settings:
    backend: str = "auto"  # auto | local | modal
    db_url: str = ""  # empty: sqlite in the user data dir
    agent: AgentSettings = field(default_factory=AgentSettings)
    modal: ModalSettings = field(default_factory=ModalSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    defaults: DefaultsSettings = field(default_factory=DefaultsSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    rates: RatesSettings = field(default_factory=RatesSettings)
    tui: TuiSettings = field(default_factory=TuiSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)


SECTIONS = tuple(f.name for f in fields(Settings) if not f.type.endswith(("str", "int", "float")))

CHOICES: dict[str, tuple[str, ...]] = {
    "backend": ("auto", "local", "modal"),
    "policy.orphans": ("flag", "terminate"),
    "policy.dead": ("flag", "terminate"),
    "policy.budget": ("warn", "block", "stop"),
    "budget.period": ("day", "week", "month"),
}


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: always finite, `lo`..`hi` inclusive unless open.
    A list or table setting applies it to each of its values."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if not (self.lo_open or self.hi_open):
            return f"{self.lo:g} to {self.hi:g}{unit}"
        lo = f"more than {self.lo:g}" if self.lo_open else f"at least {self.lo:g}"
        hi = f"less than {self.hi:g}" if self.hi_open else f"at most {self.hi:g}"
        return f"{lo} and {hi}{unit}"


DAY = 86400.0

# Every numeric setting's allowed values, checked whatever the source (files, environment, flags,
# values the CLI stores). An interval of 0 spins a loop; a negative lease lets two daemons act.
RANGES: dict[str, Range] = {
    "agent.max_turns": Range(1, 1000, unit="turns"),
    "modal.idle_timeout_seconds": Range(0, DAY, unit="seconds (0: none)"),
    "modal.timeout_seconds": Range(0, 600, lo_open=True, unit="seconds"),
    "local.timeout_seconds": Range(0, 600, lo_open=True, unit="seconds"),
    "local.terminate_grace_seconds": Range(0, 600, unit="seconds"),
    "defaults.cpu": Range(*CPU_RANGE, unit="cores"),
    "defaults.memory_mib": Range(*MEMORY_RANGE_MIB, unit="MiB"),
    "defaults.timeout_minutes": Range(*TIMEOUT_RANGE_MIN, unit="minutes"),
    "reconciler.interval_seconds": Range(1, DAY, unit="seconds"),
    "reconciler.orphan_grace_seconds": Range(0, DAY, unit="seconds"),
    "reconciler.stale_seconds": Range(1, 7 * DAY, unit="seconds"),
    "reconciler.lease_seconds": Range(1, 7 * DAY, unit="seconds"),
    "reconciler.max_backoff_seconds": Range(1, DAY, unit="seconds"),
    "heartbeat.interval_seconds": Range(0.5, 3600, unit="seconds"),
    "heartbeat.retention_hours": Range(0, 24 * 366, lo_open=True, unit="hours"),
    "heartbeat.concurrency": Range(1, 256, unit="probes"),
    "heartbeat.probe_timeout_seconds": Range(0, 600, lo_open=True, unit="seconds"),
    "heartbeat.degraded_missed": Range(1, 1000, unit="missed heartbeats"),
    "heartbeat.unhealthy_missed": Range(1, 1000, unit="missed heartbeats"),
    "heartbeat.dead_missed": Range(1, 1000, unit="missed heartbeats"),
    "retention.events_days": Range(0, 3660, lo_open=True, unit="days"),
    "retention.runs_days": Range(0, 3660, lo_open=True, unit="days"),
    "policy.max_runtime_hours": Range(0, 24 * 366, unit="hours (0: no limit)"),
    "budget.ceiling_usd": Range(0.01, 1_000_000, hi_open=True, unit="USD"),  # at least a cent
    "budget.warn_percent": Range(1, 1000, unit="percent"),
    "rates.cpu_core_hour": Range(0, 1000, unit="USD per core-hour (0: published rate)"),
    "rates.memory_gib_hour": Range(0, 1000, unit="USD per GiB-hour (0: published rate)"),
    "rates.gpu": Range(0, 1000, lo_open=True, unit="USD per GPU-hour"),
    "tui.refresh_seconds": Range(0.1, 3600, unit="seconds"),
    "tui.event_rows": Range(1, 100_000, unit="rows"),
    "checkpoint.keep": Range(1, 10_000, unit="checkpoints per container"),
}

# Pairs (smaller, larger) of settings whose values must keep that order once all layers are merged.
ORDER: tuple[tuple[str, str, str], ...] = (
    (
        "reconciler.interval_seconds",
        "reconciler.lease_seconds",
        "a lease shorter than the interval expires between cycles and lets another daemon act",
    ),
    ("heartbeat.degraded_missed", "heartbeat.unhealthy_missed", "health worsens in order"),
    ("heartbeat.unhealthy_missed", "heartbeat.dead_missed", "health worsens in order"),
)


def range_problem(name: str, value: object) -> str | None:
    """Why `value` is not allowed for the numeric setting `name` (each item of a list or table),
    or None when it is (or the setting has no range)."""
    rng = RANGES.get(name)
    if rng is None:
        return None
    items = list(value.values()) if isinstance(value, dict) else value
    for v in items if isinstance(items, list) else [value]:
        if v not in rng:
            return f"{v!r} is out of range; allowed: {rng}"
    return None


def _gpu_setting(value: str) -> str:
    return "none" if value.strip().lower() in NO_GPU else normalize_gpu(value)


# Settings read through the same normaliser as every other place that reads them (GPU names in
# Modal's spelling); a normaliser raises ValueError with what is valid.
NORMALISE: dict[str, Callable[[Any], Any]] = {
    "defaults.gpu": _gpu_setting,
    "rates.gpu": normalize_gpu_rates,
}


# Settings that existed once and do nothing now: a file that still sets one gets a warning, not E103.
RETIRED: dict[str, str] = {
    "reconciler.batch": "the reconciler writes each cycle's changes in one transaction of "
    "a few statements, whatever the count",
}


def env_name(section: str | None, key: str) -> str:
    return f"PARHELIA_{section.upper()}_{key.upper()}" if section else f"PARHELIA_{key.upper()}"


# -- effective values: configuration, then what a command stored in the database ------------------

# Settings a command may store in the database (`parhelia budget set`). A stored value wins over
# every configured layer, for every reader: the budget guard, the dashboard, `budget show`,
# `config show` (`effective_setting` is the one rule).
STORED_SETTINGS = (
    "budget.ceiling_usd",
    "budget.period",
    "policy.budget",
    "policy.orphans",
    "policy.dead",
    "policy.max_runtime_hours",
)
DATABASE_SOURCE = "database"


def get_value(settings: Settings, name: str) -> Any:
    """The value of the dotted setting `name` in `settings` (files, environment, flags merged)."""
    section, _, key = name.rpartition(".")
    return getattr(getattr(settings, section) if section else settings, key)


def effective_setting(
    name: str, settings: Settings, stored: Mapping[str, Any], configured_source: str = "configured"
) -> tuple[Any, str]:
    """(value, source) of `name`: the database's value when a command stored one (source
    `DATABASE_SOURCE`), else the configured one with `configured_source`. A stored value outside
    its range or choices (written by hand or an older version) is E103, as in a file."""
    configured = get_value(settings, name)
    value = stored.get(name) if name in STORED_SETTINGS else None
    if value is None:
        return configured, configured_source
    problem = range_problem(name, value)
    if problem is None and name in CHOICES and value not in CHOICES[name]:
        problem = f"{value!r} is not one of {', '.join(CHOICES[name])}"
    if problem:
        raise ParheliaError(
            "E103",
            f"database setting {name} (set by `parhelia budget set`): {problem}",
            ["parhelia budget set 50", "parhelia budget show", "parhelia config show"],
            attempted=f"read the stored {name.replace('.', ' ').removesuffix('_usd')}",
        )
    if isinstance(configured, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # JSON keeps 40.0 as 40
    return value, DATABASE_SOURCE


def effective_value(name: str, settings: Settings, stored: Mapping[str, Any]) -> Any:
    return effective_setting(name, settings, stored)[0]


def budget_config(store: Any, settings: Settings) -> BudgetConfig:
    """The effective budget (`effective_budget`: a ceiling or policy stored by the CLI wins over
    configuration), read from `store` (a `Store`, or a read command's `QuickStore`)."""
    return effective_budget(settings, store.settings_with_prefix(""))


def effective_budget(settings: Settings, stored: Mapping[str, Any]) -> BudgetConfig:
    """The budget every reader uses: ceiling, period and policy, stored values first."""
    from parhelia.state.budget import BudgetConfig

    return BudgetConfig(
        ceiling_usd=float(effective_value("budget.ceiling_usd", settings, stored)),
        period=effective_value("budget.period", settings, stored),
        policy=effective_value("policy.budget", settings, stored),
        thresholds=tuple(sorted(settings.budget.warn_percent)),
    )
