"""The Modal backend through the unmodified Modal SDK against the fake Modal API (tests/fake_modal.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from grpclib import Status

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import ModalSettings
from parhelia.workers.backends.base import Backend, SandboxSpec, is_parhelia
from parhelia.workers.backends.modal import ModalBackend, parse_probe_output
from parhelia.workers.sandbox_session import agent_argv
from tests.fake_modal import FakeModalServer

APP = "parhelia-test"


@pytest.fixture
def backend(fake_modal: FakeModalServer) -> ModalBackend:
    return ModalBackend(ModalSettings(app=APP), client=fake_modal.shared_client)


def spec(container: str = "c-0001", **kw) -> SandboxSpec:
    return SandboxSpec(
        container_id=container, task_id="t-0001", argv=["claude", "-p", "fix it"], **kw
    )


def code_of(fn, *args) -> str:
    with pytest.raises(ParheliaError) as info:
        fn(*args)
    assert len(info.value.suggestions) >= 2
    return info.value.code


def test_is_a_backend(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "modal"


def test_import_does_not_import_modal():
    code = "import sys, parhelia.workers.backends.modal; print('modal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_create_passes_resources_tags_image_and_secrets(backend, fake_modal):
    backend.settings.secrets = ["anthropic"]
    backend.settings.idle_timeout_seconds = 300
    info = backend.create(
        spec(cpu=2.0, memory_mib=4096, region="us-east", timeout_seconds=1800, secrets=["github"])
    )
    sb = fake_modal.state.sandboxes[info.sandbox_id]
    assert info.backend == "modal" and info.running and info.container_id == "c-0001"
    entry = list(sb.definition.entrypoint_args)
    assert sb.tags == {  # the agent's session is named in a tag too (issue 19)
        "parhelia": "1",
        "parhelia_container": "c-0001",
        "parhelia_task": "t-0001",
        "parhelia_session": entry[4],
    }
    assert info.tags == sb.tags
    assert entry[:2] == ["sh", "-c"] and entry[-3:] == ["claude", "-p", "fix it"]
    assert agent_argv(entry) == ["claude", "-p", "fix it"]  # in a tmux session (issue 19)
    assert re.fullmatch(r"ph-t-0001-\d{8}T\d{6}", entry[4])
    assert sb.cpu == 2.0 and sb.memory_mib == 4096 and sb.gpu == ""
    assert sb.definition.timeout_secs == 1800 and sb.definition.idle_timeout_secs == 300
    assert list(sb.definition.scheduler_placement.regions) == ["us-east"]
    assert sb.app_id == fake_modal.state.apps[("", APP)]
    assert len(sb.definition.secret_ids) == 2
    looked_up = {r.deployment_name for r in fake_modal.state.requests["SecretGetOrCreate"]}
    assert looked_up == {"anthropic", "github"}
    images = fake_modal.state.requests["ImageGetOrCreate"]
    assert any("python:3.11-slim" in " ".join(r.image.dockerfile_commands) for r in images)
    assert any(
        "apt-get install -y -q tmux" in " ".join(r.image.dockerfile_commands) for r in images
    )


def test_create_with_gpu_goes_through_the_v1_rpcs(backend, fake_modal):
    info = backend.create(spec(gpu="A10G"))
    sb = fake_modal.state.sandboxes[info.sandbox_id]
    assert sb.v1 and sb.gpu == "A10G"
    assert (
        "SandboxCreate" in fake_modal.state.calls
        and "SandboxCreateV2" not in fake_modal.state.calls
    )
    assert backend.terminate(info.sandbox_id).exit_code == 137


def test_gpu_none_means_no_gpu(backend, fake_modal):
    info = backend.create(spec(gpu="none"))
    assert fake_modal.state.sandboxes[info.sandbox_id].gpu == ""


def test_foreign_sandbox_is_listed_by_list_all_only_and_never_terminated(backend, fake_modal):
    (foreign,) = fake_modal.state.start_behind_back(APP, foreign=1)
    ours = backend.create(spec())
    assert [i.sandbox_id for i in backend.list()] == [ours.sandbox_id]
    everything = {i.sandbox_id: i for i in backend.list_all()}
    assert set(everything) == {ours.sandbox_id, foreign.sandbox_id}
    assert not is_parhelia(everything[foreign.sandbox_id].tags)
    assert everything[foreign.sandbox_id].tags == {"team": "other"}

    assert code_of(backend.terminate, foreign.sandbox_id) == "E401"
    assert foreign.running
    assert "SandboxTerminateV2" not in fake_modal.state.calls


def test_other_apps_are_out_of_scope(backend, fake_modal):
    elsewhere = fake_modal.state.start_behind_back("someone-else", tagged=2, foreign=1)
    assert backend.list() == [] and backend.list_all() == []
    assert code_of(backend.terminate, elsewhere[0].sandbox_id) == "E401"  # tagged, wrong app
    assert elsewhere[0].running


def test_listing_pages_to_the_end(backend, fake_modal):
    lost = fake_modal.state.start_behind_back(APP, tagged=12, foreign=3)
    tagged = {s.sandbox_id for s in lost if s.tags.get("parhelia") == "1"}
    listed = backend.list()
    assert {i.sandbox_id for i in listed} == tagged
    assert {i.container_id for i in listed} == {s.tags["parhelia_container"] for s in lost[:12]}
    assert len(backend.list_all()) == 15
    pages = fake_modal.state.requests["SandboxListV2"]
    assert len(pages) == 4 + 4  # 12 tagged: pages of 5, 5, 2 and an empty one; 15: 5, 5, 5, empty
    assert any(p.before_timestamp for p in pages)


def test_finished_sandboxes_are_not_listed(backend, fake_modal):
    a, b = fake_modal.state.start_behind_back(APP, tagged=2)
    fake_modal.state.finish(a.sandbox_id, timed_out=True)
    assert [i.sandbox_id for i in backend.list()] == [b.sandbox_id]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.UNAVAILABLE, "E502"),
        (Status.DEADLINE_EXCEEDED, "E501"),
        (Status.UNAUTHENTICATED, "E400"),
    ],
)
def test_failed_listing_raises_never_returns_empty(backend, fake_modal, status, code):
    fake_modal.state.start_behind_back(APP, tagged=2)
    backend.app()  # the app lookup succeeds; the listing fails
    fake_modal.state.fail("SandboxListV2", status)
    assert code_of(backend.list) == code
    if status == Status.UNAUTHENTICATED:  # not retried by the SDK, so cheap to check twice
        assert code_of(backend.list_all) == code


def test_listing_failing_on_page_two_raises_not_page_one(backend, fake_modal):
    fake_modal.state.start_behind_back(APP, tagged=8)
    backend.app()
    fake_modal.state.fail("SandboxListV2", Status.UNAVAILABLE, after=1)
    with pytest.raises(ParheliaError) as info:
        backend.list()
    assert info.value.code == "E502"
    assert len(fake_modal.state.requests["SandboxListV2"]) > 1  # page one was served


def test_transient_listing_error_is_retried_by_the_sdk(backend, fake_modal):
    fake_modal.state.start_behind_back(APP, tagged=3)
    backend.app()
    fake_modal.state.fail("SandboxListV2", Status.UNAVAILABLE, times=1)
    assert len(backend.list()) == 3


def test_probe_parses_proc_through_exec(backend, fake_modal):
    info = backend.create(spec(cpu=2.0, memory_mib=4096))
    sb = fake_modal.state.sandboxes[info.sandbox_id]
    first = backend.probe(info.sandbox_id)
    assert first.agent_alive
    assert first.cpu_percent == pytest.approx(80.0)  # no previous reading: 1-min load average
    assert first.memory_mib == pytest.approx(1024.0) and first.memory_percent == pytest.approx(25.0)
    assert first.disk_percent is None or 0 <= first.disk_percent <= 100
    assert first.uptime_seconds is not None and first.uptime_seconds >= 0
    sb.cpu_busy = 0.75
    second = backend.probe(info.sandbox_id)
    assert second.cpu_percent == pytest.approx(150.0)  # 75 % of 2 CPUs since the previous probe
    assert fake_modal.state.calls.count("TaskExecStart") == 2  # one exec per probe
    # the second probe reused the handle: no second task-id or router-access lookup
    assert fake_modal.state.calls.count("SandboxGetTaskIdV2") == 1
    assert fake_modal.state.calls.count("SandboxGetCommandRouterAccess") == 1


def test_probe_reports_agent_gone(backend, fake_modal):
    info = backend.create(spec())
    fake_modal.state.set_processes(info.sandbox_id, {1: ["sleep", "infinity"], 7: ["bash"]})
    assert backend.probe(info.sandbox_id).agent_alive is False


def test_probe_finds_agent_run_by_an_interpreter(backend, fake_modal):
    info = backend.create(spec())
    fake_modal.state.set_processes(
        info.sandbox_id, {1: ["tini", "--", "sh"], 42: ["node", "/usr/local/bin/claude", "-p", "x"]}
    )
    assert backend.probe(info.sandbox_id).agent_alive is True


def test_probe_agent_binary_is_configurable(fake_modal):
    backend = ModalBackend(ModalSettings(app=APP), fake_modal.shared_client, agent_binary="codex")
    info = backend.create(spec())
    assert backend.probe(info.sandbox_id).agent_alive is False


def test_probe_that_hangs_times_out(fake_modal):
    backend = ModalBackend(ModalSettings(app=APP), fake_modal.shared_client, exec_timeout_seconds=1)
    info = backend.create(spec())
    fake_modal.state.exec_hang = True
    t0 = time.monotonic()
    assert code_of(backend.probe, info.sandbox_id) == "E501"
    assert time.monotonic() - t0 < 10


def test_probe_of_unknown_or_finished_sandbox(backend, fake_modal):
    assert code_of(backend.probe, "sb-doesnotexist0000000000") == "E205"
    info = backend.create(spec())
    assert backend.probe(info.sandbox_id).agent_alive
    fake_modal.state.finish(info.sandbox_id, code=0)
    assert code_of(backend.probe, info.sandbox_id) == "E205"  # a cached handle sees it too


def test_probe_of_a_sandbox_listed_by_another_process(backend, fake_modal):
    (lost,) = fake_modal.state.start_behind_back(APP, tagged=1)
    assert backend.probe(lost.sandbox_id).agent_alive
    assert fake_modal.state.calls.count("SandboxGetTaskIdV2") == 1


def test_terminate_reports_137_then_already_gone(backend, fake_modal):
    info = backend.create(spec())
    result = backend.terminate(info.sandbox_id)
    assert (result.exit_code, result.already_gone) == (137, False)
    assert not fake_modal.state.sandboxes[info.sandbox_id].running
    assert backend.list() == []
    again = backend.terminate(info.sandbox_id)
    assert again.already_gone and again.exit_code == 137


def test_terminate_timed_out_and_forgotten_sandboxes(backend, fake_modal):
    a = backend.create(spec("c-a"))
    b = backend.create(spec("c-b"))
    fake_modal.state.finish(a.sandbox_id, timed_out=True)
    assert backend.terminate(a.sandbox_id).exit_code == 124
    fake_modal.state.forget(b.sandbox_id)
    gone = backend.terminate(b.sandbox_id)
    assert gone.already_gone and gone.exit_code is None


def test_create_that_fails_after_the_sandbox_exists_leaves_an_adoptable_sandbox(
    backend, fake_modal
):
    fake_modal.state.fail("SandboxCreateV2", Status.UNAVAILABLE, after_effect=True)
    assert code_of(backend.create, spec("c-crash")) == "E502"
    assert len(fake_modal.state.running(APP)) == 1  # retries reused the idempotency key
    (listed,) = backend.list()
    assert listed.container_id == "c-crash"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.NOT_FOUND, "E205"),
        (Status.PERMISSION_DENIED, "E400"),
        (Status.FAILED_PRECONDITION, "E503"),
        (Status.RESOURCE_EXHAUSTED, "E503"),
    ],
)
def test_create_error_mapping(backend, fake_modal, status, code):
    fake_modal.state.fail("SandboxCreateV2", status, "nope")
    assert code_of(backend.create, spec()) == code


def test_bad_credentials_map_to_e400(fake_modal):
    client = fake_modal.client(token_secret="as-wrong")
    try:
        err_code = code_of(ModalBackend(ModalSettings(app=APP), client).list)
    finally:
        client.close()
    assert err_code == "E400"


def test_expired_token_maps_to_e402(backend, fake_modal):
    fake_modal.state.token_expired = True
    with pytest.raises(ParheliaError) as info:
        backend.list()
    assert info.value.code == "E402"
    assert "modal token new" in info.value.suggestions


def test_missing_credentials_map_to_e400(fake_modal, monkeypatch):
    from modal.client import _Client

    monkeypatch.setattr(_Client, "_client_from_env", None)
    backend = ModalBackend(
        ModalSettings(app=APP)
    )  # no client: the SDK reads the (empty) environment
    with pytest.raises(ParheliaError) as info:
        backend.list()
    assert info.value.code == "E400"
    assert "modal token new" in info.value.suggestions


def test_unknown_secret_maps_to_e205(backend, fake_modal):
    fake_modal.state.secrets = {"anthropic"}
    assert code_of(backend.create, spec(secrets=["nonexistent"])) == "E205"
    assert fake_modal.state.running(APP) == []


def test_shell_argv(backend):
    assert backend.shell_argv("sb-abc") == ["modal", "shell", "sb-abc"]


def test_no_unimplemented_rpc_was_hit(fake_modal_server):
    assert fake_modal_server.state.unimplemented == []


# -- the parser on its own ------------------------------------------------------------------


def test_parse_probe_output_tolerates_missing_fields():
    sample, counters = parse_probe_output("ncpu=0\nagent=1\n")
    assert sample.agent_alive and counters is None
    assert (sample.cpu_percent, sample.memory_mib, sample.disk_percent, sample.uptime_seconds) == (
        None,
        None,
        None,
        None,
    )


def test_parse_probe_output_cpu_delta_and_memory():
    text = "cpu=100 0 50 850 0 0 0 0 0 0\nncpu=4\nload1=9.0\nmem_total_kb=2048\nmem_available_kb=512\nagent=0\n"
    first, counters = parse_probe_output(text)
    assert first.cpu_percent == 400.0  # load capped at the CPU count
    assert first.memory_mib == 1.5 and first.memory_percent == 75.0
    later = "cpu=150 0 100 900 0 0 0 0 0 0\nncpu=4\nagent=0\n"
    second, _ = parse_probe_output(later, counters)
    assert second.cpu_percent == round(400.0 * 100 / 150, 1)
    assert not second.agent_alive


def test_parse_probe_output_without_agent_line_is_an_error():
    with pytest.raises(ValueError):
        parse_probe_output("sh: 1: cannot open /proc/stat\n")
