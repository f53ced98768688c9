"""Start-up (issue 16): a read command imports what it needs. `parhelia containers list` (or
`c ls`) builds the containers commands alone, not every other noun's; the figures are in
bench/cli.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from parhelia.app.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.startswith("parhelia.app.cli_"))
print(json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize("args", [["containers", "list"], ["c", "ls"], ["task", "list"]])
def test_a_noun_command_loads_no_other_noun(parhelia_env, args):
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=parhelia_env.env,
        timeout=120,
    )
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0, r.stderr
    others = {"parhelia.app.cli_budget", "parhelia.app.cli_events", "parhelia.app.cli_tui"}
    assert others.isdisjoint(probe["loaded"]), probe["loaded"]
    assert "No containers" in r.stdout or "No tasks" in r.stdout


# What a read command must not import, with why it used to (bench/cli.py has the figures).
POSTGRES = "sqlalchemy.dialects.postgresql"  # JSONB for the JSON columns, on every database
RICH = ("rich.console", "rich.text")  # the formatter's styled text; `tui --once`'s layout
PSUTIL = "psutil"  # the lease holder's process, asked about only when there is one
TEXTUAL = "textual"
OTHER_COMMANDS = ("parhelia.app.cli_budget", "parhelia.app.cli_events", "parhelia.app.cli_tasks")

MODULES_PROBE = """
import json, sys
from parhelia.app.cli import main
code = main(sys.argv[1:])
from sqlmodel import SQLModel
built = [m.class_.__name__ for m in SQLModel._sa_registry.mappers if m.class_.__pydantic_complete__]
print(json.dumps({"code": code, "loaded": sorted(sys.modules), "built": built}))
"""


def loaded_after(env, args: list[str]) -> tuple[set[str], list[str]]:
    """The modules `parhelia ARGS` imported, and the tables whose Pydantic schema it built."""
    r = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    assert probe["code"] in (0, 1), r.stderr  # 1: the verdict says "look", still an answer
    return set(probe["loaded"]), probe["built"]


def read(args: list[str], *absent: str):
    return pytest.param(args, absent, id=" ".join(args))


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        read(["status"], POSTGRES, *RICH, TEXTUAL, *OTHER_COMMANDS),
        read(["status", "--json"], POSTGRES, *RICH, TEXTUAL, *OTHER_COMMANDS),
        read(["status", "--no-refresh"], POSTGRES, *RICH, PSUTIL, TEXTUAL, *OTHER_COMMANDS),
        read(["containers", "list"], POSTGRES, *RICH, PSUTIL, TEXTUAL),
        read(["tui", "--once", "--no-refresh"], POSTGRES, PSUTIL, TEXTUAL, *OTHER_COMMANDS),
    ],
)
def test_a_read_command_on_sqlite_imports_only_what_it_uses(parhelia_env, args, absent):
    parhelia_env.store().close()  # migrated already: a first open runs Alembic, which loads them all
    loaded, built = loaded_after(parhelia_env.env, args)
    assert "sqlmodel" in loaded  # the probe ran the command against the store
    assert not loaded & set(absent), sorted(loaded & set(absent))
    assert built == []  # rows are read without validating: no table's schema is built


def test_the_json_columns_are_jsonb_on_postgresql_without_importing_it_on_sqlite():
    """The lazy JSON type still compiles to JSONB for PostgreSQL (tests/test_postgres.py checks a
    real server's columns) and to JSON for SQLite."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateTable

    from parhelia.state.models import Container

    pg = str(CreateTable(Container.__table__).compile(dialect=postgresql.dialect()))
    lite = str(CreateTable(Container.__table__).compile(dialect=sqlite.dialect()))
    assert "tags JSONB NOT NULL" in pg and "metadata JSONB NOT NULL" in pg
    assert "tags JSON NOT NULL" in lite and "metadata JSON NOT NULL" in lite


def add_running(env, backend: str, n: int = 3) -> None:
    """`n` running containers of this plane on `backend` (c-00000000, c-00000001, ...)."""
    from parhelia.state.models import Container

    store = env.store()
    plane = store.plane_id
    for i in range(n):
        cid = f"c-{i:08x}"
        tags = {"parhelia": "1", "parhelia_container": cid, "parhelia_plane": plane}
        store.add_container(
            Container(id=cid, backend=backend, sandbox_id=f"sb-{i}", state="running", tags=tags)
        )
    store.close()


def test_only_commands_that_show_attention_read_the_agents_sessions(parhelia_env, monkeypatch):
    """`containers list` (and health, orphans, budget) show no attention list, so they skip the
    look at every local agent's tmux session; `status` and `tui --once` still take it."""
    from parhelia.workers import sessions

    add_running(parhelia_env, "local")
    reads = []
    monkeypatch.setattr(
        sessions.SessionService, "activities", lambda self, *a: reads.append(1) or {}
    )
    for args in (
        ["containers", "list"],
        ["containers", "health"],
        ["containers", "orphans"],
        ["budget", "show"],
    ):
        r = parhelia_env.run(*args)
        assert r.code == 0, (args, r.err)
    assert "c-00000002" in parhelia_env.run("containers", "list").out
    assert reads == []
    assert parhelia_env.run("status", "--no-refresh").code in (0, 1)
    assert reads == [1]


@pytest.mark.parametrize("args", [["status", "--no-refresh"], ["tui", "--once", "--no-refresh"]])
def test_a_one_shot_view_without_refresh_asks_no_backend(parhelia_env, args):
    """`--no-refresh` answers from the store and this machine: a Modal fleet's agents are not
    read (that loaded the Modal SDK, a third of a second, then waited on the network)."""
    add_running(parhelia_env, "modal")
    loaded, _ = loaded_after(parhelia_env.env, args)
    assert "modal" not in loaded
    assert "parhelia.workers.modal_sessions" not in loaded


# What only acting on a sandbox needs: the backends' classes and the local backend's process and
# checkpoint machinery, the dispatcher's agent command, the budget guard's actions.
BACKENDS = (
    "parhelia.workers.backends.base",
    "parhelia.workers.backends.local",
    "parhelia.workers.checkpoint_archive",
    "parhelia.state.checkpoints",
    "parhelia.workers.agent_command",
)


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        # the rows alone: no budget, no spend trend, no other noun's commands (`task watch`)
        read(
            ["containers", "list"],
            *BACKENDS,
            PSUTIL,
            "parhelia.workers.budget_guard",
            "parhelia.app.cli_tasks",
        ),
        # the local agents' tmux sessions are found by path, without building the local backend
        read(["status", "--no-refresh"], *BACKENDS, PSUTIL),
        read(["tui", "--once", "--no-refresh"], *BACKENDS, PSUTIL),
    ],
)
def test_a_read_command_over_local_agents_builds_no_backend(parhelia_env, args, absent):
    add_running(parhelia_env, "local")
    loaded, _ = loaded_after(parhelia_env.env, args)
    assert "parhelia.state.views" in loaded  # the probe read the containers
    assert not loaded & set(absent), sorted(loaded & set(absent))


def test_the_agents_local_root_is_the_local_backends(parhelia_env):
    """`ControlPlane.local_root` (where a read of the agents looks for their tmux sockets) is the
    directory the local backend, once built, keeps its sandboxes in."""
    control = parhelia_env.control()
    unbuilt = control.local_root()
    assert unbuilt == control.backend_for("local").root
    assert control.local_root() == unbuilt
