"""Bad input never reaches E900 or a traceback (issue 11): unreadable databases under `db status`
and `db migrate`, damaged SQLite files, absurd numbers, arguments that are not UTF-8, and the two
`--json` paths that used to print the wrong number of documents."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from parhelia.state.errors import CATALOGUE
from tests.test_cli import assert_coded_error, assert_envelope

REPO = Path(__file__).resolve().parents[1]

# kind -> (URL for a temporary directory, words the message must contain)
BAD_DATABASES = {
    "not-a-database": (lambda t: f"sqlite:///{_text_file(t)}", "is not an SQLite database"),
    "directory": (lambda t: f"sqlite:///{t}", "is a directory"),
    "unwritable": (lambda t: "sqlite:////proc/parhelia.db", "cannot be created or written"),
    "bad-url": (lambda t: "not a database url", "is not a database URL"),
    "unknown-dialect": (lambda t: "nosuchdb://host/x", "is not a database URL"),
    "missing-driver": (
        lambda t: "mysql+mysqldb://user@127.0.0.1:1/x",
        "driver 'MySQLdb' is not installed",
    ),
}


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.db"
    path.write_text("this is not an SQLite database\n" * 200)
    return path


def damaged_database(path: Path) -> str:
    """A real Parhelia database whose pages after the first are garbled (SQLITE_CORRUPT)."""
    from parhelia.state.store import Store

    url = f"sqlite:///{path}"
    Store(url).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(bytes(range(256)) * 64)
    return url


@pytest.mark.parametrize("verb", ["status", "migrate"])
@pytest.mark.parametrize("kind", sorted(BAD_DATABASES))
def test_db_commands_report_an_unusable_database_as_e701(parhelia_env, tmp_path, kind, verb):
    make_url, needle = BAD_DATABASES[kind]
    url = make_url(tmp_path)
    r = parhelia_env.run("--db", url, "db", verb)
    assert_coded_error(r, "E701", needle)
    doc = parhelia_env.run("--db", url, "db", verb, "--json").json
    assert_envelope(doc)
    assert doc["error"]["code"] == "E701" and needle in doc["error"]["message"]


@pytest.mark.parametrize("kind", sorted(BAD_DATABASES))
def test_other_commands_give_the_same_answer_as_db_status(parhelia_env, tmp_path, kind):
    url = BAD_DATABASES[kind][0](tmp_path)
    status = parhelia_env.run("--db", url, "db", "status", "--json").json["error"]
    listing = parhelia_env.run("--db", url, "task", "list", "--json").json["error"]
    assert (status["code"], status["message"]) == (listing["code"], listing["message"])


@pytest.mark.parametrize("argv", [["db", "status"], ["db", "migrate"], ["task", "list"]])
def test_a_damaged_database_is_e703_not_e900_nor_an_empty_one(parhelia_env, tmp_path, argv):
    url = damaged_database(tmp_path / "damaged.db")
    before = (tmp_path / "damaged.db").read_bytes()
    r = parhelia_env.run("--db", url, *argv)
    assert_coded_error(r, "E703", "damaged", ".recover")
    doc = parhelia_env.run("--db", url, *argv, "--json").json
    assert_envelope(doc)
    assert doc["error"]["code"] == "E703"
    assert (tmp_path / "damaged.db").read_bytes() == before  # nothing was written to it


def test_a_database_password_never_shows(parhelia_env):
    url = "postgresql+psycopg2://parhelia:hunter2@127.0.0.1:1/fleet"
    for argv in (["db", "status"], ["task", "list"], ["config", "show"]):
        r = parhelia_env.run("--db", url, *argv)
        j = parhelia_env.run("--db", url, *argv, "--json")
        assert "hunter2" not in r.out + r.err + j.out, argv
        assert "parhelia:***@127.0.0.1" in r.out + r.err, argv


@pytest.mark.parametrize(
    "argv",
    [
        ["task", "list"],
        ["events", "list"],
        ["budget", "history"],
        ["containers", "events", "c-unknown"],
    ],
)
def test_an_absurd_limit_is_e101(parhelia_env, argv):
    r = parhelia_env.run(*argv, "--limit", "99999999999999999999")
    assert_coded_error(r, "E101", "--limit")
    doc = parhelia_env.run(*argv, "--limit", "99999999999999999999", "--json").json
    assert doc["error"]["code"] == "E101"


def test_an_argument_that_is_not_utf8_is_e101(parhelia_env):
    r = parhelia_env.run("task", "create", "fix \udcff\udcfe")
    assert_coded_error(r, "E101", "not valid UTF-8", "\\xff\\xfe")
    doc = parhelia_env.run("task", "create", "fix \udcff", "--json").json
    assert doc["error"]["code"] == "E101"
    assert parhelia_env.ok("task", "list") == []  # nothing was dispatched


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_non_utf8_argv_with_a_strict_utf8_stdout_is_one_answer(parhelia_env, json_flag):
    """The real process: raw bytes in argv, stdout that refuses anything but UTF-8."""
    env = {**parhelia_env.env, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    argv = [sys.executable, "-m", "parhelia.app", *json_flag, "help", b"\xff\xfeE2"]
    p = subprocess.run(
        [os.fsencode(a) for a in argv], capture_output=True, env=env, cwd=parhelia_env.project
    )
    assert p.returncode == 2, p.stderr
    assert b"Traceback" not in p.stderr
    if json_flag:
        doc = json.loads(p.stdout.decode("utf-8"))  # exactly one document, valid UTF-8
        assert doc["error"]["code"] == "E101"
    else:
        assert p.stderr.decode("utf-8").startswith("Error E101: ")


def test_json_before_tui_once_is_honoured(parhelia_env):
    r = parhelia_env.run("--json", "tui", "--once", "--no-refresh")
    doc = json.loads(r.out)  # one JSON document, not the text rendering
    assert doc["success"] is True and "dashboard" in doc["data"]


def test_a_failed_listing_under_reconciler_run_json_is_one_document(parhelia_env, monkeypatch):
    from parhelia.state.errors import ParheliaError
    from parhelia.workers.backends.local import LocalBackend

    def unreachable(self):
        raise ParheliaError("E502", "the backend is down", ["parhelia reconciler status", "x y"])

    monkeypatch.setattr(LocalBackend, "list", unreachable)
    r = parhelia_env.run("reconciler", "run", "--json")
    assert r.code == 1
    doc = json.loads(r.out)  # raises "Extra data" when two documents are printed
    assert_envelope(doc)
    assert doc["error"]["code"] == "E502"


def test_every_new_code_has_help_and_two_recovery_commands():
    for code in ("E701", "E703"):
        entry = CATALOGUE[code]
        assert entry.explanation and len(entry.recovery) >= 2


def test_an_empty_event_level_is_e101_not_an_internal_error(parhelia_env):
    """Found by the CLI fuzz: `--level ''` slipped past the check (empty is falsy) to EventLevel('')."""
    for verb in ("list", "export"):
        r = parhelia_env.run("events", verb, "--level", "")
        assert r.code == 1 and "E101" in r.err and "unknown level ''" in r.err, (verb, r.err)


def test_an_unknown_container_state_is_e101_not_an_empty_list(parhelia_env):
    """`containers list --state runing` said "No containers. Start one ...": a typo read as none."""
    r = parhelia_env.run("containers", "list", "--state", "runing")
    assert r.code == 1 and "E101" in r.err and "unknown state 'runing'" in r.err, r.err
    assert "running" in r.err and "parhelia containers list --all" in r.err
    ok = parhelia_env.run("containers", "list", "--state", "running")
    assert ok.code == 0, ok.err


def test_an_unknown_task_status_is_e101_and_none_matching_says_so(parhelia_env):
    """`task list --status nope` said "No tasks yet. Start one ...": a typo read as no tasks."""
    r = parhelia_env.run("task", "list", "--status", "nope")
    assert r.code == 1 and "E101" in r.err and "unknown status 'nope'" in r.err, r.err
    assert "timed_out" in r.err and "parhelia task list" in r.err
    ok = parhelia_env.run("task", "list", "--status", "failed")
    assert ok.code == 0 and "No tasks with status failed" in ok.out, ok.err
