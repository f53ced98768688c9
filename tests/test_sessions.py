"""Agent sessions with real tmux (issue 19): local agents run in a named tmux session, their output
still reaches the log, nothing of tmux outlives the sandbox, and `parhelia session list | attach |
kill` work on them. Each sandbox has its own tmux server on a socket under the test's temporary
root, so these tests never meet the user's tmux."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path

import anyio
import psutil
import pytest

from parhelia.state.agent_activity import activity_cell, attention_items
from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.widgets.containers_table import ContainersTable
from parhelia.workers import sessions
from parhelia.workers.backends.base import SandboxSpec
from parhelia.workers.backends.local import LocalBackend
from parhelia.workers.session_host import CRLF
from tests.test_cli import assert_coded_error
from tests.test_mcp import ACTOR, call, call_error, session  # (stdio_client binds stderr at import)
from tests.waiting import poll as wait

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

PY = sys.executable
NAME = re.compile(r"^ph-ta-test-\d{8}T\d{6}$")
SHOW_ENV = (
    "import os, time; e = os.environ;"
    "print('pid', os.getpid(), 'session', e['PARHELIA_SESSION_ID'], 'container',"
    " e['PARHELIA_CONTAINER_ID'], 'tmux', 'TMUX' in e, flush=True); time.sleep(60)"
)
IGNORE_TERM = (
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('pid', os.getpid(), flush=True); time.sleep(60)"
)
SLEEP = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)"
ASK = (
    "import os; print('pid', os.getpid(), flush=True);"
    "answer = input('Do you want to proceed? (y/n) ');"
    "print('answered', answer, flush=True)"
)


def poll(predicate, seconds: float = 20.0):
    return wait(predicate, seconds)


def spec(code: str, **kw) -> SandboxSpec:
    return SandboxSpec(container_id="c-test", task_id="ta-test", argv=[PY, "-c", code], **kw)


def log(backend: LocalBackend, sandbox_id: str) -> str:
    path = backend.root / sandbox_id / "agent.log"
    return path.read_text() if path.exists() else ""


def agent_pid(backend: LocalBackend, sandbox_id: str) -> int:
    found = poll(lambda: re.search(r"^pid (\d+)", log(backend, sandbox_id), re.M))
    return int(found.group(1))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def no_tmux_left(backend: LocalBackend, sandbox_id: str) -> bool:
    socket = sessions.socket_path(backend.root, sandbox_id)
    answer = subprocess.run(["tmux", "-S", str(socket), "has-session"], capture_output=True)
    return not socket.exists() and answer.returncode != 0


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path / "sb", terminate_grace=0.5, tmux=True)
    yield b
    for info in b.list():
        if info.running:
            b.terminate(info.sandbox_id)


# -- the local backend runs each agent in a named session -------------------------------------


def test_agent_runs_in_a_named_tmux_session_and_terminate_leaves_nothing(backend):
    info = backend.create(spec(SHOW_ENV))
    pid = agent_pid(backend, info.sandbox_id)
    socket = sessions.socket_path(backend.root, info.sandbox_id)
    [pane] = sessions.read_sessions(socket)
    assert NAME.match(pane.name) and pane.attached == 0 and not pane.dead
    text = log(backend, info.sandbox_id)
    assert f"session {pane.name} container c-test tmux True" in text
    assert "\r" not in text  # terminal line ends are turned back into log lines
    assert psutil.Process(pid).terminal() is not None  # the agent has the pane as its terminal
    result = backend.terminate(info.sandbox_id)
    assert result.exit_code == 143  # SIGTERM reached the agent, as without tmux
    assert gone(pid) and no_tmux_left(backend, info.sandbox_id)


def test_an_agent_that_ignores_sigterm_is_killed_with_its_session(backend):
    info = backend.create(spec(IGNORE_TERM))
    pid = agent_pid(backend, info.sandbox_id)
    assert backend.terminate(info.sandbox_id).exit_code == 137
    poll(lambda: gone(pid))  # the host's SIGKILL took the tmux server and the agent with it
    poll(lambda: no_tmux_left(backend, info.sandbox_id))


def test_a_pane_shell_killed_outright_ends_137_and_the_log_says_why(backend):
    """The pane's shell records the agent's status; killed before it could, the sandbox ends
    with 137 and its log says no status was recorded (what a stray 137 is told apart by)."""
    info = backend.create(spec(SLEEP))
    pid = agent_pid(backend, info.sandbox_id)
    psutil.Process(pid).parent().kill()  # the pane's shell; the agent dies with it (pdeathsig)
    [done] = poll(lambda: [i for i in backend.list() if not i.running])
    assert done.exit_code == 137
    text = log(backend, info.sandbox_id)
    assert "[parhelia] the agent's shell recorded no exit status (no file); 137\n" in text
    assert text.endswith("[parhelia] agent ended (exited), exit code 137\n")
    poll(lambda: gone(pid) and no_tmux_left(backend, info.sandbox_id))


def test_timeout_leaves_no_session(backend):
    info = backend.create(spec(SLEEP, timeout_seconds=4))
    pid = agent_pid(backend, info.sandbox_id)
    [done] = poll(lambda: [i for i in backend.list() if not i.running])
    assert done.exit_code == 124
    poll(lambda: gone(pid) and no_tmux_left(backend, info.sandbox_id))


def test_an_agent_that_exits_reports_its_code_and_its_last_line_comes_first(backend):
    info = backend.create(spec("import sys; print('bye'); sys.exit(3)"))
    [done] = poll(lambda: [i for i in backend.list() if not i.running])
    assert done.exit_code == 3
    assert log(backend, info.sandbox_id) == "bye\n[parhelia] agent ended (exited), exit code 3\n"
    assert no_tmux_left(backend, info.sandbox_id)


def test_a_fast_agents_output_and_code_are_never_lost(backend):
    # `echo` ends before tmux has read its output (or before the host has seen its pid): each
    # run must still log its line and end with its code
    ids = [
        backend.create(SandboxSpec("c-test", "ta-test", [shutil.which("echo"), "said", str(n)]))
        for n in range(6)
    ]
    poll(lambda: not any(i.running for i in backend.list()), seconds=60)
    for n, info in enumerate(ids):
        assert log(backend, info.sandbox_id).startswith(f"said {n}\n[parhelia] agent ended")
        assert backend.exit_code(info.sandbox_id) == 0


def test_without_tmux_the_agent_runs_directly(tmp_path):
    b = LocalBackend(tmp_path / "sb", terminate_grace=0.5, tmux=False)
    info = b.create(spec("print('plain')"))
    poll(lambda: not b.list()[0].running)
    assert log(b, info.sandbox_id).startswith("plain\n")
    assert not sessions.socket_path(b.root, info.sandbox_id).exists()


def test_terminal_line_ends_become_log_lines_across_reads():
    crlf = CRLF()
    assert crlf.feed(b"one\r\ntwo\r") + crlf.feed(b"\nthree\rx") + crlf.flush() == (
        b"one\ntwo\nthree\rx"
    )
    assert crlf.feed(b"end\r") + crlf.flush() == b"end\r"


def test_session_name_and_socket_path():
    when = datetime(2026, 11, 30, 3, 4, 5, tzinfo=UTC)
    assert sessions.session_name("ta-1a2b", when) == "ph-ta-1a2b-20261130T030405"
    assert sessions.session_name("a.b:c", when) == "ph-a_b_c-20261130T030405"
    assert sessions.socket_path(Path("/r"), "lp-1") == Path("/r/lp-1/tmux.sock")
    long_root = Path("/tmp") / ("x" * 120)
    short = sessions.socket_path(long_root, "lp-1")
    assert len(str(short)) < 100 and short.name.endswith("-lp-1")
    assert short == sessions.socket_path(long_root, "lp-1")  # the same path from any process


# -- parhelia session list | attach | kill -----------------------------------------------------


def dispatch(env, code: str) -> dict:
    os.environ["PARHELIA_AGENT_COMMAND"] = f"{PY} -c {code!r} {{prompt}}"
    return env.ok("task", "create", "say hello")


def listed(env) -> list[dict]:
    return env.ok("session", "list")


def test_session_list_shows_the_agent_and_what_it_is_doing(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    created = dispatch(parhelia_env, ASK)
    cid = created["container_id"]
    [s] = poll(lambda: [s for s in listed(parhelia_env) if s["activity"] == "waiting"])
    assert s["id"].startswith("ph-") and s["container_id"] == cid
    assert s["task_id"] == created["task_id"] and s["state"] == "running"
    assert s["attached_clients"] == 0 and s["age_seconds"] >= 0
    assert "Do you want to proceed?" in s["activity_detail"]
    assert s["attach_command"] == f"parhelia session attach {s['id']}"
    human = parhelia_env.run("session", "list")
    assert human.code == 0 and s["id"] in human.out and "waiting" in human.out
    assert f"is waiting for input: parhelia session attach {s['id']}" in human.out
    # answered through tmux, the agent goes on and ends; its session goes with it
    assert "socket" not in s  # internal: a user attaches through parhelia
    # what the dashboard reads: the AGENT column and the attention reason with the command
    agents = sessions.SessionService(parhelia_env.control()).activities()
    assert activity_cell(agents[cid]) == "waiting!"
    [reason] = attention_items(agents.values())
    assert (reason.text, reason.command) == (
        f"{cid}: agent waiting for input",
        f"parhelia session attach {s['id']}",
    )
    # every front end's attention list carries it, with the command: status, tui --once, MCP
    status = parhelia_env.run("status")
    assert status.code == 1 and f"parhelia session attach {s['id']}" in status.out, status.out
    once = parhelia_env.run("tui", "--once", "--no-refresh")
    assert once.code == 1 and "agent waiting for input" in once.out, once.out
    service = sessions.SessionService(parhelia_env.control())
    sock = Path(service.get(s["id"]).socket)
    subprocess.run(["tmux", "-S", str(sock), "send-keys", "-t", s["id"], "y", "Enter"], check=True)
    poll(lambda: not listed(parhelia_env))
    backend = parhelia_env.backend()
    [info] = backend.list()
    assert "answered y" in backend.read_log(info.sandbox_id).text


async def test_the_containers_pane_shows_what_the_agent_is_doing(parhelia_env, monkeypatch):
    """The AGENT column (dashboard and `tui --once`) reads the same sessions `session list` does:
    an agent asking a question is `waiting!`, and other rows without a session show `-`."""
    from tests.test_dashboard import SIZE, cell, make_app, refreshed

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    cid = dispatch(parhelia_env, ASK)["container_id"]
    poll(lambda: [s for s in listed(parhelia_env) if s["activity"] == "waiting"])
    control = parhelia_env.control()
    view = control.dashboard()
    assert activity_cell(view.agents[cid]) == "waiting!"
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        assert cell(app, cid, "agent") == "waiting!"
        assert "yellow" in str(app.query_one(ContainersTable).get_cell(cid, "agent").style)
    once = parhelia_env.run("tui", "--once", "--no-refresh", "--width", "120")
    header = next(line for line in once.out.splitlines() if line.startswith("ID "))
    row = next(line for line in once.out.splitlines() if line.startswith(cid))
    assert "AGENT" in header and "waiting!" in row, once.out


def run_hook(env, event: str | None, container: str | None, payload: dict | None = None):
    """`parhelia session hook EVENT` as Claude Code runs it: a subprocess in the agent's
    environment (its container id set by the session), the hook's JSON on stdin."""
    import json

    child = {**env.env}
    child.pop("PARHELIA_CONTAINER_ID", None)
    if container:
        child["PARHELIA_CONTAINER_ID"] = container
    return subprocess.run(
        [PY, "-m", "parhelia.app", "session", "hook", *([event] if event else [])],
        input=json.dumps(payload or {}), capture_output=True, text=True, env=child, timeout=60,
    )  # fmt: skip


