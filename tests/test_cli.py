"""The `parhelia` CLI end to end: every command with `--json`, coded errors without tracebacks,
recovery commands that exist, help, light imports, and the container lifecycle on real local
processes. In-process through `main(argv)`, plus a few real subprocesses for the entry points."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from parhelia.state.errors import CATALOGUE
from tests import command_check

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("app", "state", "workers")


def assert_envelope(doc: dict) -> None:
    """SPEC-20's shape: success with data, metadata and next actions, or a coded error."""
    if doc["success"]:
        assert set(doc) == {"success", "data", "metadata", "next_actions"}
        assert set(doc["metadata"]) >= {"timestamp", "duration_ms"}
        assert datetime.fromisoformat(doc["metadata"]["timestamp"]).tzinfo is not None
        assert doc["metadata"]["duration_ms"] >= 0
        for action in doc["next_actions"]:
            assert set(action) == {"command", "description", "priority"}
            assert action["priority"] in ("high", "medium", "low")
            assert command_check.problem(action["command"]) is None
    else:
        assert set(doc) == {"success", "error"}
        err = doc["error"]
        assert {"code", "message", "suggestions"} <= set(err)
        assert err["code"] in CATALOGUE
        assert len(err["suggestions"]) >= 2


def assert_coded_error(result, code: str, *needles: str) -> None:
    """Human error: code, message and suggestions on stderr, non-zero exit, never a traceback."""
    assert result.code != 0
    assert result.out == ""
    assert "Traceback" not in result.err
    assert result.err.startswith(f"Error {code}: {CATALOGUE[code].title}: ")
    assert "\nTry:\n  " in result.err
    assert f"More: parhelia help {code}" in result.err
    for needle in needles:
        assert needle in result.err, result.err


def running_sandbox(env, container_id: str):
    (info,) = [i for i in env.backend().list() if i.container_id == container_id]
    return info


def create_task(env, prompt: str = "say hello", *extra: str) -> dict:
    return env.ok("task", "create", prompt, *extra)


# -- --json on every command ----------------------------------------------------------------


def _minimal_args(task_id: str, container_id: str, copy_to: str) -> dict[str, list[str]]:
    return {
        "help": ["help", "E204"],
        "examples": ["examples", "budget"],
        "cleanup": ["cleanup", "--orphans", "--yes"],
        "tui": ["tui", "--once", "--no-refresh"],
        "config show": ["config", "show"],
        "config trust": ["config", "trust"],  # the project's parhelia.toml, written below
        "config untrust": ["config", "untrust"],
        "db status": ["db", "status"],
        "db migrate": ["db", "migrate"],
        "db copy": ["db", "copy", "--to", copy_to],
        "task create": ["task", "create", "another one"],
        "task list": ["task", "list"],
        "task show": ["task", "show", task_id],
        "task cancel": ["task", "cancel", task_id, "--yes"],
        "task retry": ["task", "retry", task_id],
        "containers list": ["containers", "list", "--all"],
        "containers show": ["containers", "show", container_id],
        "containers logs": ["containers", "logs", container_id],
        "containers events": ["containers", "events", container_id],
        "containers orphans": ["containers", "orphans"],
        "containers health": ["containers", "health"],
        "containers terminate": ["containers", "terminate", container_id, "--yes"],
        "events list": ["events", "list", "--level", "info"],
        "events export": ["events", "export"],
        "events watch": ["events", "watch"],  # long-running: tests/test_live_cli.py
        "events replay": ["events", "replay", task_id],
        "containers watch": ["containers", "watch"],  # long-running: tests/test_live_cli.py
        "task watch": ["task", "watch", task_id],  # long-running: tests/test_live_cli.py
        "status": ["status", "--no-refresh"],
        "budget estimate": ["budget", "estimate", "a task", "--cpu", "2"],
        "budget show": ["budget", "show"],
        "budget set": ["budget", "set", "40"],
        "budget history": ["budget", "history"],
        "reconciler status": ["reconciler", "status"],
        "reconciler run": ["reconciler", "run"],
        "reconciler start": ["reconciler", "start"],  # long-running: its own test below
        "mcp install": ["mcp", "install"],
        "mcp serve": ["mcp", "serve"],  # long-running: tests/test_mcp.py
        "completion bash": ["completion", "bash"],
        "completion zsh": ["completion", "zsh"],
        "completion fish": ["completion", "fish"],
        "completion install": ["completion", "install"],  # writes to HOME: tests/test_completion.py
        "checkpoint create": ["checkpoint", "create", container_id, "--note", "n"],
        "checkpoint list": ["checkpoint", "list"],
        "checkpoint diff": ["checkpoint", "diff", "CK", "CK"],  # CK: a checkpoint of container_id
        "checkpoint restore": ["checkpoint", "restore", "CK", "--yes"],
        "checkpoint cleanup": ["checkpoint", "cleanup", "--yes"],
        "checkpoint prune": ["checkpoint", "prune", "--dry-run"],
        "session list": ["session", "list"],
        "session attach": ["session", "attach", container_id],  # a terminal: tests/test_sessions.py
        "session kill": ["session", "kill", container_id, "--yes"],  # tests/test_sessions.py
        "session hook": ["session", "hook", "Stop"],  # outside a session: a no-op
        "session hooks-config": ["session", "hooks-config"],
    }


