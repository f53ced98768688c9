"""Health from missed heartbeats: 2 missed degraded, 5 unhealthy, 10 dead (configurable)."""

from __future__ import annotations

from dataclasses import dataclass

from parhelia.state.enums import Health


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
