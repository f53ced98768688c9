"""How a task's status follows its container: the one rule, for every path (local or Modal,
dispatched or adopted, CLI or dashboard). `Store` applies it whenever a container row changes state.

A container that exists but has no running sandbox yet is `pending` work; one whose sandbox runs
(or runs unrecorded, `orphaned`) is `running`; an ended one (`stopped` or `terminated`) ends its
task from the exit code, the termination reason and the timeout:
- a reason that names a person or a policy (user, task_cancelled, orphan_cleanup, budget...) is
  `cancelled`: someone decided the work should stop;
- the sandbox's own end: exit 0 `completed`, 124 (a timeout, as Modal and the local supervisor
  report it) `timed_out`, any other code `failed`;
- a dispatch that failed or was lost is `failed`;
- a sandbox that vanished with no exit code is `timed_out` if it had run for its whole timeout,
  otherwise `failed` (nothing says it finished its work).
"""

from __future__ import annotations

from datetime import datetime

from parhelia.state.enums import ContainerState
from parhelia.state.enums import TaskStatus as T

TIMEOUT_EXIT = 124
# Reasons that are the sandbox's own end, not someone's decision to stop it.
OWN_END = frozenset({"exited", "external", "timeout", None})
FAILED_DISPATCH = frozenset({"dispatch_failed", "dispatch_lost"})


def task_status_for(
    state: str,
    *,
    has_sandbox: bool,
    exit_code: int | None,
    reason: str | None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    timeout_seconds: float | None = None,
) -> T:
    """The status a task has when its container is in `state` (see the module docstring)."""
    if state == ContainerState.CREATED:
        return T.RUNNING if has_sandbox else T.PENDING
    if state in (ContainerState.RUNNING, ContainerState.ORPHANED):
        return T.RUNNING
    if reason in FAILED_DISPATCH:
        return T.FAILED
    if reason not in OWN_END:
        return T.CANCELLED
    if reason == "timeout" or exit_code == TIMEOUT_EXIT:
        return T.TIMED_OUT
    if exit_code is not None:
        return T.COMPLETED if exit_code == 0 else T.FAILED
    ran = (ended_at - started_at).total_seconds() if started_at and ended_at else 0.0
    if timeout_seconds and ran >= timeout_seconds:
        return T.TIMED_OUT
    return T.FAILED


def next_task_status(current: str, derived: T) -> T | None:
    """What to write, or None to leave the task alone: work moves forward (pending → running →
    an end), a task that has ended keeps the end it was given first, except that a task whose
    sandbox is seen running again is running again (the work is live, whatever the row said)."""
    live = (T.PENDING, T.RUNNING)
    if current == derived:
        return None
    if current == T.RUNNING and derived == T.PENDING:
        return None
    if current not in live and derived != T.RUNNING:
        return None
    return derived
