"""Agent sessions on Modal (issue 19), through the unmodified SDK and CLI against the fake Modal API:
the fake runs each sandbox's entrypoint for real (Parhelia's, which starts the agent in tmux) with
the sandbox's own tmux directory, so `session list | attach | kill` ask a real tmux through
`Sandbox.exec`, and `session attach` runs the real `modal shell` on a real PTY exec."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import time

import anyio
import pytest

from parhelia.state.agent_activity import activity_cell, attention_items
from parhelia.workers import sessions
from parhelia.workers.sandbox_session import TAG_SESSION
from tests.fake_modal import FakeModalServer
from tests.test_cli import assert_coded_error
from tests.test_incident_modal import modal_cli_env  # noqa: F401 - the fixture
from tests.test_mcp import ACTOR, call, session  # (stdio_client binds stderr at import)
from tests.waiting import poll as wait

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

PY = sys.executable
NAME = re.compile(r"^ph-t-[0-9a-f]{8}-\d{8}T\d{6}$")
ASK = (
    "import os, time; print('pid', os.getpid(), flush=True);"
    "answer = input('Do you want to proceed? (y/n) ');"
    "print('answered', answer, flush=True); time.sleep(120)"
)
SLEEP = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(120)"
MARGIN = 8.0  # interpreter, SDK and store start-up on a busy 2-core machine


def poll(predicate, seconds: float = 30.0):
    return wait(predicate, seconds, every=0.05)


@pytest.fixture
def world(modal_cli_env, fake_modal: FakeModalServer, monkeypatch):  # noqa: F811
    """The CLI on the fake, whose sandboxes run their entrypoints (and so tmux) for real."""
    fake_modal.state.run_entrypoints = True
    return modal_cli_env


def dispatch(env, monkeypatch, code: str) -> dict:
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", f"{PY} -c {shlex.quote(code)} {{prompt}}")
    return env.ok("task", "create", "say hello")


def listed(env) -> list[dict]:
    return env.ok("session", "list")


def test_session_list_shows_a_modal_agent_and_what_it_is_doing(world, fake_modal, monkeypatch):
    created = dispatch(world, monkeypatch, ASK)
    cid, sid = created["container_id"], created["sandbox_id"]
    [s] = poll(lambda: [s for s in listed(world) if s["activity"] == "waiting"])
    assert NAME.match(s["id"]) and s["backend"] == "modal" and s["sandbox_id"] == sid
    assert (s["container_id"], s["task_id"]) == (cid, created["task_id"])
    assert s["state"] == "running" and s["attached_clients"] == 0 and s["age_seconds"] >= 0
    assert "Do you want to proceed?" in s["activity_detail"] and s["error"] is None
    assert world.store().get_container(cid).tags[TAG_SESSION] == s["id"]  # the store knows it
    # asked of tmux in the sandbox, through the SDK's exec (the fake runs it for real)
    execs = fake_modal.state.requests["TaskExecStart"]
    assert any("list-sessions" in " ".join(r.command_args) for r in execs)
    assert any("capture-pane" in " ".join(r.command_args) for r in execs)
    human = world.run("session", "list")
    assert human.code == 0 and s["id"] in human.out and "waiting" in human.out
    assert f"is waiting for input: parhelia session attach {s['id']}" in human.out
    # the dashboard's AGENT column and attention list, and every front end's attention list
    agents = sessions.SessionService(world.control()).activities()
    assert activity_cell(agents[cid]) == "waiting!"
    [reason] = attention_items(agents.values())
    assert reason.command == f"parhelia session attach {s['id']}"
    status = world.run("status")
    assert status.code == 1 and f"parhelia session attach {s['id']}" in status.out, status.out
    # the dashboard's `a` runs the same attach: modal shell into the session
    argv, session_id = sessions.attach_or_shell_argv(world.control(), cid)
    assert session_id == s["id"]
    assert argv[:5] == [PY, "-m", "modal", "shell", sid]
    assert argv[5:] == ["--cmd", f"tmux -L parhelia attach -t ={s['id']}"]
    assert fake_modal.state.unimplemented == []


def test_kill_asks_first_then_the_agent_and_its_sandbox_end(world, fake_modal, monkeypatch):
    created = dispatch(world, monkeypatch, SLEEP)
    cid, sid = created["container_id"], created["sandbox_id"]
    [s] = poll(lambda: listed(world))
    r = world.run("session", "kill", s["id"])  # not a terminal, no --yes: refused
    assert_coded_error(r, "E102", f"parhelia session kill {s['id']} --yes")
    assert fake_modal.state.sandboxes[sid].running
    done = world.ok("session", "kill", s["id"], "--yes")
    assert (done["id"], done["container_id"]) == (s["id"], cid)
    sb = fake_modal.state.sandboxes[sid]
    poll(lambda: not sb.running)
    assert sb.result.exitcode == 129  # the agent got the session's hangup; the sandbox ended
    assert b"pid" in sb.written(1)
    events = world.store().events(container_id=cid)
    assert any(e.type == "session.killed" and e.actor == "user" for e in events)
    [after] = listed(world)  # the store still says running until a reconcile: Modal says ended
    assert after["state"] == "ended" and after["error"].startswith("E205")
    r = world.run("session", "attach", s["id"])
    assert_coded_error(r, "E601", f"parhelia containers show {cid}", "modal shell")


def test_kill_refuses_a_session_in_another_control_planes_sandbox(world, fake_modal, monkeypatch):
    created = dispatch(world, monkeypatch, SLEEP)
    cid, sid = created["container_id"], created["sandbox_id"]
    [s] = poll(lambda: listed(world))
    store = world.store()
    theirs = {**store.get_container(cid).tags, "parhelia_plane": "cp-someone-else"}
    store.update_container(cid, tags=theirs)
    r = world.run("session", "kill", s["id"], "--yes")
    assert_coded_error(r, "E401")
    assert fake_modal.state.sandboxes[sid].running and listed(world)[0]["state"] == "running"
    assert not any(
        "display-message" in " ".join(x.command_args)
        for x in fake_modal.state.requests["TaskExecStart"]
    )


def test_a_sandbox_that_does_not_answer_lists_its_session_unknown_in_time(
    world, fake_modal, monkeypatch
):
    created = dispatch(world, monkeypatch, SLEEP)
    [s] = poll(lambda: listed(world))
    monkeypatch.setenv("PARHELIA_MODAL_TIMEOUT_SECONDS", "1")
    fake_modal.state.exec_hang = True  # execs start, their output never comes
    try:
        t0 = time.monotonic()
        [hung] = listed(world)
        assert time.monotonic() - t0 < 1 + MARGIN
        assert (hung["id"], hung["container_id"]) == (s["id"], created["container_id"])
        assert hung["state"] == "unknown" and hung["activity"] == "unknown"
        assert hung["error"].startswith("E501") and "did not answer within" in hung["error"]
        execs = len(fake_modal.state.requests["TaskExecStart"])
        t0 = time.monotonic()
        human = world.run("session", "list")  # the hung read is not started again: E501 at once
        assert time.monotonic() - t0 < MARGIN
        assert human.code == 0 and f"{s['id']} could not be read: E501" in human.out
        assert "an earlier read has not returned yet" in human.out
        assert len(fake_modal.state.requests["TaskExecStart"]) == execs
        t0 = time.monotonic()
        status = world.run("status", "--no-refresh")  # the view reads sessions: never frozen
        assert time.monotonic() - t0 < 1 + MARGIN and "Traceback" not in status.err
        r = world.run("session", "attach", s["id"])
        assert_coded_error(r, "E601", "did not answer", "modal shell", "parhelia reconciler run")
    finally:
        fake_modal.state.exec_hang = False
    [back] = poll(lambda: [x for x in listed(world) if x["state"] == "running"])
    assert back["id"] == s["id"]


def _pty_parhelia(env: dict, *args: str) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [PY, "-m", "parhelia.app", *args],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**env, "TERM": "xterm"}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    return proc, master


class Screen:
    def __init__(self, master: int) -> None:
        self.master, self.seen = master, b""

    def read(self) -> None:
        if select.select([self.master], [], [], 0.1)[0]:
            with contextlib.suppress(OSError):
                self.seen += os.read(self.master, 65536)

    def until(self, predicate) -> None:
        poll(lambda: self.read() or predicate(), 60.0)


def test_attach_through_modal_shell_answers_the_agent_and_detach_leaves_it_running(
    world, fake_modal, monkeypatch
):
    created = dispatch(world, monkeypatch, ASK)
    sid = created["sandbox_id"]
    [s] = poll(lambda: [s for s in listed(world) if s["activity"] == "waiting"])
    proc, master = _pty_parhelia(world.env, "session", "attach", s["id"])
    screen = Screen(master)
    try:
        screen.until(lambda: b"Do you want to proceed?" in screen.seen)
        poll(lambda: listed(world)[0]["attached_clients"] == 1)
        assert listed(world)[0]["state"] == "attached"
        os.write(master, b"y\r")  # typed through the PTY exec into the agent's pane
        sb = fake_modal.state.sandboxes[sid]
        poll(lambda: b"answered y" in sb.written(1))  # the agent got it: its output says so
        os.write(master, b"\x02d")  # the tmux prefix, then d: detach
        screen.until(lambda: proc.poll() is not None)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen.seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, screen.seen
    assert b"Detached from" in screen.seen
    [after] = listed(world)
    assert after["id"] == s["id"] and after["attached_clients"] == 0 and after["state"] == "running"
    [pty_exec] = [r for r in fake_modal.state.requests["TaskExecStart"] if r.pty_info.enabled]
    assert list(pty_exec.command_args) == ["tmux", "-L", "parhelia", "attach", "-t", f"={s['id']}"]
    assert (pty_exec.pty_info.winsz_rows, pty_exec.pty_info.winsz_cols) == (30, 100)


def test_attach_when_modal_shell_fails_is_e601_with_recovery_commands(
    world, fake_modal, monkeypatch
):
    from grpclib import Status

    created = dispatch(world, monkeypatch, SLEEP)
    [s] = poll(lambda: listed(world))
    # the attach's own listing execs once; the exec modal shell starts is refused (sandbox gone)
    fake_modal.state.fail("TaskExecStart", Status.NOT_FOUND, "Task has finished", after=1)
    proc, master = _pty_parhelia(world.env, "session", "attach", s["id"])
    screen = Screen(master)
    try:
        screen.until(lambda: proc.poll() is not None)
        screen.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    text = screen.seen.decode("utf-8", "replace")
    assert proc.returncode != 0 and "Error E601" in text, text
    assert "modal shell exited with" in text and "Traceback" not in text
    assert f"parhelia containers show {created['container_id']}" in text
    assert "parhelia session list" in text


async def test_dashboard_a_on_a_modal_container_attaches_to_its_session(
    world, fake_modal, monkeypatch
):
    from parhelia.state.checkpoint_store import list_checkpoints
    from tests.test_dashboard import make_app, refreshed, table, until

    monkeypatch.setenv("PARHELIA_CHECKPOINT_ON_DETACH", "true")
    created = dispatch(world, monkeypatch, SLEEP)
    cid, sid = created["container_id"], created["sandbox_id"]
    [s] = poll(lambda: listed(world))
    ran = []
    app = make_app(world.control(), attach_runner=lambda argv: ran.append(argv) or 0)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        app.suspend = contextlib.nullcontext  # the headless driver cannot hand over a terminal
        table(app).select(cid)
        await pilot.press("a")
        # the runner returned with the agent still running: a detach, so `on_detach` snapshots
        await until(pilot, lambda: list_checkpoints(world.store(), container=cid))
    assert ran == [
        [PY, "-m", "modal", "shell", sid, "--cmd", f"tmux -L parhelia attach -t ={s['id']}"]
    ]
    [ck] = list_checkpoints(world.store(), container=cid)
    assert ck.trigger == "detach" and s["id"] in ck.note


def test_mcp_session_tools_on_modal(world, fake_modal, monkeypatch):
    created = dispatch(world, monkeypatch, SLEEP)
    cid, sid = created["container_id"], created["sandbox_id"]
    [s] = poll(lambda: listed(world))

    async def body():
        async with session(world) as mcp:
            [row] = await call(mcp, "session_list", fields=["id", "backend", "sandbox_id"])
            assert row == {"id": s["id"], "backend": "modal", "sandbox_id": sid}
            info = await call(mcp, "session_attach_info", session_id=cid)
            assert info["command"] == f"parhelia session attach {s['id']}"
            assert info["tmux_command"] == (
                f"modal shell {sid} --cmd 'tmux -L parhelia attach -t ={s['id']}'"
            )
            done = await call(mcp, "session_kill", session_id=s["id"], confirm=True)
            assert done["id"] == s["id"]

    anyio.run(body)
    sb = fake_modal.state.sandboxes[sid]
    poll(lambda: not sb.running)
    assert sb.result.exitcode == 129
    events = world.store().events(container_id=cid)
    assert any(e.type == "session.killed" and e.actor == ACTOR for e in events)


def test_read_script_output_is_parsed_by_session_with_its_screen():
    from parhelia.workers.modal_sessions import parse_read

    text = (
        "now 1764480000\n"
        "S\tph-t-1-20251130T050000\t1\t1764479000\t1764479990\t0\n"
        "|line one\n|S\tnot a session line\n|\n"
        "S\tsomeone-elses\t0\t1764479000\t1764479000\t0\n"
        "S\tph-t-2-20251130T050100\t0\t1764479100\t\t1\n"
    )
    read = parse_read(text)
    assert [p.name for p in read.panes] == ["ph-t-1-20251130T050000", "ph-t-2-20251130T050100"]
    first, second = read.panes
    assert first.attached == 1 and not first.dead and second.dead and second.last_output is None
    assert read.screens["ph-t-1-20251130T050000"] == "line one\nS\tnot a session line\n\n"
    assert read.now is not None and (read.now - first.created).total_seconds() == 1000
    assert parse_read("notmux\n").has_tmux is False and parse_read("notmux\n").panes == []


def test_a_failed_read_keeps_its_words_not_its_frames():
    """A row keeps only the error's words: its traceback and the exception it was raised from
    made a cycle of frames for the collector with every read of an unreachable Modal."""
    from types import SimpleNamespace

    from parhelia.state.errors import ParheliaError
    from parhelia.workers import modal_sessions

    class Unreachable:
        def exec_script(self, sandbox_id, *args, **kwargs):
            try:
                raise ConnectionRefusedError("127.0.0.1:9")
            except ConnectionRefusedError as exc:
                if sandbox_id == "sb-odd":
                    raise RuntimeError("an SDK surprise") from exc
                raise ParheliaError("E501", "Modal is unreachable", ["a", "b"]) from exc

    control = SimpleNamespace(
        backend_for=lambda _name: Unreachable(),
        settings=SimpleNamespace(modal=SimpleNamespace(timeout_seconds=5)),
    )
    reads = modal_sessions.read_sandboxes(control, ["sb-1", "sb-odd"], with_activity=False)
    assert [reads[s].code for s in ("sb-1", "sb-odd")] == ["E501", "E503"]
    for err in reads.values():
        assert (err.__traceback__, err.__cause__, err.__context__) == (None, None, None)
    assert "RuntimeError: an SDK surprise" in str(reads["sb-odd"])
    # nothing of a finished read stays behind (a dashboard reads thousands of sandboxes in turns)
    assert not {"sb-1", "sb-odd"} & modal_sessions._reading.keys()
