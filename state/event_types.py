"""Every event type the store may write, in one `StrEnum`.

The store's event writers (`make_event`, `Store.add_event`, the bulk paths) refuse any other type
with a ValueError, so a typo cannot silently start a new type that no filter, pane or export
knows. A new kind of event is a new member here."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class EventType(StrEnum):
    # containers: their lifecycle, health and the reconciler's findings
    CONTAINER_CREATED = "container.created"
    CONTAINER_STATE = "container.state"
    CONTAINER_HEALTH = "container.health"
    CONTAINER_HEARTBEAT = "container.heartbeat"
    CONTAINER_ORPHANED = "container.orphaned"
    CONTAINER_ADOPTED = "container.adopted"
    CONTAINER_DRIFT = "container.drift"
    CONTAINER_TERMINATE_FAILED = "container.terminate_failed"
    CONTAINER_TERMINATED_AGAIN = "container.terminated_again"
    HEARTBEAT_FAILED = "heartbeat.failed"
    CONTAINER_SAMPLE = "container.sample"  # a watch's own line per heartbeat, never stored
    # tasks: created by a dispatch, moved by their containers (`task.status`), or told by the agent
    TASK_CREATED = "task.created"
    TASK_STATUS = "task.status"
    TASK_PROGRESS = "task.progress"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    TASK_CANCELLED = "task.cancelled"
    TASK_TIMED_OUT = "task.timed_out"
    # checkpoints of an agent's workspace (`workers/checkpoints.py`)
    CHECKPOINT_CREATED = "checkpoint.created"
    CHECKPOINT_FAILED = "checkpoint.failed"
    CHECKPOINT_RESTORED = "checkpoint.restored"
    CHECKPOINT_DELETED = "checkpoint.deleted"
    # an agent's terminal session (`workers/sessions.py`)
    SESSION_KILLED = "session.killed"
    AGENT_ACTIVITY = "agent.activity"  # what a Claude Code hook said the agent does
    # money, the reconciler, people
    BUDGET = "budget"
    BUDGET_CEILING = "budget.ceiling"
    BUDGET_WARNING = "budget.warning"
    RECONCILER_ERROR = "reconciler.error"
    USER_ACTION = "user.action"
    USER_TERMINATE = "user.terminate"
    NOTE = "note"


_KNOWN = frozenset(t.value for t in EventType)


def checked_type(value: str) -> str:
    """`value` as the plain string the store writes; ValueError naming this module when it is not
    an `EventType` (one set lookup: the bulk paths call it per row)."""
    if value in _KNOWN:
        return str(value)
    raise ValueError(
        f"unknown event type {value!r}: the store writes only EventType members "
        "(parhelia.state.event_types); add one there for a new kind of event"
    )


def check_types(values: Iterable[str]) -> None:
    """`checked_type` over many (a bulk insert's rows), each distinct value once."""
    for value in set(values):
        checked_type(value)
