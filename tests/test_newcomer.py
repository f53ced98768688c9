"""Issue 13, as a newcomer meets Parhelia: health and state tell one story, agent logs, the quit
note, the form's "from …" labels, sandboxes in their orphan grace, id prefixes, and `tui` flags
that need `--once`. Each test fails on the code before it."""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import timedelta

import pytest
from textual.widgets import Input, Label

from parhelia.state.settings import Settings
from parhelia.workers.backends.base import LogChunk, ProbeSample, SandboxInfo, parhelia_tags
from parhelia.workers.sessions import agent_processes
from tests import dashboard_world as world
from tests.test_cli import assert_coded_error, create_task
from tests.test_dashboard import make_app, refreshed, table, text_of, until
from tests.test_reconciler import Clock, FakeBackend, make_reconciler, running_row


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(store):
    return FakeBackend(plane=store.plane_id)


@pytest.fixture
def fleet(store):
    backend = world.seed(store)
    return world.control(store, backend), backend


# -- health and state -------------------------------------------------------------------------


def test_ended_rows_show_no_live_health_and_a_first_probe_is_not_healthy(fleet):
    from parhelia.state.views import ContainerView

    control, _ = fleet
    views = control.dashboard().containers
    stopped = next(c for c in views if c.state == "stopped")
    ended = next(c for c in views if c.state == "terminated")
    assert stopped.health == ended.health == "-"
    running = next(c for c in views if c.state == "running")
    never = ContainerView(**{**running.__dict__, "health": "healthy", "last_heartbeat_at": None})
    assert never.health == "unknown"


