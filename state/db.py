"""Engines and schema: SQLite tuned for several processes (WAL, busy timeout, BEGIN IMMEDIATE for
writes, foreign keys), and Alembic migrations run on open.

A database written by a newer Parhelia is refused (E700) and left untouched.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from parhelia.state.errors import ParheliaError

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision this Parhelia knows; a test keeps it equal to Alembic's head.
HEAD_REVISION = "0003_drop_last_sample_index"
BUSY_TIMEOUT_MS = 30_000
WAL_AUTOCHECKPOINT_PAGES = 8_000  # about 32 MB of WAL between checkpoints

T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine; for SQLite, `immediate=True` makes every transaction take the write lock up front,
    so two writers queue on the busy timeout instead of failing with "database is locked"."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # A heartbeat cycle dirties about one index page per container; with the default
        # 1,000-page autocheckpoint nearly every cycle paid a checkpoint and its fsyncs.
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def retry_locked(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run `fn`, retrying when SQLite still reports a lock after its busy timeout."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or i == attempts - 1:
                raise ParheliaError(
                    "E701",
                    f"database error: {exc.orig}",
                    ["parhelia db status", "parhelia config show"],
                ) from exc
            time.sleep(0.05 * (2**i))
    raise AssertionError("unreachable")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        has = (
            conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'")
            ).first()
            if engine.dialect.name == "sqlite"
            else None
        )
        if engine.dialect.name == "sqlite" and not has:
            return None
        try:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return None
        return row[0] if row else None


def _alembic_config(conn):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)
    return [s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()]


def _refuse_newer(revision: str | None) -> None:
    if revision is not None and revision != HEAD_REVISION and revision not in known_revisions():
        raise ParheliaError(
            "E700",
            f"the database is at schema revision {revision!r}, newer than this Parhelia knows "
            f"(newest: {HEAD_REVISION!r}); it was left untouched",
            ["pip install -U parhelia", "parhelia --db sqlite:///other.db db status"],
        )


def check_not_newer(url: str) -> None:
    """E700 for an SQLite file from a newer Parhelia, read through a bare connection before any
    engine sets its pragmas (switching a file to WAL would already change its bytes). Not
    `mode=ro`: a read-only connection to a WAL file leaves its -wal and -shm files behind."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()
    if not path.is_file():
        return
    conn = sqlite3.connect(path)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone() if has else None
    except sqlite3.Error:
        return  # not readable as SQLite: the engine reports it properly
    finally:
        conn.close()
    _refuse_newer(row[0] if row else None)


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to head; return (before, after). Refuses (E700) a database from a newer Parhelia."""
    before = current_revision(engine)
    if before == HEAD_REVISION:
        return before, before
    _refuse_newer(before)
    from alembic import command

    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    except ParheliaError:
        raise
    except Exception as exc:
        raise ParheliaError(
            "E702", f"migration failed: {exc}", ["parhelia db status", "parhelia db migrate"]
        ) from exc
    return before, current_revision(engine) or HEAD_REVISION