def test_claude_code_hooks_say_what_the_agent_does(parhelia_env, monkeypatch):
    """A Notification hook makes the agent `waiting` at once (session list, the AGENT column,
    the attention list), a Stop hook `idle`; the pane's heuristic would say otherwise."""
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    cid = dispatch(parhelia_env, SLEEP)["container_id"]
    [s] = poll(lambda: listed(parhelia_env))
    assert s["activity"] != "waiting" and s["activity_source"] == "pane"
    said = run_hook(
        parhelia_env,
        None,  # the event from the hook's JSON, as Claude Code sends it
        cid,
        {"hook_event_name": "Notification", "message": "Claude needs your permission to use Bash"},
    )
    assert (said.returncode, said.stdout) == (0, ""), said.stderr  # silent: stdout reaches Claude
    [s] = listed(parhelia_env)
    assert (s["activity"], s["activity_source"]) == ("waiting", "hook")
    assert "permission to use Bash" in s["activity_detail"]
    control = parhelia_env.control()
    view = control.dashboard()
    assert activity_cell(view.agents[cid]) == "waiting!"
    assert any(a.command == f"parhelia session attach {s['id']}" for a in view.attention())
    # the same word again soon writes nothing; a new word is read at once (no 3 s cache)
    assert run_hook(parhelia_env, "Notification", cid).returncode == 0
    assert len(parhelia_env.store().events(types=["agent.activity"])) == 1
    assert run_hook(parhelia_env, "Stop", cid).returncode == 0
    assert activity_cell(control.dashboard().agents[cid]) == "idle"
    [ev, _] = parhelia_env.store().events(types=["agent.activity"])
    assert (ev.old_value, ev.new_value, ev.details["hook"]) == ("waiting", "idle", "Stop")
    assert run_hook(parhelia_env, "PreToolUse", cid).returncode == 0
    assert listed(parhelia_env)[0]["activity"] == "working"


