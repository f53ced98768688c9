"""The SPEC-21 container lifecycle: created → running → stopped → terminated; any → orphaned;
orphaned → terminated. Anything else is refused, so a bug can never resurrect a terminated container.

One exception, and only on evidence: a backend listing that shows a sandbox running while its row
says `terminated` sends the row back to `orphaned` (`SIGHTED`), so that money still burning is
counted, shown and can be terminated again. Nothing but a listing may make that move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parhelia.state.costs import current_cost
from parhelia.state.enums import ContainerState
from parhelia.state.errors import ParheliaError

TRANSITIONS: dict[ContainerState, frozenset[ContainerState]] = {
    ContainerState.CREATED: frozenset(
        {
            ContainerState.RUNNING,
            ContainerState.STOPPED,
            ContainerState.TERMINATED,
            ContainerState.ORPHANED,
        }
    ),
    ContainerState.RUNNING: frozenset(
        {ContainerState.STOPPED, ContainerState.TERMINATED, ContainerState.ORPHANED}
    ),
    ContainerState.STOPPED: frozenset({ContainerState.TERMINATED, ContainerState.ORPHANED}),
    ContainerState.ORPHANED: frozenset({ContainerState.TERMINATED}),
    ContainerState.TERMINATED: frozenset(),
}

# Moves only a listing that shows the sandbox running may make (see the module docstring).
SIGHTED: dict[ContainerState, frozenset[ContainerState]] = {
    ContainerState.TERMINATED: frozenset({ContainerState.ORPHANED})
}

TERMINAL = frozenset({ContainerState.TERMINATED})
# The row fields a sighting clears: the row no longer says how or when it ended.
ENDED_FIELDS = ("terminated_at", "termination_reason", "terminated_by", "exit_code")


def can_transition(old: str, new: str, *, sighted: bool = False) -> bool:
    """`sighted`: the caller has a listing showing the row's sandbox running."""
    if old == new or ContainerState(new) in TRANSITIONS[ContainerState(old)]:
        return True
    return sighted and ContainerState(new) in SIGHTED.get(ContainerState(old), frozenset())


def check_transition(container_id: str, old: str, new: str) -> None:
    if not can_transition(old, new):
        allowed = ", ".join(sorted(TRANSITIONS[ContainerState(old)])) or "none (final state)"
        raise ParheliaError(
            "E105",
            f"container {container_id} cannot go from {old} to {new}; allowed from {old}: {allowed}",
            [f"parhelia containers show {container_id}", "parhelia help containers"],
        )


# The states a row ends in: the first move into one stamps the end (`end_of_life`).
ENDING = frozenset({ContainerState.STOPPED, ContainerState.TERMINATED})


def end_of_life(row: Any, new_state: str, now: datetime) -> dict[str, Any]:
    """The fields a container row takes when it ends (its first move to stopped or terminated):
    when it ended and its final cost, the current cost frozen at `now`. Empty for any other move,
    or for a row that has ended before. `row` is a `Container` or a plain row with its columns."""
    if new_state not in ENDING or row.terminated_at is not None:
        return {}
    return {
        "terminated_at": now,
        "cost_accrued_usd": current_cost(
            row.cost_accrued_usd, row.cost_rate_per_hour, row.started_at, now
        ),
    }
