"""Issue 10: the registry you can trust. A listing only judges rows that existed, unchanged, when it
began; a row that says ended while its sandbox runs is a fire; terminate is idempotent on the
sandbox; a quick agent ends stopped, not in an E105; tasks end. Real local processes throughout."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from parhelia.state.enums import ContainerState
from parhelia.state.requests import TaskRequest
from parhelia.state.settings import Settings
from parhelia.widgets.formatting import attention_reasons
from parhelia.workers.backends.local import LocalBackend
from parhelia.workers.control import ControlPlane

# An agent that runs until a file named `stop` appears in its working directory, then exits with
# the code written in it: the tests decide when and how each agent ends.
WAITING_AGENT = (
    "sh -c 'while [ ! -e stop ]; do sleep 0.02; done; exit \"$(cat stop)\"' agent {prompt}"
)
QUICK_AGENT = "sh -c 'exit 0' agent {prompt}"


class Gated:
    """A backend whose listing runs hooks: `before_list` before the real listing is read,
    `after_list` after it is read and before it is answered (a listing that answers late)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.before_list = None
        self.after_list = None
        self.after_create = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def create(self, spec):
        info = self.inner.create(spec)
        if self.after_create is not None:
            self.after_create(info)
        return info

    def list(self):
        if self.before_list is not None:
            self.before_list()
        listing = self.inner.list()
        if self.after_list is not None:
            self.after_list()
        return listing


def make_settings(agent: str = WAITING_AGENT) -> Settings:
    s = Settings()
    s.agent.command = agent
    s.reconciler.orphan_grace_seconds = 0.0  # judge every sighting at once: races show sooner
    return s


def make_control(store, root: Path, agent: str = WAITING_AGENT) -> tuple[ControlPlane, Gated]:
    gate = Gated(LocalBackend(root, terminate_grace=2.0))
    control = ControlPlane(
        store, make_settings(agent), default_backend="local", backends={"local": gate}
    )
    return control, gate


def running(local: LocalBackend, sandbox_id: str) -> bool:
    return any(i.sandbox_id == sandbox_id and i.running for i in local.list())