def test_a_hook_outside_a_session_or_this_store_does_nothing_and_a_wrong_event_is_e101(
    parhelia_env,
):
    quiet = run_hook(parhelia_env, "Stop", None)
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert parhelia_env.store().events(types=["agent.activity"]) == []
    wrong = run_hook(parhelia_env, "Notifcation", "c-12345678")
    assert wrong.returncode == 1 and "E101" in wrong.stderr and "Notification" in wrong.stderr
    # an agent of another store: nothing to record here, and a failing hook would interrupt it
    # at every tool call
    unknown = run_hook(parhelia_env, "PreToolUse", "c-00000000")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (0, "", "")
    assert parhelia_env.store().events(types=["agent.activity"]) == []


def test_a_stale_hook_gives_way_to_the_pane(parhelia_env, monkeypatch):
    from datetime import timedelta

    from parhelia.state.agent_activity import HOOK_FRESH_SECONDS
    from parhelia.state.timeutil import utcnow
    from parhelia.workers.agent_hooks import record_hook

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    cid = dispatch(parhelia_env, SLEEP)["container_id"]
    poll(lambda: listed(parhelia_env))
    long_ago = utcnow() - timedelta(seconds=HOOK_FRESH_SECONDS + 5)
    record_hook(parhelia_env.store(), cid, "Notification", now=long_ago)
    [s] = listed(parhelia_env)
    assert s["activity_source"] == "pane" and s["activity"] != "waiting"


