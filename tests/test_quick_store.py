"""A read command's quick path (`state/quick_store.py`): the view through the bare driver
(`sqlite3`, `psycopg`), never different from the store's, never taken where it could not be, and
without SQLAlchemy. The comparisons run on SQLite and on PostgreSQL (`BOTH_DATABASES`)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from parhelia.state import postgres_catalogue, sqlite_catalogue
from parhelia.state.errors import ParheliaError
from parhelia.state.keys import FOREIGN_PREFIX, IN_GRACE_PREFIX
from parhelia.state.models import Container, ReconcilerRun
from parhelia.state.quick_store import QuickStore
from parhelia.state.store import Store
from parhelia.state.view_queries import CATALOGUED, catalogue_source
from parhelia.state.view_reads import sqlite_text
from tests import dashboard_world as world

NOW = world.NOW
sqlite_only = pytest.mark.sqlite_only


@pytest.mark.parametrize("catalogue", [sqlite_catalogue, postgres_catalogue])
def test_the_catalogue_is_what_the_statements_compile_to(catalogue):
    """A statement changed in `view_queries.py` without `make catalogue` would leave the quick
    path reading what the store no longer does."""
    dialect = "sqlite" if catalogue is sqlite_catalogue else "postgresql"
    assert Path(catalogue.__file__).read_text() == catalogue_source(dialect)
    assert set(catalogue.STATEMENTS) == set(CATALOGUED)


@pytest.fixture
def world_store(store):
    """The dashboard world, plus what else the view reads: reconciler runs (a failing one last),
    the lease, another plane's sandbox, one in its grace, a stored ceiling, an orphan's
    estimated rate and a container that ended past the window."""
    world.seed(store)
    store.add_container(
        Container(
            id="c-0000e001",
            backend="modal",
            sandbox_id="sb-orphan",
            state="orphaned",
            created_at=NOW - timedelta(minutes=20),
            started_at=NOW - timedelta(minutes=20),
            cost_rate_per_hour=0.4,
            meta={"rate_source": "estimated from [defaults]"},
            tags={"parhelia": "1", "x": [1, 2]},
        )
    )
    store.add_container(
        Container(
            id="c-0000e002",
            backend="local",
            state="terminated",
            created_at=NOW - timedelta(hours=5),
            started_at=NOW - timedelta(hours=5),
            terminated_at=NOW - timedelta(hours=3),
            cost_accrued_usd=1.25,
        )
    )
    for minutes, error in ((9, None), (6, "modal: listing timed out"), (3, "again")):
        started = NOW - timedelta(minutes=minutes)
        store.record_run(
            ReconcilerRun(
                started_at=started,
                finished_at=started + timedelta(seconds=2),
                duration_ms=2000.4,
                listed=7,
                orphans=1,
                error=error,
            )
        )
    store.acquire_lease("tests:holder", ttl_seconds=300, now=NOW - timedelta(minutes=1))
    store.set_setting(
        FOREIGN_PREFIX + "modal",
        {"sb-theirs": {"plane": "cp-0000000000000bad", "container": "c-0000f001"}},
        actor="tests",
    )
    store.set_setting(
        IN_GRACE_PREFIX + "modal",
        {"sb-new": (NOW + timedelta(seconds=40)).isoformat()},
        actor="tests",
    )
    store.set_setting("budget.ceiling_usd", 3.5, actor="tests")
    return store


def quick(store: Store) -> QuickStore:
    q = QuickStore.open(store.url)
    assert q is not None
    return q


def test_the_quick_view_is_the_stores_view(world_store):
    q = quick(world_store)
    try:
        for kwargs in (
            {},
            {"event_limit": 3, "recent_hours": 6.0, "reconcile_interval": 30.0},
            {"backend_label": "modal", "now": NOW + timedelta(hours=2)},
        ):
            kwargs = {"now": NOW, **kwargs}
            mine, theirs = q.dashboard(**kwargs), world_store.dashboard(**kwargs)
            assert mine == theirs
        view = q.dashboard(now=NOW)
        # the parts the world gives: none of them empty, so the comparison compared something
        assert view.reconciler.stale_since == NOW - timedelta(minutes=6)
        assert view.reconciler.lease_holder == "tests:holder"
        assert [f.sandbox_id for f in view.foreign] == ["sb-theirs"]
        assert [g.sandbox_id for g in view.in_grace] == ["sb-new"]
        assert view.budget.ceiling_usd == 3.5 and view.budget.trend
        assert {c.id for c in view.containers if c.rate_estimated} == {"c-0000e001"}
        assert view.events and view.plane_id == world.PLANE
    finally:
        q.close()


def test_the_quick_containers_and_settings_are_the_stores(world_store):
    q = quick(world_store)
    try:
        for kwargs in ({}, {"recent_hours": 4.0}, {"limit": 2}, {"recent_hours": 10.0 * 8760}):
            assert q.container_views(now=NOW, **kwargs) == world_store.container_views(
                now=NOW, **kwargs
            )
        assert len(q.container_views(now=NOW, recent_hours=4.0)) > len(q.container_views(now=NOW))
        from parhelia.state.event_log import to_event_view

        for status in (None, "running", "pending"):  # as `Task.model_dump()` gives them
            dumped = [t.model_dump() for t in world_store.list_tasks(status=status, limit=3)]
            assert q.task_dicts(status=status, limit=3) == dumped
            assert world_store.task_dicts(status=status, limit=3) == dumped
        assert q.task_dicts() and json.dumps(q.task_dicts(), default=str)

        for limit in (1, 5, 500):  # as `Store.events` answers, oldest first
            filtered = [to_event_view(e) for e in reversed(world_store.events(limit=limit))]
            assert q.recent_events(limit) == world_store.recent_events(limit) == filtered
        for interval in (30.0, 60.0):
            assert q.reconciler_view(interval, now=NOW) == world_store.reconciler_view(
                interval, now=NOW
            )
        for prefix in ("", "budget.", FOREIGN_PREFIX):
            assert q.settings_with_prefix(prefix) == world_store.settings_with_prefix(prefix)
        # by ids, and any other question: the full store's
        [one] = q.container_views(now=NOW, ids=["c-0000e001"])
        assert one.state == "orphaned"
        assert q.get_container("c-0000e001").sandbox_id == "sb-orphan"
    finally:
        q.close()


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 24, 15, 30, tzinfo=UTC),
        datetime(2026, 11, 24, 15, 30, 1, 250, tzinfo=UTC),
        datetime(2026, 11, 24, 17, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_a_bound_timestamp_is_the_text_the_store_binds(when):
    """The quick path compares stored text with bound text: it must bind what SQLAlchemy binds."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from parhelia.state.models import UTCDateTime

    dialect = sqlite.dialect()
    naive = UTCDateTime().process_bind_param(when, dialect)
    assert sqlite_text(when) == DateTime().dialect_impl(dialect).bind_processor(dialect)(naive)
    with pytest.raises(ValueError):
        sqlite_text(when.replace(tzinfo=None))


