"""Closed vocabularies of the control plane, shared by store, workers and front ends."""

from __future__ import annotations

from enum import StrEnum


class ContainerState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    ORPHANED = "orphaned"


ACTIVE_STATES = (ContainerState.CREATED, ContainerState.RUNNING, ContainerState.ORPHANED)


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DEAD = "dead"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


# Tasks whose work is still live (counted as active); every other status is an end.
LIVE_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RUNNING)


class EventLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LEVEL_ORDER = {EventLevel.DEBUG: 0, EventLevel.INFO: 1, EventLevel.WARNING: 2, EventLevel.ERROR: 3}


class EventSource(StrEnum):
    SYSTEM = "system"
    RECONCILER = "reconciler"
    HEARTBEAT = "heartbeat"
    BUDGET = "budget"
    USER = "user"
    DISPATCHER = "dispatcher"