def test_every_command_accepts_json_and_prints_one_envelope(parhelia_env):
    env = parhelia_env
    first = create_task(env)
    (env.project / "parhelia.toml").write_text("[tui]\nevent_rows = 100\n")
    copy_to = f"sqlite:///{env.root / 'copy.db'}"
    cases = _minimal_args(first["task_id"], first["container_id"], copy_to)
    tree = {path for path, _ in command_check.leaves(command_check.root_command())}
    assert tree == set(cases), "a command was added or removed: give it a case here"
    ck = env.ok("checkpoint", "create", first["container_id"])["id"]
    for path, argv in cases.items():
        argv = [ck if a == "CK" else a for a in argv]
        if path in (
            "reconciler start",
            "tui",
            "mcp serve",
            "events watch",
            "containers watch",
            "task watch",
            "completion install",
            "session attach",
            "session kill",
        ):
            continue
        if path == "events replay":  # a stream of JSON lines, one per event
            assert [json.loads(line) for line in env.run(*argv, "--json").out.splitlines()]
            continue
        r = env.run(*argv, "--json")
        doc = json.loads(r.out)  # exactly one document: json.loads rejects trailing data
        assert_envelope(doc)
        assert doc["success"] is True, (path, doc)
        assert r.code == 0, (path, r.err)
        # --json before the verb means the same
        if path in ("task list", "budget show", "containers health"):
            assert json.loads(env.run("--json", *argv).out)["success"] is True


def test_tui_once_json_is_one_envelope(parhelia_env):
    pytest.importorskip("parhelia.app.once")
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--json")
    assert_envelope(json.loads(r.out))


def test_reconciler_start_holds_the_lease_and_stops_cleanly_on_sigterm(parhelia_env):
    env = parhelia_env
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "reconciler", "start", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = env.store()
        deadline = time.monotonic() + 20
        while store.get_lease() is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the loop never took the lease"
            time.sleep(0.05)
        status = env.ok("reconciler", "status")
        assert status["running"] is True
        assert status["lease_holder"].endswith(f":{proc.pid}")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert_envelope(doc)
    assert doc["data"]["stopped"] is True
    assert "reconcile: listed" in err  # the log went to stderr, not into the JSON
    assert store.get_lease() is None
    assert env.ok("reconciler", "status")["running"] is False


# -- errors ---------------------------------------------------------------------------------


def test_bad_gpu_is_e101_with_the_valid_types(parhelia_env):
    r = parhelia_env.run("task", "create", "x", "--gpu", "H900")
    assert_coded_error(r, "E101", "'H900'", "A10G", "parhelia task create PROMPT --gpu")
    assert parhelia_env.backend().list() == []


def test_unknown_container_is_e204_in_text_and_json(parhelia_env):
    r = parhelia_env.run("containers", "show", "c-nope")
    assert_coded_error(r, "E204", "c-nope", "parhelia containers list")
    r = parhelia_env.run("containers", "show", "c-nope", "--json")
    assert r.code != 0
    doc = json.loads(r.out)
    assert_envelope(doc)
    assert doc["error"]["code"] == "E204"


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["contaners", "list"], "parhelia containers"),
        (["containers", "lst"], "parhelia containers list"),
        (["budget", "shwo"], "parhelia budget show"),
    ],
)
def test_unknown_command_is_e104_with_did_you_mean(parhelia_env, argv, suggestion):
    r = parhelia_env.run(*argv)
    assert_coded_error(r, "E104", f"  {suggestion}\n")
    assert command_check.problem(suggestion) is None