def test_hooks_config_is_claude_codes_settings_shape(parhelia_env):
    import json

    doc = parhelia_env.ok("session", "hooks-config")
    hooks = doc["hooks"]
    assert set(hooks) == {"Notification", "Stop", "UserPromptSubmit", "PreToolUse"}
    assert hooks["PreToolUse"][0]["matcher"] == "*"
    for event, [entry] in hooks.items():
        [h] = entry["hooks"]
        assert h["type"] == "command" and h["command"].endswith(f"session hook {event}")
    human = parhelia_env.run("session", "hooks-config").out
    assert json.loads(human) == doc  # pasteable as it is


def test_unknown_session_is_e200_with_recovery_commands(parhelia_env):
    for verb in ("attach", "kill"):
        r = parhelia_env.run("session", verb, "ph-nope")
        assert_coded_error(r, "E200", "parhelia session list", "parhelia containers list")
    assert len(CATALOGUE["E200"].recovery) >= 2 and len(CATALOGUE["E601"].recovery) >= 2


def test_attach_without_a_terminal_is_e601(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    created = dispatch(parhelia_env, SLEEP)
    [s] = poll(lambda: listed(parhelia_env))
    r = parhelia_env.run("session", "attach", created["container_id"])  # stdin is not a terminal
    assert_coded_error(r, "E601", f"parhelia session attach {s['id']}", "attach-session")


def test_attach_through_a_terminal_and_detach_leaves_the_agent_running(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    dispatch(parhelia_env, SLEEP)
    [s] = poll(lambda: listed(parhelia_env))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [PY, "-m", "parhelia.app", "session", "attach", s["id"]],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**parhelia_env.env, "TERM": "xterm"}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_some() -> None:
        nonlocal seen
        if select.select([master], [], [], 0.1)[0]:
            with contextlib.suppress(OSError):
                seen += os.read(master, 65536)

    try:
        poll(lambda: read_some() or listed(parhelia_env)[0]["attached_clients"] == 1)
        assert listed(parhelia_env)[0]["state"] == "attached"
        os.write(master, b"\x02d")  # the tmux prefix, then d: detach
        poll(lambda: read_some() or proc.poll() is not None)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, seen
    assert b"Detached from" in seen
    [after] = listed(parhelia_env)
    assert after["id"] == s["id"] and after["attached_clients"] == 0 and after["state"] == "running"


WRITE_NOTES = (
    "import os, pathlib, time; pathlib.Path('notes.txt').write_text('kept on detach\\n');"
    "print('pid', os.getpid(), flush=True); time.sleep(60)"
)


def attach_then_detach(env, session_id: str, socket: str) -> tuple[int, str]:
    """`parhelia session attach` in a pty; once its client is on, tmux detaches it from outside
    (`detach-client -s`, as another terminal would); (its exit code, what it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [PY, "-m", "parhelia.app", "session", "attach", session_id],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**env.env, "TERM": "xterm"}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_some() -> None:
        nonlocal seen
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen += chunk

    try:
        poll(lambda: read_some() or listed(env)[0]["attached_clients"] == 1)
        subprocess.run(
            ["tmux", "-S", socket, "detach-client", "-s", session_id], check=True, timeout=10
        )
        poll(lambda: read_some() or proc.poll() is not None, seconds=60)
        read_some()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_detach_takes_a_checkpoint_when_configured(parhelia_env, monkeypatch):
    """`[checkpoint] on_detach = true`: detaching from `session attach` keeps the workspace (a
    file the agent wrote is in it), trigger "detach"; the agent goes on."""
    from parhelia.state.checkpoint_store import list_checkpoints

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    monkeypatch.setenv("PARHELIA_CHECKPOINT_ON_DETACH", "true")
    created = dispatch(parhelia_env, WRITE_NOTES)
    cid = created["container_id"]
    [s] = poll(lambda: listed(parhelia_env))
    poll(lambda: (parhelia_env.sandbox_root / created["sandbox_id"] / "notes.txt").exists())
    socket = sessions.SessionService(parhelia_env.control()).get(s["id"]).socket
    code, seen = attach_then_detach(parhelia_env, s["id"], socket)
    assert code == 0, seen
    assert f"Detached from {s['id']}" in seen and "taken on detach" in seen, seen
    [ck] = list_checkpoints(parhelia_env.store(), container=cid)
    assert ck.trigger == "detach" and s["id"] in ck.note and ck.files == 1
    assert ck.id in seen
    [after] = listed(parhelia_env)  # the agent goes on
    assert after["id"] == s["id"] and after["state"] == "running"
    restored = parhelia_env.ok("checkpoint", "restore", ck.id, "--yes")
    notes = parhelia_env.sandbox_root / restored["sandbox_id"] / "notes.txt"
    assert poll(lambda: notes.exists() and notes.read_text()) == "kept on detach\n"


def test_a_failed_checkpoint_on_detach_is_e600_and_the_agent_goes_on(parhelia_env, monkeypatch):
    from parhelia.state.checkpoint_store import list_checkpoints

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    monkeypatch.setenv("PARHELIA_CHECKPOINT_ON_DETACH", "true")
    cid = dispatch(parhelia_env, SLEEP)["container_id"]
    [s] = poll(lambda: listed(parhelia_env))
    (parhelia_env.sandbox_root.parent / "checkpoints").write_text("not a directory")
    socket = sessions.SessionService(parhelia_env.control()).get(s["id"]).socket
    code, seen = attach_then_detach(parhelia_env, s["id"], socket)
    assert code == 1 and f"Detached from {s['id']}" in seen
    assert "Error E600" in seen and "on detach" in seen, seen
    assert f"parhelia checkpoint create {cid}" in seen
    assert f"parhelia session attach {s['id']}" in seen
    assert list_checkpoints(parhelia_env.store()) == []
    [ev] = parhelia_env.store().events(types=["checkpoint.failed"])
    assert ev.container_id == cid and ev.level == "error"
    [after] = listed(parhelia_env)  # never kills the session
    assert after["id"] == s["id"] and after["state"] == "running"


async def test_detach_from_the_dashboards_a_takes_a_checkpoint_when_configured(
    parhelia_env, monkeypatch
):
    """`a` hands the terminal to `tmux attach`; once it returns (the user detached) with the
    agent still running, `[checkpoint] on_detach` takes a checkpoint, off the main thread."""
    from parhelia.state.checkpoint_store import list_checkpoints
    from tests.test_dashboard import SIZE, make_app, refreshed, until

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    monkeypatch.setenv("PARHELIA_CHECKPOINT_ON_DETACH", "true")
    cid = dispatch(parhelia_env, SLEEP)["container_id"]
    [s] = poll(lambda: listed(parhelia_env))
    ran = []
    # the headless driver has no terminal to hand over: the runner stands in for attach + detach
    app = make_app(parhelia_env.control(), attach_runner=lambda argv: ran.append(argv) or 0)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        app.suspend = contextlib.nullcontext
        assert app.query_one(ContainersTable).select(cid)
        await pilot.press("a")
        assert "attach-session" in ran[0] and f"={s['id']}" in ran[0]
        store = parhelia_env.store()
        await until(pilot, lambda: list_checkpoints(store, container=cid))
    [ck] = list_checkpoints(parhelia_env.store(), container=cid)
    assert ck.trigger == "detach" and s["id"] in ck.note


def test_detach_takes_no_checkpoint_by_default(parhelia_env, monkeypatch):
    from parhelia.state.checkpoint_store import list_checkpoints

    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    dispatch(parhelia_env, SLEEP)
    [s] = poll(lambda: listed(parhelia_env))
    socket = sessions.SessionService(parhelia_env.control()).get(s["id"]).socket
    code, seen = attach_then_detach(parhelia_env, s["id"], socket)
    assert code == 0 and f"Detached from {s['id']}" in seen and "checkpoint" not in seen.lower()
    assert list_checkpoints(parhelia_env.store()) == []


def test_kill_asks_first_then_ends_the_agent_and_its_sandbox(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    created = dispatch(parhelia_env, SLEEP)
    [s] = poll(lambda: listed(parhelia_env))
    r = parhelia_env.run("session", "kill", s["id"])  # not a terminal, no --yes: refused
    assert_coded_error(r, "E102", f"parhelia session kill {s['id']} --yes")
    assert listed(parhelia_env)
    data = parhelia_env.ok("session", "kill", s["id"], "--yes")
    assert data["id"] == s["id"] and data["container_id"] == created["container_id"]
    backend = parhelia_env.backend()
    [info] = poll(lambda: [i for i in backend.list() if not i.running])
    assert info.exit_code == 129  # the agent got the session's hangup
    assert no_tmux_left(backend, info.sandbox_id)
    events = parhelia_env.store().events(container_id=created["container_id"])
    assert any(e.type == "session.killed" and e.actor == "user" for e in events)


def test_dashboard_attach_prefers_the_session(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    created = dispatch(parhelia_env, SLEEP)
    [s] = poll(lambda: listed(parhelia_env))
    argv, session_id = sessions.attach_or_shell_argv(
        parhelia_env.control(), created["container_id"]
    )
    assert session_id == s["id"]
    assert argv[:3] == ["env", "-u", "TMUX"] and "attach-session" in argv and f"={s['id']}" in argv
    with pytest.raises(ParheliaError) as err:
        sessions.SessionService(parhelia_env.control()).get("ph-unknown")
    assert err.value.code == "E200"


# -- Modal: the sandbox's entrypoint runs the agent in tmux (run here, on this machine) ---------


def test_modal_entrypoint_runs_the_agent_in_a_session_with_its_output_on_stdout(tmp_path):
    from parhelia.workers.sandbox_session import sandbox_argv

    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path), "SECRET_FOR_AGENT": "s3"}
    env.pop("TMUX", None)
    go = tmp_path / "go"
    agent = (
        "import os, pathlib, time; print('env', os.environ['SECRET_FOR_AGENT'], flush=True);"
        f"p = pathlib.Path({str(go)!r})\nwhile not p.exists(): time.sleep(0.02)\n"
        "print('done'); raise SystemExit(5)"
    )
    proc = subprocess.Popen(
        sandbox_argv("ph-t-1-20261130T030405", [PY, "-c", agent]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    listing = ["tmux", "-L", "parhelia", "list-sessions", "-F", "#{session_name}"]
    try:
        shown = poll(
            lambda: subprocess.run(listing, capture_output=True, text=True, env=env).stdout
        )
        assert shown.split() == ["ph-t-1-20261130T030405"]
        go.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    assert out == b"env s3\ndone\n"  # the sandbox's stdout, as Modal's logs read it
    assert subprocess.run(listing, capture_output=True, env=env).returncode != 0  # no server left


def test_modal_entrypoint_without_tmux_runs_the_agent_directly(tmp_path):
    from parhelia.workers.sandbox_session import sandbox_argv

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh"))
    env = {"PATH": str(bin_dir)}
    out = subprocess.run(
        sandbox_argv("ph-x", [PY, "-c", "print('plain'); raise SystemExit(2)"]),
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (2, "plain\n")


# -- MCP: session list, attach info, kill (preview unless confirm) ------------------------------


def test_mcp_session_tools(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "placeholder")
    created = dispatch(parhelia_env, SLEEP)
    cid = created["container_id"]
    [s] = poll(lambda: listed(parhelia_env))

    async def body():
        async with session(parhelia_env) as mcp:
            [listed_by_mcp] = await call(mcp, "session_list", fields=["id", "container_id"])
            assert listed_by_mcp == {"id": s["id"], "container_id": cid}
            info = await call(mcp, "session_attach_info", session_id=cid)
            assert info["command"] == f"parhelia session attach {s['id']}"
            assert "attach-session" in info["tmux_command"]
            preview = await call(mcp, "session_kill", session_id=s["id"])
            assert preview["preview"] is True and preview["actor"] == ACTOR
            assert listed(parhelia_env)  # a preview kills nothing
            done = await call(mcp, "session_kill", session_id=s["id"], confirm=True)
            assert done["id"] == s["id"]
            err = await call_error(mcp, "session_attach_info", session_id="ph-nope")
            assert err["code"] == "E200"

    anyio.run(body)
    backend = parhelia_env.backend()
    poll(lambda: not any(i.running for i in backend.list()))
    events = parhelia_env.store().events(container_id=cid)
    assert any(e.type == "session.killed" and e.actor == ACTOR for e in events)
