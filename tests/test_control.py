"""The ControlPlane's dispatch and terminate rules, against a real store and an in-memory backend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from parhelia.state.errors import ParheliaError
from parhelia.state.requests import TaskRequest
from parhelia.state.settings import Settings
from parhelia.workers.control import ControlPlane
from tests.fakes import MemoryBackend

ECHO = "echo {prompt}"


@pytest.fixture
def backend():
    return MemoryBackend()


def make_control(store, backend, **budget) -> ControlPlane:
    settings = Settings()
    settings.agent.command = ECHO
    if budget:
        settings.budget = replace(settings.budget, **budget)
    return ControlPlane(store, settings, default_backend="local", backends={"local": backend})


def test_dispatch_records_the_row_before_the_sandbox_exists(store, backend):
    seen = {}

    def check_row(spec):
        row = store.get_container(spec.container_id)
        seen["state"], seen["sandbox"] = row.state, row.sandbox_id

    backend.on_create = check_row
    result = make_control(store, backend).dispatch(
        TaskRequest(prompt="fix it", cpu=2, memory_mib=4096)
    )
    assert seen == {"state": "created", "sandbox": None}
    c = store.get_container(result.container_id)
    assert (c.state, c.sandbox_id, c.task_id) == ("running", result.sandbox_id, result.task_id)
    spec = backend.specs[result.sandbox_id]
    assert spec.tags == {
        "parhelia": "1",
        "parhelia_container": c.id,
        "parhelia_task": result.task_id,
        "parhelia_plane": store.plane_id,  # the store's control-plane id
    }
    assert store.plane_id.startswith("cp-")
    assert spec.argv == ["echo", "fix it"]
    assert c.cost_rate_per_hour == pytest.approx(2 * 0.1419 + 4 * 0.0242)
    types = [e.type for e in store.events(container_id=c.id, oldest_first=True)]
    assert types == ["container.created", "container.state"]
    assert store.get_task(result.task_id).status == "running"


def test_failed_create_leaves_no_running_row_and_keeps_the_code(store, backend):
    backend.fail_create = ParheliaError("E502", "unreachable", ["a", "b"])
    control = make_control(store, backend)
    with pytest.raises(ParheliaError) as err:
        control.dispatch(TaskRequest(prompt="fix it"))
    assert err.value.code == "E502"
    (c,) = store.containers()
    assert (c.state, c.termination_reason) == ("terminated", "dispatch_failed")
    assert store.get_task(c.task_id).status == "failed"


def test_store_failure_after_create_terminates_the_sandbox(store, backend, monkeypatch):
    control = make_control(store, backend)
    real = store.transition

    def broken(cid, state, **kw):
        if state == "running":
            raise ParheliaError("E701", "disk full", ["parhelia db status", "parhelia config show"])
        return real(cid, state, **kw)

    monkeypatch.setattr(store, "transition", broken)
    with pytest.raises(ParheliaError):
        control.dispatch(TaskRequest(prompt="fix it"))
    assert backend.terminated and not backend.sandboxes  # nothing left running without a row


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"gpu": "H1000"}, "E101"),
        ({"cpu": -1}, "E101"),
        ({"memory_mib": 10**9}, "E101"),
        ({"timeout_minutes": 0}, "E101"),
        ({"prompt": "  "}, "E102"),
    ],
)
def test_invalid_requests_are_refused_before_anything_is_written(
    store, backend, request_kwargs, code
):
    req = TaskRequest(**{"prompt": "x", **request_kwargs})
    with pytest.raises(ParheliaError) as err:
        make_control(store, backend).dispatch(req)
    assert err.value.code == code and len(err.value.suggestions) >= 2
    assert store.containers() == [] and backend.sandboxes == {}


def test_budget_refuses_an_estimate_over_the_remaining_budget(store, backend):
    control = make_control(store, backend, ceiling_usd=1.0)
    with pytest.raises(ParheliaError) as err:
        control.dispatch(
            TaskRequest(prompt="train", backend="modal", gpu="H100", timeout_minutes=60)
        )
    assert err.value.code == "E300"
    assert store.containers() == []


def test_budget_warns_near_the_ceiling(store, backend):
    control = make_control(store, backend, ceiling_usd=1.0)
    result = control.dispatch(TaskRequest(prompt="fix", cpu=5, memory_mib=4096, timeout_minutes=60))
    assert any("ceiling" in w for w in result.warnings)
    assert store.events(types=["budget.warning"])


def test_block_policy_refuses_dispatch_past_the_ceiling(store, backend):
    from parhelia.state.models import Container
    from parhelia.state.timeutil import utcnow

    control = make_control(store, backend, ceiling_usd=1.0)
    control.settings.policy.budget = "block"
    store.add_container(
        Container(backend="local", state="terminated", terminated_at=utcnow(), cost_accrued_usd=1.5)
    )
    with pytest.raises(ParheliaError) as err:
        control.dispatch(TaskRequest(prompt="fix", timeout_minutes=1))
    assert err.value.code == "E603"
    assert [c.state for c in store.containers()] == ["terminated"]


def test_terminate_is_idempotent_and_records_who_why_and_cost(store, backend):
    control = make_control(store, backend)
    r = control.dispatch(TaskRequest(prompt="fix"))
    v1 = control.terminate(r.container_id, actor="user", reason="user")
    v2 = control.terminate(r.container_id, actor="user", reason="user")
    assert v1.state == v2.state == "terminated" and v1.exit_code == 137
    c = store.get_container(r.container_id)
    assert (c.terminated_by, c.termination_reason) == ("user", "user")
    assert backend.terminated == [r.sandbox_id]
    assert store.get_task(r.task_id).status == "cancelled"


def test_failed_terminate_leaves_the_store_as_it_was(store, backend):
    control = make_control(store, backend)
    r = control.dispatch(TaskRequest(prompt="fix"))
    backend.fail_terminate = ParheliaError("E502", "unreachable", ["a", "b"])
    with pytest.raises(ParheliaError):
        control.terminate(r.container_id)
    c = store.get_container(r.container_id)
    assert c.state == "running" and c.sandbox_id == r.sandbox_id
    assert store.events(types=["container.terminate_failed"])


def test_cancel_terminates_and_retry_links_a_new_attempt(store, backend):
    control = make_control(store, backend)
    r = control.dispatch(TaskRequest(prompt="fix", cpu=2))
    control.cancel_task(r.task_id)
    assert store.get_container(r.container_id).state == "terminated"
    again = control.retry_task(r.task_id)
    t = store.get_task(again.task_id)
    assert (t.retry_of, t.attempt, t.cpu) == (r.task_id, 2, 2.0)


def test_a_gpu_on_the_default_local_backend_is_refused_like_a_named_one(store, backend):
    """No `backend` in the request: the default (local) is resolved before validation, so the
    estimate and dispatch refuse the GPU and no row is billed at a GPU rate."""
    control = make_control(store, backend)
    request = TaskRequest(prompt="train it", gpu="T4")
    for call in (control.estimate, control.dispatch):
        with pytest.raises(ParheliaError) as err:
            call(request)
        assert err.value.code == "E101" and "local backend has no GPU" in err.value.message
    assert store.list_tasks() == [] and backend.specs == {}
    result = control.dispatch(TaskRequest(prompt="train it"))
    assert store.get_container(result.container_id).cost_rate_per_hour == pytest.approx(
        control.estimate(TaskRequest(prompt="x", backend="local")).rate_per_hour
    )


def test_a_large_fleet_has_its_agents_read_in_turns(store, backend, monkeypatch):
    """10,000 Modal agents read at once took 4-5 s a refresh: a read looks at AGENT_READ_LIMIT
    agents at most, the next ones by id each time (wrapping round), and keeps the others' last
    reading, so every agent is read within a few turns and none is forgotten between them."""
    from types import SimpleNamespace

    from parhelia.state.agent_activity import Activity, AgentState
    from parhelia.workers import read_plane
    from parhelia.workers.sessions import SessionService

    monkeypatch.setattr(read_plane, "AGENT_READ_LIMIT", 64)
    fleet = [SimpleNamespace(id=f"c-{i:08x}", backend="modal") for i in range(150)]
    batches: list[list[str]] = []

    def activities(self, containers):
        batches.append([c.id for c in containers])
        return {c.id: AgentState(c.id, f"ph-{c.id}", Activity("idle")) for c in containers}

    monkeypatch.setattr(SessionService, "activities", activities)
    control = make_control(store, backend)
    for turn in range(3):  # a new `said` (a hook's event) asks for a read at once
        known = control._agents(fleet, said=turn)
    assert [len(b) for b in batches] == [64, 64, 64]
    assert len({c for b in batches for c in b}) == 150  # every agent read within three turns
    assert set(known) == {c.id for c in fleet}  # the ones not read this turn keep their reading
    assert batches[2][:22] == [c.id for c in fleet[128:]]  # the third turn wraps round
    # a container that ended leaves the readings
    known = control._agents(fleet[:100], said=3)
    assert set(known) <= {c.id for c in fleet[:100]}
