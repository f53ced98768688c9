"""Health from missed heartbeats: 2 missed degraded, 5 unhealthy, 10 dead (configurable)."""

from __future__ import annotations

from dataclasses import dataclass

from parhelia.state.enums import ACTIVE_STATES, Health

NO_LIVE_HEALTH = "-"  # what an ended (stopped, terminated) container shows: nothing lives to probe


@dataclass(frozen=True)
class HealthThresholds:
    degraded: int = 2
    unhealthy: int = 5
    dead: int = 10


def health_from_missed(missed: int, thresholds: HealthThresholds = HealthThresholds()) -> Health:
    if missed >= thresholds.dead:
        return Health.DEAD
    if missed >= thresholds.unhealthy:
        return Health.UNHEALTHY
    if missed >= thresholds.degraded:
        return Health.DEGRADED
    return Health.HEALTHY


SEVERITY = {
    Health.UNKNOWN: 0,
    Health.HEALTHY: 0,
    Health.DEGRADED: 1,
    Health.UNHEALTHY: 2,
    Health.DEAD: 3,
}


def shown_health(state: str, health: str, last_heartbeat_at: object) -> str:
    """The one mapping from a row's state to the health every view shows (TUI, `containers
    list`, `--json`): an ended container has no live health, and no heartbeat yet is "unknown",
    never "healthy" next to "last heartbeat never"."""
    if state not in ACTIVE_STATES:
        return NO_LIVE_HEALTH
    if last_heartbeat_at is None and health == Health.HEALTHY:
        return Health.UNKNOWN.value
    return health
