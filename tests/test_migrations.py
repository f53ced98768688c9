"""Alembic migrations: shipped inside the package, run on first open, equal to the models, and a
database from a newer Parhelia refused (E700) without a byte of it changed."""

from __future__ import annotations

import gc
import hashlib
import importlib.resources
import sqlite3
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
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


def test_store_upgrades_itself_on_first_open(tmp_path):
    path = tmp_path / "fresh" / "p.db"  # parent made on demand
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
