"""The live command line end to end: `status`, bare `containers`, `events watch | replay |
export`, each against a store that another process writes. The delivery test asserts order and
completeness, not time (bench/events.py times it)."""

from __future__ import annotations

import csv
import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from parhelia.state.event_log import to_event_view
from parhelia.state.models import Container, Task
from tests.test_cli import assert_coded_error, assert_envelope

DEADLINE = 60.0

WRITER = """
import sys
from parhelia.state.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.add_event("note", f"tick {i}", container_id="c-feed0001")
    store.add_event("user.action", f"other {i}", level="warning")
store.close()
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "parhelia.app", *args]


class Lines:
    """A subprocess's stdout read line by line on a thread, waited on with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.q.put(line.rstrip("\n"))
        except ValueError:  # the test closed the pipe (the `| head` case)
            pass
        self.q.put(None)

    def take(self, n: int, within: float = DEADLINE) -> list[str]:
        out, end = [], time.monotonic() + within
        while len(out) < n:
            line = self.q.get(timeout=max(0.1, end - time.monotonic()))
            assert line is not None, f"stdout ended after {out}; stderr: {self.proc.stderr.read()}"
            out.append(line)
        return out


def start(env, *args: str) -> tuple[subprocess.Popen, Lines]:
    proc = subprocess.Popen(
        cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env
    )
    return proc, Lines(proc)


def write_in_another_process(env, n: int) -> None:
    subprocess.run([sys.executable, "-c", WRITER, env.db_url, str(n)], check=True, timeout=DEADLINE)


def interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=DEADLINE)
    return code, proc.stderr.read()


# -- status -------------------------------------------------------------------------------------