def _set_revision(url: str, revision: str) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


@sqlite_only
def test_the_quick_path_is_only_for_a_store_it_can_read_as_the_store_does(store, tmp_path):
    assert QuickStore.open(store.url) is not None
    assert QuickStore.open(f"sqlite:///{tmp_path / 'absent.db'}") is None  # the store creates it
    assert not (tmp_path / "absent.db").exists()
    assert QuickStore.open("sqlite:///:memory:") is None
    assert QuickStore.open("postgresql://u@127.0.0.1:9/x") is None
    (tmp_path / "junk.db").write_text("not a database")
    assert QuickStore.open(f"sqlite:///{tmp_path / 'junk.db'}") is None
    _set_revision(store.url, "0007_older")  # a migration to run: the store's to run
    assert QuickStore.open(store.url) is None


def test_a_failed_quick_read_is_answered_by_the_full_store(world_store):
    q = quick(world_store)
    q._conn.close()  # any sqlite3 error from here on
    try:
        assert q.dashboard(now=NOW) == world_store.dashboard(now=NOW)
        assert q.container_views(now=NOW) == world_store.container_views(now=NOW)
    finally:
        q.close()


@sqlite_only
@pytest.mark.parametrize("statement", list(sqlite_catalogue.STATEMENTS))
def test_every_view_statement_searches_an_index_or_reads_a_small_table(world_store, statement):
    """EXPLAIN QUERY PLAN of each statement of the view: containers, events and heartbeats grow
    with the fleet and its history, and are only ever searched through an index; the last
    reconciler run is read backwards by its id (one row); the settings are a handful of rows."""
    conn = sqlite3.connect(world_store.sqlite_path)
    try:
        plan = " | ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + sqlite_catalogue.STATEMENTS[statement],
                {"cutoff": sqlite_text(NOW), "start": sqlite_text(NOW), "limit": 10, "status": "x"},
            )
        )
    finally:
        conn.close()
    assert not re.search(r"\bSCAN (containers|events|heartbeats\w*)\b(?! USING)", plan), plan
    if "SCAN reconciler_runs" in plan:
        assert statement == "last_run" and "TEMP B-TREE" not in plan, plan
    assert "SCAN settings" not in plan or statement in ("settings", "foreign", "in_grace")


def _imports_after(args: list[str], url: str) -> tuple[int, bool, str]:
    probe = (
        "import sys\n"
        "from parhelia.app.cli import main\n"
        "try:\n"
        f"    code = main({args!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('SQLALCHEMY' if 'sqlalchemy' in sys.modules else 'BARE', code, file=sys.stderr)\n"
    )
    env = {**os.environ, "PARHELIA_DB_URL": url, "MODAL_SERVER_URL": "http://127.0.0.1:9"}
    r = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    word, code = r.stderr.strip().splitlines()[-1].split()
    return int(code), word == "SQLALCHEMY", r.stdout