def test_missing_argument_is_e102(parhelia_env):
    r = parhelia_env.run("task", "create")
    assert_coded_error(r, "E102", "prompt", "parhelia task create --help")
    doc = json.loads(parhelia_env.run("containers", "show", "--json").out)
    assert_envelope(doc)
    assert doc["error"]["code"] == "E102"


def test_bad_option_value_is_e101(parhelia_env):
    assert_coded_error(parhelia_env.run("budget", "set", "lots"), "E101", "amount")
    assert_coded_error(parhelia_env.run("budget", "set", "--", "-5"), "E101", "out of range")
    assert_coded_error(parhelia_env.run("events", "list", "--level", "loud"), "E101", "loud")
    assert_coded_error(parhelia_env.run("events", "list", "--since", "yesterday"), "E101")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("[reconciler]\ninterval_seconds = 5\ninterval_secs = 5\n", 3, "interval_secs"),
        ("backend = 'local'\n[budget\nceiling_usd = 5\n", 2, ""),
        ("[reconciler]\ninterval_seconds = 'often'\n", 2, "interval_seconds"),
    ],
)
def test_malformed_project_file_is_e103_naming_file_and_line(parhelia_env, text, line, needle):
    path = parhelia_env.project / "parhelia.toml"
    path.write_text(text)
    r = parhelia_env.run("containers", "list")
    assert_coded_error(r, "E103", f"{path}:{line}", needle)


