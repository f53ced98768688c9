"""A team on one PostgreSQL database, through real processes: two "engineers" (their own config,
data and cache dirs, their own config file) on one database and one local backend root; `events
watch` and the MCP server live on PostgreSQL; the daemon reconciling there and stopping on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import anyio
import pytest

from parhelia.state.store import Store
from tests import test_mcp
from tests.test_live_cli import Lines, interrupt

DEADLINE = 60.0


class Engineer:
    """One laptop: its own PARHELIA_* dirs and config file; the team's database and backend root."""

    def __init__(self, root, name: str, db_url: str, sandbox_root, base_env: dict[str, str]):
        self.name = name
        self.env = dict(base_env)
        home = root / name
        for var in ("CONFIG_HOME", "DATA_DIR", "CACHE_DIR"):
            (home / var.lower()).mkdir(parents=True)
            self.env[f"PARHELIA_{var}"] = str(home / var.lower())
        # each engineer's own config file; the database comes from it, not from the environment
        self.env.pop("PARHELIA_DB_URL", None)
        (home / "config_home" / "config.toml").write_text(
            f'db_url = "{db_url}"\n[local]\nroot = "{sandbox_root}"\n'
        )
        self.project = home / "project"
        (self.project / ".git").mkdir(parents=True)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "parhelia.app", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.project,
            timeout=DEADLINE,
        )

    def ok(self, *args: str):
        done = self.run(*args, "--json")
        assert done.returncode == 0, (self.name, args, done.stdout, done.stderr)
        doc = json.loads(done.stdout)
        assert doc["success"] is True, doc
        return doc["data"]


@pytest.fixture
def team(parhelia_env, pg_database, tmp_path):
    base = parhelia_env.env
    root = parhelia_env.sandbox_root
    return (
        Engineer(tmp_path, "alice", pg_database, root, base),
        Engineer(tmp_path, "bob", pg_database, root, base),
        pg_database,
    )


def test_two_engineers_see_each_others_containers_and_terminations_and_no_orphans(
    team, parhelia_env
):
    alice, bob, _ = team
    planes = [
        {r["name"]: r["value"] for r in eng.ok("config", "show")}["control_plane_id"]
        for eng in (alice, bob)
    ]
    assert planes[0] == planes[1]  # one store, one plane
    a = alice.ok("task", "create", "alice's agent")
    b = bob.ok("task", "create", "bob's agent")
    for eng in (alice, bob):
        listed = {c["id"]: c["state"] for c in eng.ok("containers", "list")}
        assert listed == {a["container_id"]: "running", b["container_id"]: "running"}, eng.name
        assert eng.ok("containers", "orphans") == [], eng.name
        run = eng.ok("reconciler", "run")
        assert (run["orphans"], run["foreign"]) == (0, 0), (eng.name, run)
    running = {i.sandbox_id for i in parhelia_env.backend().list() if i.running}
    assert {a["sandbox_id"], b["sandbox_id"]} <= running  # neither reconcile touched the other's

    alice.ok("containers", "terminate", b["container_id"], "--yes")
    once = bob.ok("tui", "--once", "--no-refresh")
    states = {c["id"]: c["state"] for c in once["dashboard"]["containers"]}
    assert states[b["container_id"]] == "terminated" and states[a["container_id"]] == "running"
    assert b["sandbox_id"] not in {i.sandbox_id for i in parhelia_env.backend().list() if i.running}
    assert not any("orphan" in str(x).lower() for x in once["dashboard"].get("attention", []))


# -- events watch on PostgreSQL -------------------------------------------------------------------

WATCH = [sys.executable, "-m", "parhelia.app", "events", "watch", "--type", "note"]
WRITER = """
import sys
from parhelia.state.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.add_event("note", f"{sys.argv[2]} {i}")
store.close()
"""


def test_events_watch_on_postgresql_delivers_two_concurrent_writers_completely(pg_env):
    env, url = pg_env
    first = Store(url)
    first.add_event("note", "hello")
    first.close()
    proc = subprocess.Popen(
        [*WATCH, "--from-start", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env.env,
    )
    lines = Lines(proc)
    try:
        assert json.loads(lines.take(1)[0])["message"] == "hello"  # replayed, then following
        n = 150
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(n)], env=env.env)
            for name in ("w1", "w2")
        ]
        for w in writers:
            assert w.wait(timeout=DEADLINE) == 0
        rest = [json.loads(x) for x in lines.take(2 * n)]
    finally:
        code, err = interrupt(proc)
    assert code == 130, err
    messages = [e["message"] for e in rest if e["message"] != "hello"]
    for name in ("w1", "w2"):  # every event once, each writer's in its commit order
        assert [m for m in messages if m.startswith(name)] == [f"{name} {i}" for i in range(n)]
    assert len({e["id"] for e in rest}) == len(rest)


def test_the_tail_delivers_an_event_committed_after_a_later_id(pg):
    """Two writers: the first takes an id, the second takes the next and commits first. The tail
    reads the second, then the first once it commits: nothing missed, nothing twice."""
    from sqlalchemy.orm import Session

    from parhelia.state.models import Event
    from parhelia.workers.event_tail import EventTail

    tail = EventTail(pg)
    with Session(pg.engine) as slow:
        slow.add(Event(type="note", message="slow"))
        slow.flush()  # its id is taken now; the commit comes later
        pg.add_event("note", "fast")
        assert [e.message for e in tail.read()] == ["fast"]
        slow.commit()
    assert [e.message for e in tail.read()] == ["slow"]
    assert tail.read() == []