@sqlite_only
@pytest.mark.parametrize(
    "args",
    [
        ["containers", "list"],
        ["containers", "list", "--all", "--json"],
        ["status", "--no-refresh"],
        ["tui", "--once", "--no-refresh"],
        ["tui", "--once", "--no-refresh", "--format", "json"],
        ["containers", "health"],
        ["containers", "orphans"],
        ["budget", "show"],
        ["reconciler", "status", "--json"],
        ["events", "list"],
        ["events", "list", "-n", "5", "--json"],
        ["task", "list"],
        ["task", "list", "--status", "running", "--json"],
    ],
)
def test_a_read_command_on_sqlite_never_imports_sqlalchemy(world_store, args):
    """`import sqlmodel` alone was most of these commands' time (bench/cli.py)."""
    code, imported, out = _imports_after(args, world_store.url)
    assert not imported
    assert code in (0, 1) and out.strip()  # 1: the world needs attention (an orphan)
    if "--json" in args or "json" in args:
        json.loads(out)


@pytest.mark.parametrize(
    "args",
    [
        ["containers", "list", "--all"],
        ["status", "--no-refresh", "--json"],
        ["reconciler", "status"],
        ["budget", "show", "--json"],
        ["events", "list", "-n", "7"],
        ["task", "list", "--json"],
        # filtered: the quick path hands the question to the full store, with the same answer
        ["events", "list", "--container", "c-0000a003", "--level", "warning", "--json"],
    ],
)
def test_the_quick_output_is_the_full_stores_output(world_store, monkeypatch, capsys, args):
    """The same command off the quick path (`QuickStore.open` declining) prints the same."""
    from parhelia.app.cli import main

    monkeypatch.setenv("PARHELIA_DB_URL", world_store.url)
    monkeypatch.setattr("parhelia.workers.read_plane.utcnow", lambda: NOW + timedelta(hours=1))

    def printed() -> str:
        main(args)
        # less the envelope's own time (how long it took, when it answered)
        return re.sub(r'"(duration_ms|timestamp)": [^,\n]+', "", capsys.readouterr().out)

    quick_out = printed()
    monkeypatch.setattr(QuickStore, "open", classmethod(lambda cls, url, full=None: None))
    full_out = printed()
    assert quick_out and quick_out == full_out


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    "args",
    [
        ["containers", "list", "--all", "--json"],
        ["tui", "--once", "--no-refresh"],
        ["events", "list", "-n", "5"],
        ["task", "list", "--json"],
    ],
)
def test_a_read_command_on_postgresql_never_imports_sqlalchemy(world_store, args):
    """0.6 s of a PostgreSQL `tui --once` at 10,000 containers was SQLAlchemy's and SQLModel's."""
    code, imported, out = _imports_after(args, world_store.url)
    assert not imported
    assert code in (0, 1) and out.strip()
    if "--json" in args:
        json.loads(out)


def _set_pg_revision(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = %(r)s", {"r": revision})


@pytest.mark.postgresql_only
def test_the_quick_path_on_postgresql_is_only_for_a_store_at_its_revision(store):
    q = QuickStore.open(store.url)
    assert q is not None and q.dashboard(now=NOW) == store.dashboard(now=NOW)
    q.close()
    # `postgresql://` is SQLAlchemy's psycopg2: that store's to open, or to say it cannot
    assert QuickStore.open(store.url.replace("+psycopg", "")) is None
    _set_pg_revision(store, "0007_older")  # a migration to run: the store's to run
    assert QuickStore.open(store.url) is None
    _set_pg_revision(store, "9999_from_the_future")  # E700: the store's to say
    assert QuickStore.open(store.url) is None
    code, _imported, _out = _imports_after(["containers", "list"], store.url)
    assert code != 0


@pytest.mark.postgresql_only
def test_an_unreachable_server_is_said_once_as_the_store_says_it(store):
    """Not None (the store would wait out the same connect timeout again): the store's E701."""
    url = "postgresql+psycopg://parhelia@127.0.0.1:9/nowhere"
    with pytest.raises(ParheliaError) as quick_error:
        QuickStore.open(url)
    with pytest.raises(ParheliaError) as full_error:
        Store(url)
    assert quick_error.value.code == full_error.value.code == "E701"
    assert str(quick_error.value) == str(full_error.value)
    assert len(quick_error.value.suggestions) >= 2


@sqlite_only
def test_a_newer_store_is_still_refused_by_a_read_command(world_store):
    _set_revision(world_store.url, "9999_from_the_future")
    code, _imported, _out = _imports_after(["containers", "list"], world_store.url)
    assert code != 0
