"""The pure rules behind issue 10: how a task's status follows its container (`state.task_end`),
and the one lifecycle move only a listing may make (`state.lifecycle.SIGHTED`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parhelia.state.enums import ContainerState as S
from parhelia.state.enums import TaskStatus as T
from parhelia.state.errors import ParheliaError
from parhelia.state.lifecycle import can_transition, check_transition
from parhelia.state.task_end import next_task_status, task_status_for

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "has_sandbox", "code", "reason", "want"),
    [
        (S.CREATED, False, None, None, T.PENDING),
        (S.CREATED, True, None, None, T.RUNNING),
        (S.RUNNING, True, None, None, T.RUNNING),
        (S.ORPHANED, True, None, None, T.RUNNING),
        (S.STOPPED, True, 0, "exited", T.COMPLETED),
        (S.STOPPED, True, 2, "exited", T.FAILED),
        (S.STOPPED, True, 124, "exited", T.TIMED_OUT),
        (S.TERMINATED, True, 0, "exited", T.COMPLETED),
        (S.TERMINATED, True, 137, "external", T.FAILED),
        (S.TERMINATED, True, None, "timeout", T.TIMED_OUT),
        (S.TERMINATED, True, 143, "user", T.CANCELLED),
        (S.TERMINATED, True, 137, "task_cancelled", T.CANCELLED),
        (S.TERMINATED, True, 137, "orphan_cleanup", T.CANCELLED),
        (S.TERMINATED, True, None, "budget", T.CANCELLED),
        (S.TERMINATED, False, None, "dispatch_failed", T.FAILED),
        (S.TERMINATED, False, None, "dispatch_lost", T.FAILED),
    ],
)
def test_task_status_follows_the_container(state, has_sandbox, code, reason, want):
    got = task_status_for(state, has_sandbox=has_sandbox, exit_code=code, reason=reason)
    assert got == want


def test_a_sandbox_gone_without_an_exit_code_timed_out_only_after_its_whole_timeout():
    def status(minutes_run: float) -> T:
        return task_status_for(
            S.TERMINATED,
            has_sandbox=True,
            exit_code=None,
            reason="external",
            started_at=T0,
            ended_at=T0 + timedelta(minutes=minutes_run),
            timeout_seconds=60 * 60,
        )

    assert (status(61), status(59)) == (T.TIMED_OUT, T.FAILED)


def test_work_moves_forward_and_an_end_is_kept_unless_the_sandbox_runs_again():
    assert next_task_status(T.PENDING, T.RUNNING) == T.RUNNING
    assert next_task_status(T.RUNNING, T.COMPLETED) == T.COMPLETED
    assert next_task_status(T.RUNNING, T.PENDING) is None
    assert next_task_status(T.RUNNING, T.RUNNING) is None
    assert next_task_status(T.COMPLETED, T.CANCELLED) is None  # the first end stays
    assert next_task_status(T.CANCELLED, T.RUNNING) == T.RUNNING  # its sandbox still runs


def test_only_a_sighting_sends_a_terminated_row_back_to_orphaned():
    assert not can_transition(S.TERMINATED, S.ORPHANED)
    assert can_transition(S.TERMINATED, S.ORPHANED, sighted=True)
    assert not can_transition(S.TERMINATED, S.RUNNING, sighted=True)
    with pytest.raises(ParheliaError) as err:
        check_transition("c-1", S.TERMINATED, S.ORPHANED)
    assert err.value.code == "E105"