def test_events_watch_is_woken_by_listen_notify_not_polling(pg):
    import threading

    from parhelia.workers.event_follow import Changes

    changes = Changes(pg, clock=lambda: 1e9)  # long past arming: only a real signal wakes it
    try:
        assert changes.watching
        stop = threading.Event()
        deadline = time.monotonic() + DEADLINE
        woke = False
        while not woke and time.monotonic() < deadline:  # until its LISTEN is armed
            other = Store(pg.url)
            other.add_event("note", "elsewhere")
            other.close()
            woke = changes.wait(stop)
        assert woke
    finally:
        changes.close()


@pytest.fixture
def pg_env(parhelia_env, pg_database, monkeypatch):
    monkeypatch.setenv("PARHELIA_DB_URL", pg_database)
    return parhelia_env, pg_database


# -- the MCP server and the daemon on PostgreSQL --------------------------------------------------


class _PgWorld:
    def __init__(self, env, url: str) -> None:
        self.project = env.project
        self.env = {**os.environ, "PARHELIA_DB_URL": url}
        self.db_url = url


def test_mcp_status_answers_on_postgresql(pg_env):
    env, url = pg_env
    made = env.ok("task", "create", "on postgres")

    async def body():
        async with test_mcp.session(_PgWorld(env, url)) as s:
            status = await test_mcp.call(s, "status")
            ids = [c["id"] for c in status["dashboard"]["containers"]]
            assert ids == [made["container_id"]]

    anyio.run(body)


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
def test_mcp_push_on_postgresql_hears_another_process(pg_env):
    env, url = pg_env
    import mcp.types as types

    async def body():
        arrived = anyio.Event()

        async def on_message(message):
            if isinstance(message, types.ResourceUpdatedNotification):
                arrived.set()

        async with test_mcp.session(_PgWorld(env, url), on_message) as s:
            await s.subscribe_resource("parhelia://events")
            with anyio.fail_after(30):
                while not arrived.is_set():  # until the server's LISTEN is armed
                    await anyio.to_thread.run_sync(lambda: _add_event(url))
                    with anyio.move_on_after(1):
                        await arrived.wait()

    anyio.run(body)


def _add_event(url: str) -> None:
    store = Store(url)
    store.add_event("note", "elsewhere")
    store.close()


def test_daemon_reconciles_on_postgresql_and_stops_on_sigterm(pg_env):
    env, url = pg_env
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "reconciler", "start", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env.env,
    )
    store = Store(url)
    try:
        deadline = time.monotonic() + DEADLINE
        while store.get_lease() is None or not store.runs(limit=1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the daemon never reconciled"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out)["data"]["stopped"] is True
    assert store.get_lease() is None
    store.close()


# -- ingest on PostgreSQL -------------------------------------------------------------------------


def test_ingest_after_a_rolled_back_cycle_still_works(pg):
    """The first cycle fails (a sample of an unknown container) and rolls back, staging table and
    all; the next cycle on the same connection pool goes through whole."""
    from sqlalchemy.exc import IntegrityError

    from tests.test_store import T0, container, sample

    pg.add_container(container("c-00000001", started_at=T0))
    good = {"id": "c-00000001", "last_heartbeat_at": T0, "missed_heartbeats": 0}
    with pytest.raises(IntegrityError):
        pg.record_heartbeats([sample("c-00000002", T0)], [good])
    assert pg.get_container("c-00000001").last_heartbeat_at is None
    pg.record_heartbeats([sample("c-00000001", T0)], [good])
    c = pg.get_container("c-00000001")
    assert c.last_heartbeat_at == T0 and c.last_sample_at == T0
    assert len(pg.heartbeat_history("c-00000001")) == 1


def test_containers_keep_room_for_hot_heartbeat_updates(pg):
    """Migration 0005: each cycle rewrites every running container's row; with half of each page
    free the new version stays on its page (a HOT update, no index touched)."""
    from sqlalchemy import text

    with pg.read() as s:
        options = s.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'containers'"))
    assert "fillfactor=50" in (options or [])


def test_staged_update_works_again_on_a_connection_whose_first_transaction_rolled_back(pg):
    from parhelia.state import pg_ingest
    from parhelia.state.bulk import _bound
    from parhelia.state.models import Container
    from tests.test_store import T0, container

    pg.add_container(container("c-00000001", started_at=T0))
    table = Container.__table__
    types = {"_id": table.c.id.type, "missed_heartbeats": table.c.missed_heartbeats.type}
    columns = {"_id": ["c-00000001"], "missed_heartbeats": [3]}
    set_sql = {"missed_heartbeats": "v.missed_heartbeats"}
    with pg.engine.connect() as conn:
        with conn.begin() as trans:  # the staging table is made here, then rolled back with it
            pg_ingest.update_from_staging(conn, table, columns, types, set_sql, _bound)
            trans.rollback()
        with conn.begin():
            pg_ingest.update_from_staging(conn, table, columns, types, set_sql, _bound)
    assert pg.get_container("c-00000001").missed_heartbeats == 3
