"""The settings schema: every setting's name, type and built-in default, in one place.

Loading (files, environment, flags) lives in `parhelia.app.config`; this module is pure so
workers can take a `Settings` without knowing where it came from. The naming rule: `[section] key`
in TOML is `PARHELIA_SECTION_KEY` in the environment; top-level keys have no section.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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


@dataclass
class LocalSettings:
    root: str = ""  # empty: <user data dir>/sandboxes
    terminate_grace_seconds: float = 5.0


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
    batch: int = 100
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
class Settings:
    backend: str = "auto"  # auto | local | modal
    db_url: str = ""  # empty: sqlite in the user data dir
    agent: AgentSettings = field(default_factory=AgentSettings)
    modal: ModalSettings = field(default_factory=ModalSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    defaults: DefaultsSettings = field(default_factory=DefaultsSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    rates: RatesSettings = field(default_factory=RatesSettings)
    tui: TuiSettings = field(default_factory=TuiSettings)


SECTIONS = tuple(f.name for f in fields(Settings) if not f.type.endswith(("str", "int", "float")))

CHOICES: dict[str, tuple[str, ...]] = {
    "backend": ("auto", "local", "modal"),
    "policy.orphans": ("flag", "terminate"),
    "policy.dead": ("flag", "terminate"),
    "policy.budget": ("warn", "block", "stop"),
    "budget.period": ("day", "week", "month"),
}


def env_name(section: str | None, key: str) -> str:
    return f"PARHELIA_{section.upper()}_{key.upper()}" if section else f"PARHELIA_{key.upper()}"