def wait_until(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for a real process"
        time.sleep(0.02)


def finish(local: LocalBackend, sandbox_id: str, code: int) -> None:
    """Make a waiting agent exit with `code`, and wait until its sandbox has ended."""
    workdir = local.root / sandbox_id
    tmp = workdir / "stop.tmp"
    tmp.write_text(str(code))
    os.replace(tmp, workdir / "stop")
    wait_until(lambda: not running(local, sandbox_id))


@pytest.fixture
def plane(store, tmp_path):
    control, gate = make_control(store, tmp_path / "sb")
    yield control, gate
    for info in gate.inner.list():
        if info.running:
            gate.inner.terminate(info.sandbox_id)


# -- rule 1: reconcile and dispatch never race -------------------------------------------------


def test_a_dispatch_landing_while_a_listing_answers_late_is_not_judged_by_it(store, plane):
    """The issue's race: the listing is read, the dispatch lands, then the listing answers.
    Before: the row (now with its sandbox id, absent from the listing) was marked terminated
    (external) while its process ran on."""
    control, gate = plane
    listed, landed = threading.Event(), threading.Event()

    def answer_late():
        listed.set()
        assert landed.wait(30)

    gate.after_list = answer_late
    reports = []
    cycle = threading.Thread(target=lambda: reports.append(control.reconcile_once()))
    cycle.start()
    assert listed.wait(30)
    result = control.dispatch(TaskRequest(prompt="race"))
    landed.set()
    cycle.join(30)
    gate.after_list = None

    assert reports and reports[0].terminated == 0
    row = store.get_container(result.container_id)
    assert row.state == ContainerState.RUNNING and running(gate.inner, result.sandbox_id)
    control.reconcile_once()  # the next listing sees it, and leaves it running
    assert store.get_container(result.container_id).state == ContainerState.RUNNING


def test_a_sandbox_whose_row_appears_after_the_snapshot_is_neither_orphan_nor_conflict(
    store, plane
):
    """The dispatch lands after the rows were read but before the backend is listed: the listing
    shows a sandbox the snapshot does not know. It is not judged (no orphan row, no sighting)."""
    control, gate = plane
    landed = []

    def dispatch_first():
        gate.before_list = None
        landed.append(control.dispatch(TaskRequest(prompt="between")))

    gate.before_list = dispatch_first
    report = control.reconcile_once()
    [result] = landed
    assert (report.orphans, report.conflicts, report.terminated) == (0, 0, 0)
    assert store.get_container(result.container_id).state == ContainerState.RUNNING
    assert [c.id for c in store.containers()] == [result.container_id]


def test_a_row_terminated_during_a_listing_is_not_revived_by_it(store, plane):
    """A user's terminate lands while the listing (which still shows the sandbox running) is in
    flight: the row stays terminated and the dead sandbox is not called an orphan."""
    control, gate = plane
    result = control.dispatch(TaskRequest(prompt="stop me"))

    def terminate_meanwhile():
        gate.after_list = None
        control.terminate(result.container_id)

    gate.after_list = terminate_meanwhile
    report = control.reconcile_once()
    assert (report.conflicts, report.orphans) == (0, 0)
    row = store.get_container(result.container_id)
    assert (row.state, row.termination_reason) == (ContainerState.TERMINATED, "user")
    assert not running(gate.inner, result.sandbox_id)


# -- rule 2: terminate is idempotent on the sandbox ----------------------------------------------


def test_terminate_of_a_terminated_row_still_stops_its_sandbox(store, plane):
    control, gate = plane
    result = control.dispatch(TaskRequest(prompt="lost"))
    # the row says ended while its process runs (as the old race left it)
    store.transition(result.container_id, ContainerState.TERMINATED, source="reconciler")
    assert running(gate.inner, result.sandbox_id)

    view = control.terminate(result.container_id)
    assert view.state == ContainerState.TERMINATED
    assert not running(gate.inner, result.sandbox_id)
    types = [e.type for e in store.events(container_id=result.container_id)]
    assert "container.terminated_again" in types
    control.terminate(result.container_id)  # and again: nothing left to stop, no error


# -- rule 3: a quick agent ends stopped, not in an E105 ------------------------------------------


def test_a_sandbox_that_exits_before_running_is_written_ends_stopped_and_completed(store, tmp_path):
    control, gate = make_control(store, tmp_path / "sb", agent=QUICK_AGENT)

    def exit_then_reconcile(info):
        wait_until(lambda: not running(gate.inner, info.sandbox_id))
        control.reconcile_once()  # adopts the row by its tag and sees the sandbox ended

    gate.after_create = exit_then_reconcile
    result = control.dispatch(TaskRequest(prompt="quick"))
    row = store.get_container(result.container_id)
    assert (row.state, row.sandbox_id, row.exit_code) == (
        ContainerState.STOPPED,
        result.sandbox_id,
        0,
    )
    assert store.get_task(result.task_id).status == "completed"


# -- rule 4: a row that says ended while its sandbox runs is a fire ----------------------------


def test_a_terminated_row_whose_sandbox_runs_is_an_orphan_again_and_really_terminated(store, plane):
    control, gate = plane
    result = control.dispatch(TaskRequest(prompt="burning"))
    store.transition(
        result.container_id,
        ContainerState.TERMINATED,
        source="reconciler",
        termination_reason="external",
    )
    before = control.dashboard()
    assert before.budget.burn_rate_per_hour == 0.0 and not attention_reasons(before)

    report = control.reconcile_once()
    assert report.conflicts == 1
    row = store.get_container(result.container_id)
    assert (row.state, row.terminated_at, row.termination_reason) == ("orphaned", None, None)
    view = control.dashboard()
    assert view.budget.burn_rate_per_hour == pytest.approx(row.cost_rate_per_hour)
    assert any("orphaned" in r for r in attention_reasons(view)) and view.needs_attention
    assert [c.id for c in store.orphans()] == [result.container_id]  # cleanup --orphans' targets
    assert store.get_task(result.task_id).status == "running"  # the work is live

    control.terminate(result.container_id, reason="orphan_cleanup")
    assert not running(gate.inner, result.sandbox_id)
    row = store.get_container(result.container_id)
    assert row.state == ContainerState.TERMINATED and row.terminated_at is not None
    assert store.get_task(result.task_id).status == "cancelled"
    assert control.reconcile_once().conflicts == 0


# -- rule 5: tasks end ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [(0, "completed"), (3, "failed"), (124, "timed_out")])
def test_a_task_ends_from_its_agents_exit_code(store, plane, code, status):
    control, gate = plane
    result = control.dispatch(TaskRequest(prompt="work"))
    assert store.get_task(result.task_id).status == "running"
    finish(gate.inner, result.sandbox_id, code)
    control.reconcile_once()
    row = store.get_container(result.container_id)
    assert (row.state, row.exit_code) == (ContainerState.STOPPED, code)
    task = store.get_task(result.task_id)
    assert task.status == status and task.finished_at is not None


def test_an_adopted_task_runs_then_ends(store, plane):
    """A dispatch that died after create (no sandbox id written): the listing adopts its sandbox,
    and the task follows: pending → running → completed."""
    control, gate = plane

    def die(info):
        raise KeyboardInterrupt  # the CLI killed between create and the last write

    gate.after_create = die
    with pytest.raises(KeyboardInterrupt):
        control.dispatch(TaskRequest(prompt="adopt me"))
    gate.after_create = None
    [row] = store.containers()
    assert (row.state, store.get_task(row.task_id).status) == ("created", "pending")

    control.reconcile_once()
    row = store.get_container(row.id)
    assert row.state == "running" and store.get_task(row.task_id).status == "running"
    finish(gate.inner, row.sandbox_id, 0)
    control.reconcile_once()
    assert store.get_task(row.task_id).status == "completed"


# -- the Modal path, through the unmodified SDK against the fake Modal API --------------------

MODAL_APP = "parhelia-race"


@pytest.fixture
def modal_plane(store, fake_modal):
    from parhelia.state.settings import ModalSettings
    from parhelia.workers.backends.modal import ModalBackend

    settings = make_settings("claude -p {prompt}")
    settings.modal.app = MODAL_APP
    gate = Gated(ModalBackend(ModalSettings(app=MODAL_APP), client=fake_modal.shared_client))
    control = ControlPlane(store, settings, default_backend="modal", backends={"modal": gate})
    return control, gate, fake_modal.state


def test_modal_a_dispatch_landing_while_the_listing_answers_late_is_not_judged(store, modal_plane):
    """5 of 5 on the Modal API before, when its listing answered 2 s late."""
    control, gate, fake = modal_plane
    landed = []

    def answer_late():  # the listing was read; a dispatch lands before it answers
        gate.after_list = None
        landed.append(control.dispatch(TaskRequest(prompt="race")))

    gate.after_list = answer_late
    report = control.reconcile_once()
    [result] = landed
    assert report.error is None and report.terminated == 0
    assert store.get_container(result.container_id).state == ContainerState.RUNNING
    assert fake.sandboxes[result.sandbox_id].running
    assert control.reconcile_once().terminated == 0


@pytest.mark.parametrize(
    ("finish", "status"),
    [({"code": 0}, "completed"), ({"code": 2}, "failed"), ({"timed_out": True}, "timed_out")],
)
def test_modal_a_task_ends_from_how_its_sandbox_ended(store, modal_plane, finish, status):
    """Modal lists only running sandboxes: the reconciler asks how an unlisted one ended."""
    control, _, fake = modal_plane
    result = control.dispatch(TaskRequest(prompt="work"))
    fake.finish(result.sandbox_id, **finish)
    control.reconcile_once()
    row = store.get_container(result.container_id)
    assert (row.state, row.termination_reason) == (ContainerState.TERMINATED, "exited")
    assert store.get_task(result.task_id).status == status


def test_modal_terminate_of_a_terminated_row_still_stops_its_sandbox(store, modal_plane):
    control, _, fake = modal_plane
    result = control.dispatch(TaskRequest(prompt="lost"))
    store.transition(result.container_id, ContainerState.TERMINATED, source="reconciler")
    control.terminate(result.container_id)
    assert not fake.sandboxes[result.sandbox_id].running


def test_cli_task_list_shows_a_finished_agent_completed_and_not_active(parhelia_env, monkeypatch):
    env = parhelia_env
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", QUICK_AGENT)
    created = env.ok("task", "create", "quick job")
    wait_until(lambda: not running(env.backend(), created["sandbox_id"]))
    env.ok("reconciler", "run")
    [listed] = env.ok("task", "list")
    assert (listed["id"], listed["status"]) == (created["task_id"], "completed")
    assert "0 active (pending or running), 1 ended" in env.run("task", "list").out
    shown = env.ok("task", "show", created["task_id"])
    assert shown["task"]["status"] == "completed" and shown["task"]["finished_at"]
    assert shown["containers"][0]["exit_code"] == 0
