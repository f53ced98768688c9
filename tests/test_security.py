"""Security (issue 11): private files, untrusted project files, the agent's environment, masked
passwords and escaped control characters. Real files, real processes, the real CLI in-process."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from parhelia.app.config import load_settings
from parhelia.app.trust import GUARDED, trust_record_path
from parhelia.state.safe_text import escape_controls, mask_password
from parhelia.workers.agent_env import agent_environment
from parhelia.workers.backends.base import SandboxSpec
from parhelia.workers.backends.local import LocalBackend
from tests.test_cli import assert_coded_error
from tests.waiting import poll


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask():
    old = os.umask(0o022)  # what most systems have: new files 0644, directories 0755
    yield
    os.umask(old)


# -- files 0600 in directories 0700 ----------------------------------------------------------


def test_the_default_database_and_its_wal_and_shm_are_private(
    isolated_user_dirs, usual_umask, monkeypatch, tmp_path, capsys
):
    from parhelia.app.cli import main

    monkeypatch.chdir(tmp_path)
    data = isolated_user_dirs / "data_dir"
    assert main(["--backend", "local", "task", "list", "--json"]) == 0
    db = data / "parhelia.db"
    assert mode(data) == 0o700
    files = [db, db.with_name("parhelia.db-wal"), db.with_name("parhelia.db-shm")]
    from parhelia.state.store import Store

    store = Store(f"sqlite:///{db}")  # an open store has its -wal and -shm
    try:
        for f in files:
            assert f.exists() and mode(f) == 0o600, (f, oct(mode(f)))
    finally:
        store.close()


def test_a_new_database_at_a_chosen_path_is_private(tmp_path, usual_umask):
    from parhelia.state.store import Store

    Store(f"sqlite:///{tmp_path / 'team.db'}").close()
    assert mode(tmp_path / "team.db") == 0o600


def test_local_sandboxes_their_logs_and_registry_are_private(tmp_path, usual_umask):
    backend = LocalBackend(tmp_path / "sandboxes", terminate_grace=0.3)
    spec = SandboxSpec(container_id="c-sec", task_id="ta-sec", argv=[sys.executable, "-c", "0"])
    info = backend.create(spec)
    try:
        workdir = backend.root / info.sandbox_id
        for d in (backend.root, backend.registry, workdir):
            assert mode(d) == 0o700, d
        assert mode(workdir / "agent.log") == 0o600
        assert mode(backend.registry / f"{info.sandbox_id}.json") == 0o600
    finally:
        backend.terminate(info.sandbox_id)


def test_the_last_used_cache_is_private(isolated_user_dirs, usual_umask):
    from parhelia.app.preferences import last_used_path, save_last_used

    assert save_last_used({"gpu": "A10G"})
    path = last_used_path()
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


# -- an untrusted project file cannot choose what runs or where data goes --------------------


MARKER_AGENT = (
    f"{shlex.quote(sys.executable)} -c "
    + shlex.quote("import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('ran')")
    + " {marker} {{prompt}}"
)


@pytest.fixture
def cloned_repo(parhelia_env, monkeypatch, tmp_path):
    """The project holds a parhelia.toml as a cloned repository would: it picks the agent."""
    monkeypatch.delenv("PARHELIA_AGENT_COMMAND")
    marker = tmp_path / "ran-the-repo-program"
    toml = parhelia_env.project / "parhelia.toml"
    command = MARKER_AGENT.format(marker=shlex.quote(str(marker)))
    toml.write_text(
        f"[agent]\ncommand = {json.dumps(command)}\n"
        f'[local]\nroot = "/tmp/elsewhere"\n'
        f'[modal]\nimage = "evil/image"\nsecrets = ["prod-db"]\n'
        f"[tui]\nevent_rows = 120\n"
    )
    return parhelia_env, toml, marker


def test_an_untrusted_project_file_cannot_pick_the_program(cloned_repo, monkeypatch):
    env, toml, marker = cloned_repo
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no `claude` here
    r = env.run("task", "create", "hello")
    assert r.code == 1 and "Traceback" not in r.err
    assert "Error E504: Agent command not found: agent program 'claude'" in r.err  # the default
    assert not marker.exists()
    assert f"Warning: {toml}: ignored [agent] command, [local] root" in r.err
    assert f"parhelia config trust {toml}" in r.err


def test_trusting_the_file_lets_it_pick_the_program_until_it_changes(cloned_repo, monkeypatch):
    env, toml, _ = cloned_repo
    monkeypatch.delenv("PARHELIA_LOCAL_ROOT")  # so the file's [local] root shows
    trusted = env.ok("config", "trust")
    assert trusted["path"] == str(toml.resolve())
    assert set(trusted["guarded"]) == {
        "agent.command",
        "local.root",
        "modal.image",
        "modal.secrets",
    }
    record = trust_record_path()
    assert mode(record) == 0o600
    assert json.loads(record.read_text()) == {str(toml.resolve()): trusted["sha256"]}
    settings = load_settings().settings
    assert "ran-the-repo-program" in settings.agent.command
    assert settings.local.root == "/tmp/elsewhere" and settings.modal.secrets == ["prod-db"]

    toml.write_text(toml.read_text() + "# pulled a new commit\n")
    loaded = load_settings()
    assert "ran-the-repo-program" not in loaded.settings.agent.command
    assert "changed since you trusted it" in loaded.warnings[0]

    env.ok("config", "trust", str(toml))
    assert "ran-the-repo-program" in load_settings().settings.agent.command
    assert env.ok("config", "untrust")["was_trusted"] is True
    assert "ran-the-repo-program" not in load_settings().settings.agent.command


def test_a_trusted_file_really_runs_its_program(cloned_repo):
    env, _toml, marker = cloned_repo
    env.ok("config", "trust")
    env.ok("task", "create", "hello")
    assert poll(lambda: marker.exists())


def test_config_show_names_the_ignored_settings_and_the_command(cloned_repo):
    env, toml, _ = cloned_repo
    r = env.run("config", "show")
    assert r.code == 0 and r.err == ""  # listed in the output, not twice
    row = next(line for line in r.out.splitlines() if line.startswith("agent.command"))
    assert "default" in row and f"ignored {toml}:2: untrusted" in row
    assert f"Warning: {toml}: ignored" in r.out
    doc = env.run("config", "show", "--json").json
    assert {
        "command": f"parhelia config trust {toml}",
        "description": "use its ignored settings",
        "priority": "high",
    } in doc["next_actions"]
    rows = {row["name"]: row for row in doc["data"]}
    assert rows["tui.event_rows"]["value"] == "120"  # harmless settings still apply


def test_the_user_file_is_trusted_as_it_is(parhelia_env, monkeypatch):
    from parhelia.app.config import user_config_path

    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[agent]\ncommand = "my-agent {prompt}"\n')
    monkeypatch.delenv("PARHELIA_AGENT_COMMAND")
    loaded = load_settings()
    assert loaded.settings.agent.command == "my-agent {prompt}" and not loaded.warnings


def test_trust_without_a_project_file_is_e101(parhelia_env):
    assert_coded_error(parhelia_env.run("config", "trust"), "E101", "nothing to trust")


def test_guarded_covers_the_program_and_the_data():
    assert {"agent.command", "local.root", "db_url", "modal.secrets", "modal.image"} <= set(GUARDED)


# -- the agent's environment ------------------------------------------------------------------


def test_a_local_agent_gets_an_allowlisted_environment(tmp_path, monkeypatch):
    for name, value in {
        "MODAL_TOKEN_ID": "ak-secret",
        "MODAL_TOKEN_SECRET": "as-secret",
        "PARHELIA_DB_URL": "postgresql://u:pw@127.0.0.1/x",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "ANTHROPIC_API_KEY": "sk-ant",
        "CLAUDE_CODE_USE_BEDROCK": "0",
        "LC_ALL": "C.UTF-8",
        "GITHUB_TOKEN": "gh-token",
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "env.json"
    code = f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"
    backend = LocalBackend(
        tmp_path / "sandboxes", terminate_grace=0.3, agent_env=["GITHUB_*", "MODAL_TOKEN_ID"]
    )
    spec = SandboxSpec(
        container_id="c-env",
        task_id="ta-env",
        argv=[sys.executable, "-c", code],
        env={"PARHELIA_CONTAINER_ID": "c-env", "PARHELIA_TASK_ID": "ta-env"},
    )
    info = backend.create(spec)
    seen = json.loads(poll(lambda: out.exists() and out.read_text()))
    backend.terminate(info.sandbox_id)
    for name in ("PATH", "HOME", "LC_ALL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK"):
        assert name in seen, name
    assert seen["GITHUB_TOKEN"] == "gh-token"  # listed in [agent] env
    assert seen["PARHELIA_CONTAINER_ID"] == "c-env" and seen["PARHELIA_TASK_ID"] == "ta-env"
    for name in (
        "MODAL_TOKEN_ID",
        "MODAL_TOKEN_SECRET",
        "PARHELIA_DB_URL",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert name not in seen, name  # MODAL_TOKEN_ID even though listed


def test_agent_env_setting_reaches_the_backend(parhelia_env, monkeypatch, tmp_path):
    from parhelia.workers.backends import make_backend

    monkeypatch.setenv("PARHELIA_AGENT_ENV", "GITHUB_TOKEN,NPM_*")
    settings = load_settings().settings
    assert settings.agent.env == ["GITHUB_TOKEN", "NPM_*"]
    backend = make_backend("local", settings, tmp_path)
    assert agent_environment({"NPM_TOKEN": "x", "OTHER": "y"}, backend.agent_env) == {
        "NPM_TOKEN": "x"
    }


# -- passwords masked, control characters escaped ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://fleet:hunter2@127.0.0.1/p", "postgresql://fleet:***@127.0.0.1/p"),
        ("postgresql+psycopg://u:p%40ss@db:5432/x", "postgresql+psycopg://u:***@db:5432/x"),
        ("mysql://root:@h/x", "mysql://root:***@h/x"),
        ("sqlite:////tmp/p.db", "sqlite:////tmp/p.db"),
        ("http://host:8080/path", "http://host:8080/path"),
    ],
)
def test_mask_password(url, shown):
    assert mask_password(f"cannot open {url}: refused") == f"cannot open {shown}: refused"


def test_config_show_masks_the_database_password(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_DB_URL", "postgresql://fleet:hunter2@127.0.0.1:1/p")
    text = parhelia_env.run("config", "show")
    doc = parhelia_env.run("config", "show", "--json")
    assert "hunter2" not in text.out + doc.out
    rows = {r["name"]: r for r in doc.json["data"]}
    assert rows["db_url"]["value"] == "postgresql://fleet:***@127.0.0.1:1/p"


HOSTILE = "fix it\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\u202edone"


def test_escape_controls():
    assert escape_controls("a\x1b[2Jb\x07\u202ec\udcff") == "a\\x1b[2Jb\\x07\\u202ec\\xff"
    assert escape_controls("tab\tand\nnewline") == "tab\\tand\\nnewline"
    assert escape_controls("keep\nlines", keep_newlines=True) == "keep\nlines"
    assert escape_controls("plain é ✓ text") == "plain é ✓ text"


def test_printable_text_skips_the_escape_patterns_without_missing_a_character():
    """The fast path (printable text is returned as it is) escapes exactly what the patterns do,
    for every code point of the Basic Multilingual Plane and a few beyond it."""
    from parhelia.state import safe_text

    def by_patterns(text: str) -> str:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
        text = safe_text._CONTROL.sub(lambda m: safe_text._escape(m.group()), text)
        return safe_text._SURROGATE.sub(lambda m: safe_text._escape(m.group()), text)

    for code in [*range(0x10000), 0x1F600, 0xE0001, 0x10FFFF]:
        text = f"a{chr(code)}b"
        assert escape_controls(text) == by_patterns(text), hex(code)


def test_control_characters_in_a_prompt_are_shown_escaped(parhelia_env):
    env = parhelia_env
    created = env.ok("task", "create", HOSTILE)
    for argv in (
        ["task", "list"],
        ["task", "show", created["task_id"]],
        ["containers", "list"],
        ["events", "list"],
        ["tui", "--once", "--no-refresh", "--format", "text"],
    ):
        r = env.run(*argv)
        assert "\x1b" not in r.out and "\x07" not in r.out and "\u202e" not in r.out, argv
        assert "\x1b" not in r.err, argv
    assert "\\x1b]52" in env.run("task", "show", created["task_id"]).out
    assert (
        env.ok("task", "show", created["task_id"])["task"]["prompt"] == HOSTILE
    )  # --json keeps the exact text (JSON escapes it)
