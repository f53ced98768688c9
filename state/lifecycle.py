"""The SPEC-21 container lifecycle: created → running → stopped → terminated; any → orphaned;
orphaned → terminated. Anything else is refused, so a bug can never resurrect a terminated container."""

from __future__ import annotations

from parhelia.state.enums import ContainerState as S
from parhelia.state.errors import ParheliaError

TRANSITIONS: dict[S, frozenset[S]] = {
    S.CREATED: frozenset({S.RUNNING, S.STOPPED, S.TERMINATED, S.ORPHANED}),
    S.RUNNING: frozenset({S.STOPPED, S.TERMINATED, S.ORPHANED}),
    S.STOPPED: frozenset({S.TERMINATED, S.ORPHANED}),
    S.ORPHANED: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
}

TERMINAL = frozenset({S.TERMINATED})


def can_transition(old: str, new: str) -> bool:
    return old == new or S(new) in TRANSITIONS[S(old)]


def check_transition(container_id: str, old: str, new: str) -> None:
    if not can_transition(old, new):
        allowed = ", ".join(sorted(TRANSITIONS[S(old)])) or "none (final state)"
        raise ParheliaError(
            "E105",
            f"container {container_id} cannot go from {old} to {new}; allowed from {old}: {allowed}",
            [f"parhelia containers show {container_id}", "parhelia help containers"],
        )
