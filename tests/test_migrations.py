"""Alembic migrations: shipped inside the package, run on first open, equal to the models, and a
database from a newer Parhelia refused (E700) without a byte of it changed."""

from __future__ import annotations

import gc
import hashlib
import importlib.resources
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect
from sqlmodel import SQLModel

import parhelia.state
from parhelia.state import db
from parhelia.state.errors import ParheliaError
from parhelia.state.models import Container
from parhelia.state.store import Store


def script_directory() -> ScriptDirectory:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def test_migrations_ship_inside_the_package():
    pkg = importlib.resources.files("parhelia.state.migrations")
    assert pkg.joinpath("env.py").is_file()
    assert pkg.joinpath("script.py.mako").is_file()
    versions = [p.name for p in pkg.joinpath("versions").iterdir() if p.name.endswith(".py")]
    assert "0001_initial.py" in versions
    assert Path(parhelia.state.__file__).parent / "migrations" == db.MIGRATIONS
    # and a wheel carries them: both packages listed, the template as package data
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    tool = pyproject["tool"]["setuptools"]
    assert {"parhelia.state.migrations", "parhelia.state.migrations.versions"} <= set(
        tool["packages"]
    )
    assert "*.mako" in tool["package-data"]["parhelia.state.migrations"]


def test_head_revision_is_alembic_head():
    script = script_directory()
    assert script.get_heads() == [db.HEAD_REVISION]
    assert db.known_revisions()[0] == db.HEAD_REVISION


def test_a_database_in_a_missing_directory_is_refused_not_created(tmp_path):
    """A mistyped --db must not open a fresh, empty database that reports "all well"."""
    url = f"sqlite:///{tmp_path / 'typo' / 'p.db'}"
    with pytest.raises(ParheliaError) as err:
        Store(url)
    assert err.value.code == "E701" and "does not exist" in err.value.message
    assert any(s.startswith("mkdir -p") for s in err.value.suggestions)
    assert not (tmp_path / "typo").exists()


def test_store_upgrades_itself_on_first_open(tmp_path):
    path = tmp_path / "p.db"
    store = Store(f"sqlite:///{path}")
    try:
        assert db.current_revision(store.engine) == db.HEAD_REVISION
        assert "containers" in inspect(store.engine).get_table_names()
    finally:
        store.close()
    again = Store(f"sqlite:///{path}")  # second open: nothing to do, data intact
    try:
        assert db.migrate(again._write_engine) == (db.HEAD_REVISION, db.HEAD_REVISION)
    finally:
        again.close()


def test_migrated_schema_equals_the_models(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, SQLModel.metadata) == []
    finally:
        store.close()


def upgrade_to(engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(db._alembic_config(conn), revision)


def test_upgrade_from_0001_backfills_each_containers_latest_sample(tmp_path):
    """0002 moves the dashboard's latest heartbeat onto the container row: a database with
    heartbeats from 0001 gets each container's newest sample (by ts, the newest row on a tie)."""
    path = tmp_path / "old.db"
    store = Store(f"sqlite:///{path}", migrate=False)
    try:
        upgrade_to(store._write_engine, "0001_initial")
        assert db.current_revision(store.engine) == "0001_initial"
    finally:
        store.close()
    raw = sqlite3.connect(path)
    cols = "id, backend, state, health, created_at, missed_heartbeats, cpu_cores, memory_mib"
    cols += ", cost_rate_per_hour, cost_accrued_usd, tags, metadata, updated_at"
    for cid in ("c-00000001", "c-00000002", "c-00000003"):
        raw.execute(
            f"INSERT INTO containers ({cols}) VALUES "
            "(?, 'modal', 'running', 'healthy', '2026-03-10 11:00:00.000000', 0, 1, 2048,"
            " 0, 0, '{}', '{}', '2026-03-10 11:00:00.000000')",
            (cid,),
        )
    raw.executemany(
        "INSERT INTO heartbeats (container_id, ts, cpu_percent, memory_mib, memory_percent,"
        " agent_alive) VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("c-00000001", "2026-03-10 12:01:00.000000", 2.0, 200.0, 20.0, 0),
            ("c-00000001", "2026-03-10 12:00:00.000000", 1.0, 100.0, 10.0, 1),
            ("c-00000002", "2026-03-10 12:00:00.000000", 5.0, 500.0, 50.0, 1),
            ("c-00000002", "2026-03-10 12:00:00.000000", 6.0, 600.0, 60.0, 1),
        ],
    )
    raw.commit()
    raw.close()

    store = Store(f"sqlite:///{path}")  # upgrades to head on open
    try:
        assert db.current_revision(store.engine) == db.HEAD_REVISION
        got = {
            c.id: (c.last_cpu_percent, c.last_memory_mib, c.last_memory_percent, c.last_agent_alive)
            for c in store.containers()
        }
        assert got == {
            "c-00000001": (2.0, 200.0, 20.0, False),
            "c-00000002": (6.0, 600.0, 60.0, True),
            "c-00000003": (None, None, None, None),
        }
        at = store.get_container("c-00000001").last_sample_at
        assert at.isoformat() == "2026-03-10T12:01:00+00:00"
        views = {v.id: v for v in store.container_views(now=at)}
        assert views["c-00000001"].cpu_percent == 2.0
        assert views["c-00000001"].agent_alive is False
        assert views["c-00000003"].cpu_percent is None
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("containers")}
        assert "ix_containers_last_sample" not in indexes  # 0002 made it, 0003 dropped it
        assert "ix_containers_last_heartbeat" not in indexes
    finally:
        store.close()


