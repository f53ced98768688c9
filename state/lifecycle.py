"""The SPEC-21 container lifecycle: created → running → stopped → terminated; any → orphaned;
orphaned → terminated. Anything else is refused, so a bug can never resurrect a terminated container.

One exception, and only on evidence: a backend listing that shows a sandbox running while its row
says `terminated` sends the row back to `orphaned` (`SIGHTED`), so that money still burning is
counted, shown and can be terminated again. Nothing but a listing may make that move."""

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

# Moves only a listing that shows the sandbox running may make (see the module docstring).
SIGHTED: dict[S, frozenset[S]] = {S.TERMINATED: frozenset({S.ORPHANED})}

TERMINAL = frozenset({S.TERMINATED})
# The row fields a sighting clears: the row no longer says how or when it ended.
ENDED_FIELDS = ("terminated_at", "termination_reason", "terminated_by", "exit_code")


def can_transition(old: str, new: str, *, sighted: bool = False) -> bool:
    """`sighted`: the caller has a listing showing the row's sandbox running."""
    if old == new or S(new) in TRANSITIONS[S(old)]:
        return True
    return sighted and S(new) in SIGHTED.get(S(old), frozenset())


def check_transition(container_id: str, old: str, new: str) -> None:
    if not can_transition(old, new):
        allowed = ", ".join(sorted(TRANSITIONS[S(old)])) or "none (final state)"
        raise ParheliaError(
            "E105",
            f"container {container_id} cannot go from {old} to {new}; allowed from {old}: {allowed}",
            [f"parhelia containers show {container_id}", "parhelia help containers"],
        )