def test_an_unexpected_exception_is_e900_not_a_traceback(parhelia_env, monkeypatch):
    from parhelia.state import view_reads

    def boom(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(view_reads, "task_dicts", boom)
    r = parhelia_env.run("task", "list")
    assert_coded_error(r, "E900", "RuntimeError: disk on fire", "PARHELIA_DEBUG=1")


def test_terminate_without_yes_and_without_a_tty_refuses(parhelia_env):
    env = parhelia_env
    created = create_task(env)
    r = env.run("containers", "terminate", created["container_id"])
    assert_coded_error(
        r, "E102", "--yes", f"parhelia containers terminate {created['container_id']} --yes"
    )
    assert running_sandbox(env, created["container_id"]).running  # untouched
    r = env.run("containers", "terminate", created["container_id"], "--json")
    assert json.loads(r.out)["error"]["code"] == "E102"
    assert env.ok("containers", "show", created["container_id"])["container"]["state"] == "running"


# -- recovery commands that exist --------------------------------------------------------------


def test_the_checker_rejects_commands_that_do_not_exist():
    root = command_check.root_command()
    assert command_check.problem("parhelia containers list --all", root) is None
    assert command_check.problem("PARHELIA_BACKEND=local parhelia task create PROMPT", root) is None
    assert command_check.problem("parhelia --db sqlite:///x.db db status", root) is None
    assert "no command 'lst'" in command_check.problem("parhelia containers lst", root)
    assert "no option --force" in command_check.problem("parhelia cleanup --force", root)
    assert "at most 1" in command_check.problem("parhelia task show A B", root)
    assert "no command 'sesion'" in command_check.problem("parhelia sesion list", root)
    assert command_check.problem("parhelia session attach ID", root) is None  # issue 19


def test_every_catalogue_recovery_command_exists():
    from parhelia.app.help_texts import TOPICS

    root = command_check.root_command()
    problems = []
    for code, entry in CATALOGUE.items():
        assert entry.topic in TOPICS, f"{code}: no help topic {entry.topic!r}"
        assert len(entry.recovery) >= 2, code
        for command in entry.recovery:
            is_ours = command.startswith("parhelia ") or " parhelia " in command
            if is_ours and (p := command_check.problem(command, root)) is not None:
                problems.append(f"{code}: {p}")
    assert problems == []


def test_every_command_shown_in_help_and_examples_exists():
    from parhelia.app.help_texts import EXAMPLES, TOPICS

    root = command_check.root_command()
    shown = [
        c
        for text in [*TOPICS.values(), *EXAMPLES.values()]
        for c in command_check.commands_in_text(text)
    ]
    assert len(shown) > 20
    assert [p for c in shown if (p := command_check.problem(c, root))] == []


def test_every_parhelia_command_suggested_in_the_source_exists():
    """Suggestions in ParheliaErrors, next actions and messages anywhere in app/, state/, workers/."""
    root = command_check.root_command()
    found, problems = 0, []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, command in command_check.suggested_commands(path):
                found += 1
                if (p := command_check.problem(command, root)) is not None:
                    problems.append(f"{path.relative_to(REPO)}:{line}: {p}")
    assert found > 100
    assert problems == []


# -- help -----------------------------------------------------------------------------------


def test_help_for_every_error_code(parhelia_env):
    for code, entry in CATALOGUE.items():
        r = parhelia_env.run("help", code.lower())
        assert r.code == 0, r.err
        assert r.out.startswith(f"{code}: {entry.title}\n")
        for command in entry.recovery:
            assert f"  {command}\n" in r.out
        assert f"See also: parhelia help {entry.topic}" in r.out
        data = parhelia_env.ok("help", code)
        assert (data["code"], data["recovery"]) == (code, list(entry.recovery))


def test_help_topics_and_examples(parhelia_env):
    from parhelia.app.help_texts import EXAMPLES, TOPICS

    r = parhelia_env.run("help", "tasks")
    assert (r.code, r.out) == (0, TOPICS["tasks"] + "\n")
    r = parhelia_env.run("help")
    assert "Topics: workflow, tasks" in r.out
    r = parhelia_env.run("examples", "gpu")
    assert (r.code, r.out) == (0, EXAMPLES["gpu"] + "\n")
    assert "--gpu A10G" in r.out
    assert_coded_error(parhelia_env.run("help", "taks"), "E101", "parhelia help tasks")
    assert_coded_error(parhelia_env.run("examples", "gpus"), "E101", "parhelia examples gpu")


def test_config_show_lists_every_setting_with_its_source(parhelia_env, monkeypatch):
    from parhelia.app.config import schema

    (parhelia_env.project / "parhelia.toml").write_text("[reconciler]\ninterval_seconds = 15\n")
    monkeypatch.setenv("PARHELIA_BUDGET_CEILING_USD", "75")
    rows = {r["name"]: r for r in parhelia_env.ok("--backend", "local", "config", "show")}
    assert set(rows) == set(schema()) | {"control_plane_id"}  # the store's id, not a setting
    assert rows["reconciler.interval_seconds"]["value"] == "15.0"
    assert (
        str(parhelia_env.project / "parhelia.toml") in rows["reconciler.interval_seconds"]["source"]
    )
    assert rows["budget.ceiling_usd"]["source"] == "env PARHELIA_BUDGET_CEILING_USD"
    assert rows["backend"]["source"].startswith("flag --backend")
    assert rows["heartbeat.interval_seconds"]["source"] == "default"
    text = parhelia_env.run("config", "show").out
    assert text.splitlines()[0].split() == ["SETTING", "VALUE", "SOURCE"]
    assert "env PARHELIA_BUDGET_CEILING_USD" in text


# -- entry points and import weight -------------------------------------------------------------


HEAVY = "{'textual', 'modal', 'sqlmodel', 'mcp', 'sqlalchemy', 'alembic'}"


@pytest.mark.parametrize("argv", [["--help"], ["help", "E200"], ["examples", "gpu"]])
def test_help_paths_do_not_import_the_heavy_packages(argv):
    code = (
        f"import sys; from parhelia.app.cli import main; rc = main({argv!r}); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY})); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_console_script_and_python_dash_m(parhelia_env):
    script = Path(sys.executable).with_name("parhelia")
    for argv in ([str(script)], [sys.executable, "-m", "parhelia.app"]):
        proc = subprocess.run(
            [*argv, "help", "E204", "--json"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["data"]["code"] == "E204"
        proc = subprocess.run(
            [*argv, "containers", "show", "c-nope"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("Error E204: Container not found")
        assert "Traceback" not in proc.stderr
        proc = subprocess.run([*argv, "contaners"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert "Error E104" in proc.stderr and "parhelia containers" in proc.stderr
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage: parhelia" in proc.stdout  # no args: help


# -- containers on real local processes -------------------------------------------------------


def test_container_lifecycle_on_a_real_local_process(parhelia_env):
    env = parhelia_env
    assert env.ok("containers", "list") == []
    assert "No containers." in env.run("containers", "list").out

    created = create_task(
        env, "fix the flaky test", "--cpu", "2", "--memory", "4096", "--timeout", "5"
    )
    cid, sid = created["container_id"], created["sandbox_id"]
    info = running_sandbox(env, cid)
    assert info.sandbox_id == sid and info.running
    assert info.tags == {
        "parhelia": "1",
        "parhelia_container": cid,
        "parhelia_task": created["task_id"],
        "parhelia_plane": env.store().plane_id,
    }

    (row,) = env.ok("containers", "list")
    assert (row["id"], row["sandbox_id"], row["state"], row["backend"]) == (
        cid,
        sid,
        "running",
        "local",
    )
    assert row["cpu_cores"] == 2 and row["memory_mib"] == 4096
    text = env.run("containers", "list").out
    assert text.splitlines()[0].split() == [
        "ID",
        "SANDBOX",
        "STATE",
        "HEALTH",
        "TASK",
        "AGE",
        "COST",
    ]
    assert f"{cid}  {sid}  running" in text
    assert "Total: 1 container | Running: 1" in text

    detail = env.ok("containers", "show", cid)
    assert detail["container"]["sandbox_id"] == sid
    assert detail["task_status"] == "running"
    shown = env.run("containers", "show", cid[:6]).out  # a prefix is enough
    assert f"sandbox {sid}" in shown and "State       running" in shown

    entry = env.backend()._load(sid)
    tree = [psutil.Process(entry.pid), *psutil.Process(entry.pid).children(recursive=True)]
    assert any("time.sleep(120)" in " ".join(p.cmdline()) for p in tree)  # the real agent

    (done,) = env.ok("containers", "terminate", cid, "--yes", "--reason", "test")
    # once in a CI run this read 137 (not reproduced in 72 runs under load): what the sandbox
    # printed, and its exit file, say which process ended how if it comes back
    shown = Path(entry.log).read_text(errors="replace")[-2000:]
    exit_file = env.backend()._exit_path(sid)
    assert (done["state"], done["exit_code"], done["termination_reason"]) == (
        "terminated",
        143,
        "test",
    ), (
        f"agent.log ends:\n{shown}\nexit file: {exit_file.read_text() if exit_file.exists() else '-'}"
    )
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []
    assert not running_sandbox(env, cid).running
    events = env.ok("containers", "events", cid)
    assert [e["type"] for e in events] == [
        "container.created",
        "container.state",
        "container.state",
    ]
    assert events[-1]["actor"] == "user" and events[-1]["new_value"] == "terminated"
    assert env.ok("task", "show", created["task_id"])["task"]["status"] == "cancelled"
    # terminate is idempotent
    (again,) = env.ok("containers", "terminate", cid, "--yes")
    assert again["state"] == "terminated"


def test_tasks_list_show_cancel_retry(parhelia_env):
    env = parhelia_env
    assert env.ok("task", "list") == []
    first = create_task(env, "first job")
    tid = first["task_id"]
    listed = env.ok("task", "list")
    assert [t["id"] for t in listed] == [tid]
    assert listed[0]["status"] == "running"
    shown = env.ok("task", "show", tid)
    assert [c["id"] for c in shown["containers"]] == [first["container_id"]]
    assert {e["type"] for e in shown["events"]} >= {"task.created", "container.created"}

    cancelled = env.ok("task", "cancel", tid, "--yes")
    assert cancelled == {"task_id": tid, "terminated": [first["container_id"]]}
    assert not running_sandbox(env, first["container_id"]).running
    assert env.ok("task", "show", tid)["task"]["status"] == "cancelled"

    retried = env.ok("task", "retry", tid)
    new = env.ok("task", "show", retried["task_id"])["task"]
    assert (new["retry_of"], new["attempt"], new["prompt"], new["status"]) == (
        tid,
        2,
        "first job",
        "running",
    )
    assert running_sandbox(env, retried["container_id"]).running
    assert [t["id"] for t in env.ok("task", "list", "--status", "cancelled")] == [tid]
    assert_coded_error(env.run("task", "show", "t-nope"), "E201")


def test_events_list_filters(parhelia_env):
    env = parhelia_env
    a = create_task(env, "job a")
    b = create_task(env, "job b")
    env.ok("containers", "terminate", a["container_id"], "--yes")
    by_container = env.ok("events", "list", "--container", a["container_id"])
    assert {e["container_id"] for e in by_container} == {a["container_id"]}
    assert [e["type"] for e in by_container][-1] == "container.state"
    by_task = env.ok("events", "list", "--task", b["task_id"])
    assert {e["task_id"] for e in by_task} == {b["task_id"]}
    assert {e["type"] for e in env.ok("events", "list", "--events", "task.created")} == {
        "task.created"
    }
    assert len(env.ok("events", "list", "--events", "task.created,container.created")) == 4
    assert env.ok("events", "list", "--level", "warning") == []
    assert len(env.ok("events", "list", "-n", "2")) == 2
    everything = env.ok("events", "list")
    cut = everything[-1]["ts"]
    assert env.ok("events", "list", "--since", cut)[0]["ts"] >= cut
    assert env.ok("events", "list", "--until", "2000-01-01T00:00") == []
    lines = env.run("events", "export").out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e["id"] for e in everything]


def test_budget_show_set_history(parhelia_env):
    env = parhelia_env
    before = env.ok("budget", "show")
    assert before["ceiling_usd"] == 25.0 and before["spent_usd"] == 0
    assert env.ok("budget", "set", "42.5") == {"ceiling_usd": 42.5, "previous_usd": 25.0}
    assert env.ok("budget", "show")["ceiling_usd"] == 42.5  # persisted in the store
    assert env.store().get_setting("budget.ceiling_usd") == 42.5
    (event,) = env.ok("budget", "history")["events"]
    assert (event["type"], event["actor"], event["old_value"], event["new_value"]) == (
        "budget.ceiling",
        "user",
        "25.00",
        "42.50",
    )
    assert env.ok("events", "list", "--events", "budget.ceiling")[0]["id"] == event["id"]
    create_task(env, "costs money", "--cpu", "4")
    show = env.ok("budget", "show")
    assert show["burn_rate_per_hour"] > 0.5
    assert "Spent" in env.run("budget", "show").out


def test_reconciler_status_and_run(parhelia_env):
    env = parhelia_env
    status = env.ok("reconciler", "status")
    assert status["running"] is False and status["last_run_at"] is None
    created = create_task(env)
    report = env.ok("reconciler", "run")
    assert report["acted"] is True and report["listed"] == 1 and report["known"] == 1
    status = env.ok("reconciler", "status")
    assert status["last_run_at"] is not None
    assert status["last_counts"]["listed"] == 1
    assert status["running"] is False  # a one-off cycle does not leave a lease behind
    assert env.store().get_lease() is None
    # a sandbox that ended on its own is noticed
    env.backend().terminate(created["sandbox_id"])
    env.ok("reconciler", "run")
    assert env.ok("containers", "show", created["container_id"])["container"]["state"] in (
        "stopped",
        "terminated",
    )


def test_orphans_health_and_cleanup_on_real_processes(parhelia_env, monkeypatch):
    from parhelia.workers.backends.base import SandboxSpec

    env = parhelia_env
    monkeypatch.setenv("PARHELIA_RECONCILER_ORPHAN_GRACE_SECONDS", "0")
    known = create_task(env, "recorded")
    stray = env.backend().create(
        SandboxSpec(
            container_id="c-0000ab1e",
            task_id=None,
            argv=[sys.executable, "-c", "import time; time.sleep(120)"],
            plane_id=env.store().plane_id,
        )
    )
    assert env.ok("containers", "orphans") == []
    report = env.ok("reconciler", "run")
    assert report["orphans"] == 1
    (orphan,) = env.ok("containers", "orphans")
    assert (orphan["sandbox_id"], orphan["state"]) == (stray.sandbox_id, "orphaned")
    text = env.run("containers", "orphans").out
    assert text.rstrip().endswith("Clean up with: parhelia cleanup --orphans")
    health = env.ok("containers", "health")
    assert set(health) == {"healthy", "degraded", "unhealthy", "dead", "unknown"}
    ids = [i for h in health.values() for i in h["ids"]]
    assert sorted(ids) == sorted([known["container_id"], orphan["id"]])

    assert_coded_error(env.run("cleanup"), "E102", "--orphans")
    assert_coded_error(env.run("cleanup", "--orphans"), "E102", "--yes")
    assert running_sandbox(env, "c-0000ab1e").running
    (done,) = env.ok("cleanup", "--orphans", "--yes")
    assert (done["id"], done["state"], done["termination_reason"]) == (
        orphan["id"],
        "terminated",
        "orphan_cleanup",
    )
    assert not running_sandbox(env, "c-0000ab1e").running
    assert running_sandbox(env, known["container_id"]).running  # the recorded one is untouched
    assert env.ok("cleanup", "--orphans", "--yes") == []


def test_db_status_and_migrate(parhelia_env, tmp_path):
    env = parhelia_env
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    status = env.ok("--db", url, "db", "status")
    assert status["url"] == url and status["revision"] is None and status["up_to_date"] is False
    migrated = env.ok("--db", url, "db", "migrate")
    assert migrated["before"] is None and migrated["after"] == status["head"]
    assert env.ok("--db", url, "db", "status")["up_to_date"] is True
    assert "needs `parhelia db migrate`" not in env.run("--db", url, "db", "status").out


def test_aliases_are_the_same_commands(parhelia_env):
    env = parhelia_env
    created = create_task(env)
    assert env.ok("t", "list") == env.ok("task", "list")
    assert env.ok("e", "ls", "-n", "3") == env.ok("events", "list", "-n", "3")
    assert [c["id"] for c in env.ok("c", "ls")] == [created["container_id"]]
    assert env.ok("b", "show").keys() == env.ok("budget", "show").keys()
    assert env.ok("b", "set", "31")["ceiling_usd"] == env.ok("budget", "show")["ceiling_usd"] == 31
    assert env.ok("r", "status").keys() == env.ok("reconciler", "status").keys()
    assert (
        env.ok("c", "show", created["container_id"])["container"]["id"] == created["container_id"]
    )
    help_text = env.run("--help").out
    assert "containers" in help_text and "\n  c " not in help_text  # aliases stay out of the help


def test_out_of_range_setting_is_e103_naming_setting_source_and_range(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_RECONCILER_INTERVAL_SECONDS", "0")
    r = parhelia_env.run("reconciler", "status")
    assert_coded_error(
        r,
        "E103",
        "PARHELIA_RECONCILER_INTERVAL_SECONDS",
        "[reconciler] interval_seconds",
        "1 to 86400",
    )


def test_a_stored_ceiling_out_of_range_is_e103_and_budget_set_repairs_it(parhelia_env):
    store = parhelia_env.store()
    store.set_setting("budget.ceiling_usd", -5.0)
    store.close()
    assert_coded_error(
        parhelia_env.run("budget", "show"), "E103", "budget.ceiling_usd", "-5 is out of range"
    )
    assert parhelia_env.run("budget", "set", "40").code == 0
    assert parhelia_env.run("budget", "show").code == 0


def test_orphan_rate_from_the_local_record_or_marked_estimated_in_every_view(
    parhelia_env, monkeypatch
):
    from dataclasses import replace

    from parhelia.state.costs import hourly_rate
    from parhelia.workers.backends.base import SandboxSpec

    env = parhelia_env
    monkeypatch.setenv("PARHELIA_RECONCILER_ORPHAN_GRACE_SECONDS", "0")
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    env.backend().create(
        SandboxSpec(container_id="c-0000b160", task_id=None, argv=argv, cpu=4, memory_mib=8192)
    )
    old = env.backend().create(SandboxSpec(container_id="c-000001d0", task_id=None, argv=argv))
    backend = env.backend()  # an entry from before resources were recorded
    backend._save(replace(backend._load(old.sandbox_id), resources=None))
    assert env.ok("reconciler", "run")["orphans"] == 2

    rows = {c["id"]: c for c in env.ok("containers", "orphans")}
    assert (rows["c-0000b160"]["cpu_cores"], rows["c-0000b160"]["memory_mib"]) == (4, 8192)
    assert rows["c-0000b160"]["cost_rate_per_hour"] == pytest.approx(hourly_rate(4, 8192))
    assert rows["c-0000b160"]["rate_estimated"] is False
    assert rows["c-000001d0"]["rate_estimated"] is True
    assert rows["c-000001d0"]["rate_source"].startswith("estimated from [defaults] cpu=1")

    note = "~ rate estimated from [defaults]"
    listing = env.run("containers", "list").out
    assert note in listing
    assert "~$" in next(line for line in listing.splitlines() if line.startswith("c-000001d0"))
    assert "~$" not in next(line for line in listing.splitlines() if line.startswith("c-0000b160"))
    assert note in env.run("containers", "orphans").out
    shown = env.run("containers", "show", "c-000001d0").out
    assert "Cost        ~$" in shown and "(estimated from [defaults] cpu=1" in shown
    assert "estimated" not in env.run("containers", "show", "c-0000b160").out
    once = env.run("tui", "--once")
    assert note in once.out
    assert "~" in next(line for line in once.out.splitlines() if line.startswith("c-000001d0"))