def test_containers_list_json_shows_the_same_health(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", f"{shutil.which('true')} {{prompt}}")
    cid = create_task(parhelia_env)["container_id"]
    env = parhelia_env
    deadline = time.monotonic() + 30
    while True:  # the agent exits at once; a reconcile sees the sandbox end
        env.run("reconciler", "run")
        rows = {r["id"]: r for r in env.ok("containers", "list")}
        if rows[cid]["state"] not in ("created", "running"):
            break
        assert time.monotonic() < deadline, rows[cid]
        time.sleep(0.2)
    assert rows[cid]["health"] == "-"


def test_a_sandbox_that_exited_127_says_agent_not_found(store, fake, clock):
    running_row(store, clock, "c-0000127a", "sb-127")
    fake.sandboxes["sb-127"] = SandboxInfo(
        "sb-127", "fake", parhelia_tags("c-0000127a", None), clock(), running=False, exit_code=127
    )
    make_reconciler(store, fake, clock).run_once()
    (ev,) = store.events(container_id="c-0000127a", types=["container.state"])
    assert "exited 127: agent not found" in ev.message


def test_modal_probe_looks_for_the_configured_agent():
    from parhelia.workers.backends import make_backend

    settings = Settings()
    settings.agent.command = "/opt/bin/codex exec -- {prompt}"
    backend = make_backend("modal", settings, data_dir=None)
    assert backend.inner.agent_binary == "codex"


def test_a_finishing_agent_is_not_degraded_and_a_stopped_one_is_not_gone(store, fake, clock):
    from parhelia.workers.heartbeat import HeartbeatPoller

    running_row(store, clock, "c-0000f1a1", "sb-fin", missed_heartbeats=1)
    running_row(store, clock, "c-0000f1a2", "sb-stop", missed_heartbeats=1)
    samples = {
        "sb-fin": ProbeSample(1.0, 10.0, 1.0, 1.0, 9.0, False, agent_exited=True),
        "sb-stop": ProbeSample(1.0, 10.0, 1.0, 1.0, 9.0, False, agent_stopped=True),
    }
    fake.probe_fn = samples.__getitem__
    poller = HeartbeatPoller(store, {fake.name: fake}, Settings(), clock=clock)
    poller.run_once()
    fin, stop = store.get_container("c-0000f1a1"), store.get_container("c-0000f1a2")
    assert (fin.missed_heartbeats, fin.health) == (1, "healthy")
    assert stop.health == "degraded"
    (ev,) = store.events(container_id="c-0000f1a2", types=["container.health"])
    assert "not responding" in ev.message and "gone" not in ev.message


def test_local_probe_tells_a_stopped_agent(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", f"{shutil.which('sleep')} 60 {{prompt}}")
    cid = create_task(parhelia_env, "30")["container_id"]
    backend = parhelia_env.backend()
    sid = parhelia_env.store().get_container(cid).sandbox_id
    deadline = time.monotonic() + 20
    # the agent has started (in its tmux session: workers/sessions.py finds it under the host)
    while not (agents := agent_processes(backend._leader(backend._load(sid)))):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert backend.probe(sid).agent_alive
    try:
        for p in agents:
            os.kill(p.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while not (sample := backend.probe(sid)).agent_stopped:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not sample.agent_alive
    finally:
        for p in agents:
            os.kill(p.pid, signal.SIGCONT)
        parhelia_env.run("containers", "terminate", cid, "--yes")


def test_rows_without_a_value_sort_last_both_ways(fleet):
    from parhelia.widgets.formatting import COLUMN_KEYS, sort_keys, sorted_ids

    control, _ = fleet
    views = control.dashboard().containers
    cpu = COLUMN_KEYS.index("cpu")
    keyed = [(c.id, sort_keys(c, world.NOW)[cpu]) for c in views]
    without = {c.id for c in views if not c.is_active or c.cpu_percent is None}
    assert without and len(without) < len(views)
    for reverse in (False, True):
        order = sorted_ids(keyed, reverse=reverse)
        assert set(order[-len(without) :]) == without, (reverse, order)


async def test_a_live_sort_keeps_the_cursor_on_its_container(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        t.sort_by("cost")
        t.move_cursor(row=2)
        chosen = t.shown_rows[2].id
        t.sort_by("cost", reverse=True)
        await pilot.pause()
        assert t.shown_rows[t.cursor_row].id == chosen


# -- logs ------------------------------------------------------------------------------------


async def test_l_opens_the_agent_output_following_and_searchable(fleet):
    from parhelia.widgets.logs_screen import LogsScreen

    control, _ = fleet
    written = ["first line\n", "ERROR boom\nsecond", " line\n"]
    row = next(c for c in control.store.containers() if c.state == "running")
    reads: list[int] = []

    def read(ref: str, offset: int = 0):
        reads.append(offset)
        text = "".join(written)
        data = text[offset:]
        return row, LogChunk(data, offset, offset + len(data))

    control.container_logs = read
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        table(app).focus()
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen))
        screen = app.screen
        await until(pilot, lambda: len(screen.lines) == 3)
        assert screen.lines == ["first line", "ERROR boom", "second line"]
        written.append("late output\n")  # following: new output arrives without a key
        await until(pilot, lambda: "late output" in screen.lines)
        await pilot.press("slash", *"error")
        assert screen.shown_lines() == ["ERROR boom"]
        await pilot.press("escape")
        assert screen.search == "" and len(screen.shown_lines()) == 4
        await pilot.press("escape")
        assert not isinstance(app.screen, LogsScreen)


def test_containers_logs_prints_the_agent_output(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", f"{shutil.which('echo')} agent-said {{prompt}}")
    cid = create_task(parhelia_env, "hello there")["container_id"]
    deadline = time.monotonic() + 30
    while "agent-said hello there" not in (r := parhelia_env.run("containers", "logs", cid)).out:
        assert time.monotonic() < deadline, (r.out, r.err)
        time.sleep(0.1)
    assert r.code == 0
    data = parhelia_env.ok("containers", "logs", cid[2:6])  # a prefix without `c-`
    assert "agent-said hello there" in data["text"]
    # the row may still say running (no reconcile yet): --follow stops when the agent has exited
    deadline = time.monotonic() + 30
    while (
        not parhelia_env.backend()
        .read_log(parhelia_env.store().get_container(cid).sandbox_id)
        .ended
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    followed = parhelia_env.run("containers", "logs", cid, "--follow")
    assert followed.code == 0 and "agent-said hello there" in followed.out


def test_follow_reads_until_the_container_ends():
    from parhelia.app.cli_logs import follow_log

    class Row:
        state = "running"

    row, chunks, out = Row(), ["a\n", "", "b\n", ""], []

    def read(offset):
        text = chunks.pop(0)
        if not chunks:
            row.state = "stopped"
        return row, LogChunk(text, offset, offset + len(text))

    follow_log(read, out.append, follow=True, poll_seconds=0)
    assert out == ["a\n", "b\n"]


# -- quitting, the form, grace, ids, tui flags -------------------------------------------------


@pytest.mark.parametrize("demo", [False, True])
async def test_quitting_with_live_containers_says_what_keeps_running(fleet, demo):
    control, _ = fleet
    app = make_app(control, demo=demo)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        live = [c for c in app.view.containers if c.is_active]
        await pilot.press("q")
    note = app.return_value
    assert note.startswith(f"{len(live)} containers still running, $")
    assert "/h" in note
    assert ("the demo stops its own" in note) == demo
    assert ("they keep running" in note) == (not demo)


async def test_new_task_labels_follow_the_value(fleet):
    from parhelia.widgets.new_task import NewTaskScreen

    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewTaskScreen))
        screen = app.screen
        label = screen.query_one("#label-cpu", Label)
        before = text_of(label)
        assert "from " in before
        cpu = screen.query_one("#cpu", Input)
        original = cpu.value
        cpu.value = "3"
        await pilot.pause()
        assert "edited" in text_of(label) and "from " not in text_of(label)
        cpu.value = original
        await pilot.pause()
        assert text_of(label) == before


def test_sandboxes_in_grace_are_seen_and_need_attention(store, fake, clock):
    for i in range(3):
        fake.add(f"sb-g{i}", f"c-0000900{i}", created_at=clock() - timedelta(seconds=20))
    report = make_reconciler(store, fake, clock).run_once()
    assert (report.orphans, report.in_grace) == (0, 3)
    assert "3 unrecorded in their orphan grace" in report.summary()
    view = store.dashboard(now=clock())
    assert [g.sandbox_id for g in view.in_grace] == ["sb-g0", "sb-g1", "sb-g2"]
    (reason,) = [a for a in view.attention() if "unrecorded" in a.text]
    assert reason.text == "3 unrecorded sandboxes, grace 1m 40s left"
    fake.sandboxes.clear()
    make_reconciler(store, fake, clock).run_once()
    assert store.dashboard(now=clock()).in_grace == []


def test_status_is_not_all_well_with_sandboxes_in_grace(store, fake, clock):
    from parhelia.app.once import exit_code, render_once

    fake.add("sb-g", "c-00009999", created_at=clock() - timedelta(seconds=10))
    make_reconciler(store, fake, clock).run_once()
    view = store.dashboard(now=clock())
    assert exit_code(view) == 1
    assert "unrecorded sandbox, grace 1m 50s left" in render_once(view, fmt="text", width=120)


def test_reconciler_run_says_what_the_guard_terminated(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", f"{shutil.which('sleep')} 60 {{prompt}}")
    create_task(parhelia_env, "5")
    parhelia_env.store().set_setting("policy.max_runtime_hours", 1e-9)  # any runtime is over it
    r = parhelia_env.run("reconciler", "run")
    assert "budget guard: terminated c-" in r.out and "(max_runtime)" in r.out, (r.out, r.err)


def test_a_dispatch_failure_names_its_code_once(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", "no-such-agent-xyz {prompt}")
    r = parhelia_env.run("task", "create", "hello")
    assert r.code != 0
    events = parhelia_env.ok("events", "list", "--level", "error")
    (msg,) = [e["message"] for e in events if "dispatch of" in e["message"]]
    assert msg.count("E504") == 1, msg


def test_tui_once_flags_without_once_are_e101(parhelia_env):
    for flags in (["--format", "json"], ["--width", "90"], ["--no-refresh"]):
        r = parhelia_env.run("tui", *flags)
        assert r.code == 2
        assert_coded_error(r, "E101", flags[0], "--once")


def test_tui_without_a_terminal_says_to_use_once(parhelia_env):
    r = parhelia_env.run("tui")
    assert r.code == 2
    assert_coded_error(r, "E101", "not a terminal", "parhelia tui --once")


def test_an_unreachable_modal_api_is_e502_within_the_connect_timeout(parhelia_env, monkeypatch):
    import socket

    from modal.client import _Client

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PARHELIA_BACKEND", "modal")
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    monkeypatch.setenv("PARHELIA_MODAL_TIMEOUT_SECONDS", "2")
    monkeypatch.setattr(_Client, "_client_from_env", None)
    t0 = time.monotonic()
    r = parhelia_env.run("reconciler", "run")
    assert time.monotonic() - t0 < 2 + 8  # the deadline and a busy machine's start-up
    assert r.code != 0 and "E502" in r.err and "could not be reached" in r.err, r.err


def test_the_spinner_draws_only_on_a_terminal(monkeypatch):
    import io

    from parhelia.app.spinner import waiting

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Tty(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        with waiting("Reconciling with the backend…"):
            deadline = time.monotonic() + 10
            while drawn and "Reconciling" not in stream.getvalue():
                assert time.monotonic() < deadline, "no spinner on a terminal"
                time.sleep(0.01)
        assert ("Reconciling" in stream.getvalue()) == drawn


def test_a_quick_answer_gets_no_spinner_and_loads_no_rich(monkeypatch):
    """SPEC-20: under 100 ms nothing; the spinner's Rich is not even imported (a tenth of a
    second of `parhelia status` on a terminal)."""
    import io
    import subprocess
    import sys

    from parhelia.app import feedback
    from parhelia.app.spinner import waiting

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(feedback, "QUIET_S", 60.0)  # however loaded the machine: "quick"
    stream = Tty()
    monkeypatch.setattr("sys.stderr", stream)
    with waiting("Reconciling with the backend…"):
        pass
    assert stream.getvalue() == ""
    probe = (
        "import io, sys\n"
        "class T(io.StringIO):\n    def isatty(self): return True\n"
        "sys.stderr = T()\n"
        "from parhelia.app.spinner import waiting\n"
        "with waiting('x'): pass\n"
        "print('rich' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


async def test_the_header_fits_80_columns_with_the_budget(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        bar = app.query_one("#status")
        line = bar.render()
        assert line.cell_len <= 80
        assert "budget 53% of $7.50" in line.plain and "plane" not in line.plain, line.plain