def test_status_on_an_empty_store_is_ok_and_exits_zero(parhelia_env):
    proc = subprocess.run(
        cli("status"), capture_output=True, text=True, env=parhelia_env.env, timeout=DEADLINE
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("parhelia OK · backend local")
    assert "All well: nothing needs attention." in proc.stdout
    assert "\x1b" not in proc.stdout


def test_status_json_is_the_once_envelope(parhelia_env):
    status = parhelia_env.run("status", "--no-refresh", "--json")
    once = parhelia_env.run("tui", "--once", "--no-refresh", "--json")
    assert status.code == once.code == 0
    a, b = json.loads(status.out), json.loads(once.out)
    assert_envelope(a)
    for doc in (a, b):
        doc["data"]["dashboard"].pop("generated_at")
        doc["data"]["dashboard"]["budget"].pop("period_start")
    assert a["data"] == b["data"] and a["next_actions"] == b["next_actions"]


def test_status_exits_one_with_the_fixing_command_when_another_process_made_an_orphan(
    parhelia_env,
):
    store = parhelia_env.store()
    store.add_container(
        Container(id="c-0rfa0001", backend="local", state="orphaned", sandbox_id="sb-x")
    )
    store.close()
    proc = subprocess.run(
        cli("status", "--no-refresh"),
        capture_output=True,
        text=True,
        env=parhelia_env.env,
        timeout=DEADLINE,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("parhelia ATTENTION")
    assert "Orphans     1 (c-0rfa0001)" in proc.stdout
    assert "parhelia containers orphans" in proc.stdout
    doc = parhelia_env.run("status", "--no-refresh", "--json")
    assert doc.code == 1 and doc.json["data"]["status"] == "attention"


def test_status_on_a_broken_database_exits_two_with_a_code(parhelia_env, tmp_path):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    r = parhelia_env.run("--db", f"sqlite:///{bad}", "status")
    assert r.code == 2
    assert "Traceback" not in r.err and r.err.startswith("Error E7")
    r = parhelia_env.run("--db", f"sqlite:///{bad}", "status", "--json")
    assert r.code == 2 and r.json["success"] is False


# -- bare containers ------------------------------------------------------------------------------


def test_bare_containers_and_c_list_like_containers_list(parhelia_env):
    store = parhelia_env.store()
    three_hours = datetime.now(UTC) - timedelta(hours=3)  # its age reads the same for a minute
    store.add_container(
        Container(id="c-11110001", backend="local", state="running", created_at=three_hours)
    )
    store.close()
    listed = parhelia_env.run("containers", "list")
    for argv in (["containers"], ["c"]):
        r = parhelia_env.run(*argv)
        assert r.code == 0 and r.out == listed.out
        assert r.out.startswith("ID") and "c-11110001" in r.out and "Total: 1 container |" in r.out
    assert parhelia_env.ok("c")[0]["id"] == "c-11110001"


# -- events watch ---------------------------------------------------------------------------------


def test_watch_delivers_another_process_commits_in_order_completely_with_filters(parhelia_env):
    env = parhelia_env
    store = env.store()
    store.add_event("note", "before", container_id="c-feed0001")
    store.close()
    proc, lines = start(env, "events", "watch", "--type", "note", "--from-start", "--json")
    try:
        assert json.loads(lines.take(1)[0])["message"] == "before"  # replayed, then following
        write_in_another_process(env, 60)
        got = [json.loads(line) for line in lines.take(60)]
        assert [e["message"] for e in got] == [f"tick {i}" for i in range(60)]
        assert {e["type"] for e in got} == {"note"}
        assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    finally:
        code, err = interrupt(proc)
    assert code == 130
    assert err == "", err  # Ctrl-C: no traceback, not a word
    assert lines.q.get(timeout=5) is None  # nothing after the interrupt


def test_watch_quiet_and_level_keep_only_what_matters(parhelia_env):
    env = parhelia_env
    proc, lines = start(env, "events", "watch", "--quiet")
    try:
        # Without --from-start the watch shows only what is written after it started reading,
        # and nothing says when that is: write again every few seconds until lines arrive (a
        # write missed by a slow start would otherwise cost the whole DEADLINE).
        lines_seen: list[str] = []
        deadline = time.monotonic() + DEADLINE
        while not lines_seen and time.monotonic() < deadline:
            write_in_another_process(env, 3)
            try:
                lines_seen = lines.take(3, within=3.0)
            except queue.Empty:
                continue
        assert all("WARN" in line and "other" in line for line in lines_seen), lines_seen
    finally:
        code, err = interrupt(proc)
    assert code == 130 and "Traceback" not in err


def test_watch_ends_silently_when_its_reader_goes_away(parhelia_env):
    env = parhelia_env
    store = env.store()
    store.add_event("note", "first")
    store.add_event("note", "second")
    store.close()
    proc = subprocess.Popen(
        cli("events", "watch", "--from-start"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env.env,
    )
    assert "first" in proc.stdout.readline()  # read here, not on a thread that would keep it open
    proc.stdout.close()  # `| head -1`
    deadline = time.monotonic() + DEADLINE
    while proc.poll() is None and time.monotonic() < deadline:
        write_in_another_process(env, 1)  # the next write finds the pipe closed
    assert proc.wait(timeout=DEADLINE) == 0
    assert proc.stderr.read() == ""


def test_watch_bad_values_are_e101(parhelia_env):
    assert_coded_error(parhelia_env.run("events", "watch", "--level", "loud"), "E101", "loud")
    assert_coded_error(parhelia_env.run("events", "watch", "--since", "yesterday"), "E101", "10m")


# -- replay ---------------------------------------------------------------------------------------


def _task_with_history(env) -> str:
    store = env.store()
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    store.add_container(
        Container(id="c-4e9a0001", backend="local", task_id="t-4e9a0001"),
        task=Task(id="t-4e9a0001", prompt="p", backend="local"),
    )
    for i, (typ, level) in enumerate(
        [("task.created", "info"), ("container.state", "info"), ("container.health", "warning")]
    ):
        store.add_event(
            typ,
            f"step {i}",
            level=level,
            task_id="t-4e9a0001",
            container_id="c-4e9a0001",
            ts=t0 + timedelta(seconds=65 * i),
        )
    store.add_event("task.created", "unrelated", task_id="t-other")
    store.close()
    return "t-4e9a0001"


def test_replay_in_order_with_time_since_the_first(parhelia_env):
    task = _task_with_history(parhelia_env)
    proc = subprocess.run(
        cli("events", "replay", task),
        capture_output=True,
        text=True,
        env=parhelia_env.env,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 3 and "unrelated" not in proc.stdout
    assert out[0].startswith("+     0s") and "step 0" in out[0]
    assert out[1].startswith("+ 1m 05s") and out[2].startswith("+ 2m 10s")
    docs = [
        json.loads(x)
        for x in parhelia_env.run("events", "replay", "c-4e9a", "--json").out.splitlines()
    ]
    assert [d["message"] for d in docs] == ["step 0", "step 1", "step 2"]
    warn = parhelia_env.run("events", "replay", task, "--level", "warning").out
    assert "step 2" in warn and "step 0" not in warn


def test_replay_unknown_subject_and_negative_speed_are_e101(parhelia_env):
    _task_with_history(parhelia_env)
    assert_coded_error(parhelia_env.run("events", "replay", "nothing-like-it"), "E101")
    assert_coded_error(parhelia_env.run("events", "replay", "t-4e9a0001", "--speed", "-1"), "E101")


# -- export ---------------------------------------------------------------------------------------


def _fill(env, n: int = 40) -> list:
    write_in_another_process(env, n // 2)
    store = env.store()
    try:
        return [to_event_view(e) for e in store.events(limit=10_000, oldest_first=True)]
    finally:
        store.close()


def _as_record(e) -> dict:
    d = asdict(e)
    d["ts"] = e.ts.isoformat()
    return d


def test_export_jsonl_round_trips_every_event(parhelia_env):
    views = _fill(parhelia_env)
    proc = subprocess.run(
        cli("events", "export", "--format", "jsonl"),
        capture_output=True,
        text=True,
        env=parhelia_env.env,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records == [_as_record(e) for e in views]
    assert all(datetime.fromisoformat(r["ts"]).tzinfo is not None for r in records)


def test_export_csv_round_trips_and_writes_its_file_atomically(parhelia_env, tmp_path):
    views = _fill(parhelia_env)
    target = tmp_path / "events.csv"
    target.write_text("old content\n")
    r = parhelia_env.run("events", "export", "--format", "csv", "--output", str(target))
    assert r.code == 0 and r.out == ""
    assert f"{len(views)} event(s) written" in r.err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    expect = [{k: "" if v is None else str(v) for k, v in _as_record(e).items()} for e in views]
    assert rows == expect
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".events.csv")] == []


def test_export_filters_match_events_list(parhelia_env):
    _fill(parhelia_env)
    r = parhelia_env.run("events", "export", "--level", "warning", "--since", "1h")
    records = [json.loads(line) for line in r.out.splitlines()]
    assert records and {x["level"] for x in records} == {"warning"}
    listed = parhelia_env.ok("events", "list", "--level", "warning", "--since", "1h", "-n", "1000")
    assert [x["id"] for x in records] == [x["id"] for x in listed]
    assert parhelia_env.run("events", "export", "--since", "1m", "--until", "2d").out == ""


@pytest.mark.parametrize("argv", [["--format", "xml"], ["--until", "soon"], ["--since", "5y"]])
def test_export_bad_values_are_e101(parhelia_env, argv):
    assert_coded_error(parhelia_env.run("events", "export", *argv), "E101")


# -- containers watch and task watch --------------------------------------------------------------

FINISH = """
import sys
from parhelia.state.store import Store
store = Store(sys.argv[1])
cid, tid, status = sys.argv[2], sys.argv[3], sys.argv[4]
store.transition(cid, "terminated", source="reconciler", exit_code=0 if status == "completed" else 1,
                 termination_reason="exited")
store.update_task(tid, status=status)
store.close()
"""


def _running_task(env, n: str) -> tuple[str, str]:
    cid, tid = f"c-5a7c000{n}", f"t-5a7c000{n}"
    store = env.store()
    store.add_container(
        Container(id=cid, backend="local", task_id=tid, state="running", sandbox_id=f"sb-{n}"),
        task=Task(id=tid, prompt="watch me", backend="local", status="running"),
    )
    store.add_event("task.created", f"task {tid} created", task_id=tid)
    store.close()
    return cid, tid


def _finish(env, cid: str, tid: str, status: str) -> None:
    subprocess.run(
        [sys.executable, "-c", FINISH, env.db_url, cid, tid, status], check=True, timeout=DEADLINE
    )


@pytest.mark.parametrize(("status", "code"), [("completed", 0), ("failed", 1)])
def test_task_watch_follows_until_the_task_ends_and_exits_by_outcome(parhelia_env, status, code):
    cid, tid = _running_task(parhelia_env, "1" if code == 0 else "2")
    proc, lines = start(parhelia_env, "task", "watch", tid)
    assert f"task {tid} created" in lines.take(1)[0]
    _finish(parhelia_env, cid, tid, status)
    assert proc.wait(timeout=DEADLINE) == code
    rest = []
    while (line := lines.q.get(timeout=DEADLINE)) is not None:
        rest.append(line)
    assert any("running → terminated" in line for line in rest), rest
    assert proc.stderr.read() == ""


def test_task_watch_interrupted_exits_130(parhelia_env):
    _cid, tid = _running_task(parhelia_env, "3")
    proc, lines = start(parhelia_env, "task", "watch", tid, "--json")
    assert json.loads(lines.take(1)[0])["task_id"] == tid
    code, err = interrupt(proc)
    assert code == 130 and err == ""


def test_containers_watch_prints_a_json_line_per_change_when_piped(parhelia_env):
    cid, tid = _running_task(parhelia_env, "4")
    proc, lines = start(parhelia_env, "containers", "watch")  # piped: JSON lines
    try:
        first = json.loads(lines.take(1)[0])
        assert (first["id"], first["state"], first["change"]) == (cid, "running", "state")
        _finish(parhelia_env, cid, tid, "completed")
        after = json.loads(lines.take(1)[0])
        assert (after["id"], after["state"], after["change"]) == (cid, "terminated", "state")
    finally:
        code, err = interrupt(proc)
    assert code == 130 and err == ""


def test_containers_watch_redraws_in_place_on_a_terminal_and_ends_on_ctrl_c(parhelia_env):
    import os
    import pty
    import select

    cid, _tid = _running_task(parhelia_env, "5")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the watch on a real pseudo-terminal
        os.execvpe(sys.executable, cli("containers", "watch"), parhelia_env.env)
    buf, deadline = b"", time.monotonic() + DEADLINE
    while cid.encode() not in buf and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            buf += os.read(fd, 65536)
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    try:
        while select.select([fd], [], [], 0.5)[0]:
            buf += os.read(fd, 65536)
    except OSError:  # the terminal closed with the child
        pass
    os.close(fd)
    text = buf.decode(errors="replace")
    assert cid in text and "running" in text and "Total: 1 container |" in text
    assert "\x1b[" in text  # drawn with Rich, not JSON lines
    assert "Traceback" not in text
    assert os.waitstatus_to_exitcode(status) == 130