def test_0003_drops_the_last_sample_index_and_downgrades(tmp_path):
    """0003 drops `ix_containers_last_sample` (each heartbeat cycle rewrote it); prune still
    clears a pruned sample without it, and a downgrade to 0002 restores it."""
    from alembic import command

    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("containers")}
        assert "ix_containers_last_sample" not in indexes
        store.add_container(Container(id="c-00000001", backend="modal"))
        at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        store.record_heartbeats([{"container_id": "c-00000001", "ts": at, "cpu_percent": 3.0}])
        assert store.get_container("c-00000001").last_cpu_percent == 3.0
        assert store.prune_heartbeats(at + timedelta(seconds=1)) == 1
        assert store.get_container("c-00000001").last_sample_at is None
        with store._write_engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "0002_container_last_sample")
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("containers")}
        assert "ix_containers_last_sample" in indexes
    finally:
        store.close()


def test_0009_counts_every_container_write_on_sqlite_and_downgrades(tmp_path):
    """0009's triggers move `containers_revision` with each container row inserted, updated or
    deleted, and with nothing else; the row is made by the first container write (a new database
    stays empty for `db copy`); a downgrade to 0008 takes the triggers and the table away."""
    from alembic import command

    store = Store(f"sqlite:///{tmp_path / 'p.db'}")

    def count() -> int | None:
        with store.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT n FROM containers_revision").scalar()

    try:
        assert count() is None
        store.add_container(Container(id="c-00000001", backend="modal"))
        store.add_container(Container(id="c-00000002", backend="modal"))
        assert count() == 2
        store.record_heartbeats([], [{"id": "c-00000001", "missed_heartbeats": 1}])
        assert count() == 3
        store.set_setting("plane-note", "x")
        assert count() == 3
        with store.write() as s:
            s.execute(delete(Container))
        assert count() == 5
        with store._write_engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "0008_heartbeats_staged")
        assert "containers_revision" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert (
                conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").all()
                == []
            )
        store.add_container(Container(id="c-00000003", backend="modal"))  # no trigger left
    finally:
        store.close()


def test_0002_downgrades_to_the_0001_schema(tmp_path):
    from alembic import command

    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        store.add_container(Container(id="c-00000001", backend="modal"))
        with store._write_engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "0001_initial")
        assert db.current_revision(store.engine) == "0001_initial"
        cols = {c["name"] for c in inspect(store.engine).get_columns("containers")}
        assert not {c for c in cols if c.startswith("last_") and c != "last_heartbeat_at"}
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("containers")}
        assert "ix_containers_last_heartbeat" in indexes
        assert "ix_containers_last_sample" not in indexes
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id FROM containers").all() == [("c-00000001",)]
    finally:
        store.close()


def test_without_migrate_nothing_is_created(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}", migrate=False)
    try:
        assert db.current_revision(store.engine) is None
        assert "containers" not in inspect(store.engine).get_table_names()
        before, after = db.migrate(store._write_engine)
        assert (before, after) == (None, db.HEAD_REVISION)
    finally:
        store.close()


def fingerprint(path) -> tuple[str, int, list[str]]:
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime_ns,
        sorted(p.name for p in path.parent.iterdir()),
    )


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_database_from_a_newer_parhelia_is_refused_and_untouched(tmp_path, journal):
    path = tmp_path / "newer.db"
    store = Store(f"sqlite:///{path}")
    store.add_container(Container(id="c-00000001", backend="modal"))
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    raw.commit()
    raw.execute(f"PRAGMA journal_mode={journal}")
    raw.close()
    before = fingerprint(path)

    with pytest.raises(ParheliaError) as err:
        Store(f"sqlite:///{path}")
    gc.collect()  # any connection the failed open left behind is closed now
    assert err.value.code == "E700"
    assert "0099_from_the_future" in err.value.message
    assert len(err.value.suggestions) >= 2
    assert fingerprint(path) == before

    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0099_from_the_future",)
        ]
        assert raw.execute("SELECT id FROM containers").fetchall() == [("c-00000001",)]
    finally:
        raw.close()
