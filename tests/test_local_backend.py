"""The local-process backend against real processes: detached, shared registry, identity, terminate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from parhelia.app import agent_sim
from parhelia.state.errors import ParheliaError
from parhelia.workers.backends.base import Backend, SandboxSpec
from parhelia.workers.backends.local import LocalBackend
from tests.waiting import poll

PY = sys.executable
SLEEP = "import time; print('agent up', flush=True); time.sleep(30)"
IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('ready', flush=True); time.sleep(30)"
)
TREE = (  # an agent with a busy child, like an agent running a test suite
    "import subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'while True: pass']);"
    "print('ready', flush=True); time.sleep(30)"
)


def spec(code: str, container: str = "c-test", **kw) -> SandboxSpec:
    return SandboxSpec(container_id=container, task_id="ta-test", argv=[PY, "-c", code], **kw)


def log_has(backend: LocalBackend, sandbox_id: str, text: str) -> bool:
    log = backend.root / sandbox_id / "agent.log"
    return log.exists() and text in log.read_text()


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path / "sandboxes", terminate_grace=0.3)
    yield b
    for info in b.list():
        if info.running:
            b.terminate(info.sandbox_id)


def test_is_a_backend(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "local"


def test_create_is_seen_by_another_instance_and_logs_are_captured(backend):
    info = backend.create(spec(SLEEP, env={"EXTRA": "1"}))
    assert info.sandbox_id.startswith("lp-") and len(info.sandbox_id) == 13
    other = LocalBackend(backend.root, terminate_grace=0.3)  # as another process would
    [seen] = other.list()
    assert (seen.sandbox_id, seen.running, seen.container_id, seen.task_id) == (
        info.sandbox_id,
        True,
        "c-test",
        "ta-test",
    )
    poll(lambda: log_has(backend, info.sandbox_id, "agent up"))
    entry = json.loads((backend.registry / f"{info.sandbox_id}.json").read_text())
    assert entry["pid"] == entry["pgid"] and entry["tags"]["parhelia"] == "1"
    assert entry["deadline"] is not None and entry["workdir"].endswith(info.sandbox_id)
    env = psutil.Process(entry["pid"]).children()[0].environ()
    assert env["PARHELIA_CONTAINER_ID"] == "c-test" and env["EXTRA"] == "1"
    result = other.terminate(info.sandbox_id)
    assert result.exit_code == 143 and not result.already_gone
    assert other.terminate(info.sandbox_id).already_gone  # idempotent
    [ended] = backend.list()
    assert (ended.running, ended.exit_code) == (False, 143)


def test_sandbox_outlives_the_process_that_created_it(backend):
    helper = (
        "import sys; from pathlib import Path;"
        "from parhelia.workers.backends.local import LocalBackend;"
        "from parhelia.workers.backends.base import SandboxSpec;"
        f"b = LocalBackend(Path({str(backend.root)!r}));"
        f"print(b.create(SandboxSpec('c-cli', None, [sys.executable, '-c', {SLEEP!r}])).sandbox_id)"
    )
    out = subprocess.run([PY, "-c", helper], capture_output=True, text=True, check=True, timeout=20)
    sandbox_id = out.stdout.strip()
    [info] = backend.list()
    assert info.sandbox_id == sandbox_id and info.running
    entry = json.loads((backend.registry / f"{sandbox_id}.json").read_text())
    assert os.getsid(entry["pid"]) == entry["pid"] != os.getsid(0)  # its own session
    assert backend.terminate(sandbox_id).exit_code == 143
    assert not backend.list()[0].running


def test_each_sandbox_is_led_by_the_supervisor_module_which_imports_no_backend(backend):
    """The group leader runs `python -m SUPERVISOR_MODULE`, its own module: started once per
    sandbox, it imports neither the backend nor the database layer."""
    from parhelia.workers.backends.local_supervisor import SUPERVISOR_MODULE

    probe = (
        f"import sys, {SUPERVISOR_MODULE};"
        "print([m for m in ('parhelia.workers.backends.local', 'sqlmodel') if m in sys.modules])"
    )
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True, timeout=20)
    assert out.stdout.strip() == "[]"
    info = backend.create(spec(SLEEP))
    entry = json.loads((backend.registry / f"{info.sandbox_id}.json").read_text())
    assert psutil.Process(entry["pid"]).cmdline()[1:3] == ["-m", SUPERVISOR_MODULE]


def test_finished_agent_reports_its_exit_code(backend):
    info = backend.create(spec("import sys; print('bye'); sys.exit(3)"))
    poll(lambda: not backend.list()[0].running)
    [done] = LocalBackend(backend.root).list()
    assert (done.running, done.exit_code) == (False, 3)
    assert log_has(backend, info.sandbox_id, "bye")
    with pytest.raises(ParheliaError) as err:
        backend.probe(info.sandbox_id)
    assert err.value.code == "E205"


def test_timeout_is_enforced_by_the_sandbox_itself(backend):
    backend.create(spec(SLEEP, timeout_seconds=1))
    [done] = poll(lambda: [i for i in backend.list() if not i.running], seconds=4.0)
    assert done.exit_code == 124


def test_probe_measures_the_whole_tree(backend):
    info = backend.create(spec(TREE))
    poll(lambda: log_has(backend, info.sandbox_id, "ready"))
    leader = psutil.Process(
        json.loads((backend.registry / f"{info.sandbox_id}.json").read_text())["pid"]
    )
    tree = [leader, *leader.children(recursive=True)]
    # supervisor, [session host, tmux server, its log pipe, pane shell,] agent, busy child
    assert len(tree) == (7 if backend.tmux else 3)
    first = backend.probe(info.sandbox_id)
    assert first.agent_alive and first.uptime_seconds >= 0
    assert first.memory_mib >= 0.8 * sum(p.memory_info().rss for p in tree) / 2**20
    assert 0 < first.memory_percent < 100 and first.disk_percent is not None
    # the busy child, measured between two probes
    poll(lambda: backend.probe(info.sandbox_id).cpu_percent > 20)


def test_terminate_escalates_to_sigkill(backend):
    info = backend.create(spec(IGNORE_TERM))
    poll(lambda: log_has(backend, info.sandbox_id, "ready"))
    result = backend.terminate(info.sandbox_id)
    assert result.exit_code == 137 and not result.already_gone
    [ended] = backend.list()
    assert (ended.running, ended.exit_code) == (False, 137)


def write_entry(
    backend: LocalBackend, sandbox_id: str, pid: int, create_time: float, tags: dict
) -> None:
    backend.registry.mkdir(parents=True, exist_ok=True)
    entry = {
        "sandbox_id": sandbox_id, "pid": pid, "pgid": pid, "create_time": create_time, "tags": tags,
        "created_at": "2026-01-01T00:00:00+00:00", "argv": ["x"], "workdir": str(backend.root / sandbox_id),
        "log": "", "exit_code": None,
    }  # fmt: skip
    (backend.registry / f"{sandbox_id}.json").write_text(json.dumps(entry))


def test_reused_pid_is_not_the_sandbox(backend):
    me = psutil.Process()
    write_entry(backend, "lp-reused0000", me.pid, me.create_time() - 1000, {"parhelia": "1"})
    [info] = backend.list()
    assert not info.running
    result = backend.terminate("lp-reused0000")  # must not signal this test process
    assert result.already_gone
    with pytest.raises(ParheliaError) as err:
        backend.probe("lp-reused0000")
    assert err.value.code == "E205"


def test_foreign_entry_is_listed_but_never_terminated(backend):
    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        write_entry(backend, "lp-foreign000", proc.pid, psutil.Process(proc.pid).create_time(), {})
        assert backend.list() == []
        [foreign] = backend.list_all()
        assert foreign.running and foreign.sandbox_id == "lp-foreign000"
        with pytest.raises(ParheliaError) as err:
            backend.terminate("lp-foreign000")
        assert err.value.code == "E401"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_missing_binary_is_e504_and_starts_nothing(backend):
    with pytest.raises(ParheliaError) as err:
        backend.create(SandboxSpec("c-x", None, ["parhelia-no-such-agent-xyz", "-p", "hi"]))
    assert err.value.code == "E504"
    assert backend.list() == [] and not (backend.root / "registry").exists()


def test_unreadable_registry_raises_instead_of_listing_nothing(backend):
    backend.registry.mkdir(parents=True)
    broken = backend.registry / "lp-broken00000.json"
    broken.write_text("{not json")
    with pytest.raises(ParheliaError) as err:
        backend.list()
    assert err.value.code == "E502"
    broken.unlink()


def test_unknown_sandbox_is_e205(backend):
    for call in (backend.probe, backend.terminate, backend.shell_argv):
        with pytest.raises(ParheliaError) as err:
            call("lp-0000000000")
        assert err.value.code == "E205"


def test_shell_argv_opens_in_the_workdir(backend, tmp_path):
    info = backend.create(spec(SLEEP))
    argv = backend.shell_argv(info.sandbox_id)
    out = subprocess.run(argv, input="pwd\nexit\n", capture_output=True, text=True, timeout=10,
                         env={**os.environ, "SHELL": "/bin/sh"})  # fmt: skip
    assert str(Path(backend.root / info.sandbox_id).resolve()) in out.stdout


def test_finished_entries_are_pruned_after_retention(tmp_path):
    b = LocalBackend(tmp_path / "sb", retention_seconds=0.0)
    info = b.create(spec("pass"))
    poll(lambda: not (b.registry / f"{info.sandbox_id}.json").exists() or not b.list())
    assert b.list() == [] and not (b.root / info.sandbox_id).exists()


# -- the demo's agent simulator, run as the demo runs it: as a local sandbox ----------------

SIM = [PY, "-m", "parhelia.app.agent_sim"]


def test_sim_finish_exits_zero_in_time():
    started = time.monotonic()
    out = subprocess.run([*SIM, "--mode", "finish", "--seconds", "0.5", "--seed", "1", "Fix it"],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    assert out.returncode == 0
    assert time.monotonic() - started < 5
    lines = out.stdout.splitlines()
    assert "agent: task: Fix it" in lines[0] and "done:" in lines[-1]


def test_sim_busy_logs_work_and_stops_cleanly_on_sigterm(backend):
    info = backend.create(SandboxSpec("c-sim", None, [*SIM, "--mode", "busy", "a prompt"]))
    log = backend.root / info.sandbox_id / "agent.log"
    poll(lambda: len([x for x in log.read_text().splitlines() if " agent: " in x]) >= 3)
    work = ("reading ", "searching ", "editing ", "running tests", "thinking", "running ruff")
    assert any(w in log.read_text() for w in work)  # every step the simulator can log
    assert backend.terminate(info.sandbox_id).exit_code == 143
    assert "stopping on signal (exit 143)" in log.read_text()


def test_sim_hang_makes_the_agent_not_alive_while_the_sandbox_runs(backend):
    info = backend.create(
        SandboxSpec("c-hang", None, [*SIM, "--mode", "hang", "--seconds", "0.1", "--seed", "3"])
    )
    assert backend.probe(info.sandbox_id).agent_alive  # starting or working
    poll(lambda: log_has(backend, info.sandbox_id, "waiting for tool call"))
    poll(lambda: not backend.probe(info.sandbox_id).agent_alive)
    assert backend.list()[0].running  # still there, still costing: only heartbeats can tell
    assert backend.terminate(info.sandbox_id).exit_code == 143  # SIGCONT lets it see the SIGTERM


STEP_WORDS = tuple(step.split()[0] + " " for step in agent_sim.STEPS)  # "reading ", ...


@pytest.mark.parametrize("mode", ["busy", "hang"])
def test_a_sim_agent_stops_itself_when_the_demo_that_started_it_has_gone(backend, mode):
    """A demo dashboard killed before its cleanup (SIGKILL) must not leave agents running unseen:
    each simulated agent watches its owner, a frozen `hang` one through a watchdog child."""
    owner = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"])
    try:
        argv = [*SIM, "--mode", mode, "--seconds", "0.1", "--owner", str(owner.pid), "a prompt"]
        info = backend.create(SandboxSpec(f"c-owned-{mode}", None, argv))
        if mode == "hang":  # frozen by SIGSTOP (not yet started would read as not alive too)
            poll(lambda: log_has(backend, info.sandbox_id, "waiting for tool call"))
            poll(lambda: not backend.probe(info.sandbox_id).agent_alive)
        else:  # at work: any step (it had waited for "reading", one step in six at random)
            poll(lambda: any(log_has(backend, info.sandbox_id, w) for w in STEP_WORDS))
        assert backend.list()[0].running
        owner.kill()
        owner.wait()
        poll(lambda: not backend.list()[0].running)
        # the log comes through the agent's tmux pane (pipe-pane), a moment after the process ends
        poll(lambda: log_has(backend, info.sandbox_id, "stopping on signal (exit 143)"))
        assert log_has(backend, info.sandbox_id, "the demo that started me has gone")
    finally:  # a failed wait must not leave the owner sleeping for ten minutes
        owner.kill()
        owner.wait()
