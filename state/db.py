"""Engines and schema: SQLite tuned for several processes (WAL, busy timeout, BEGIN IMMEDIATE for
writes, foreign keys), and Alembic migrations run on open.

A database written by a newer Parhelia is refused (E700) and left untouched.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from parhelia.state.errors import ParheliaError
from parhelia.state.private import create_private_file

if TYPE_CHECKING:  # SQLAlchemy loads with an engine: a read command on SQLite may never need one
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision this Parhelia knows; a test keeps it equal to Alembic's head.
HEAD_REVISION = "0009_containers_revision"
BUSY_TIMEOUT_MS = 30_000
# WAL checkpoints run on a thread of each `Store` (`Checkpointer`), off the write path, at most
# this often: under back-to-back writes each one then copies many commits' pages at once (a heartbeat
# cycle rewrites the same index leaves again and again, so fewer copies is less I/O).
CHECKPOINT_INTERVAL_S = 0.25
# Once the WAL holds this many pages (about 64 MB: writes kept coming while it was copied, so it
# never emptied and could not start over), the next writer first waits for the rest to be copied,
# so that its transaction starts the WAL over from the beginning.
WAL_RESTART_PAGES = 16_000
# The writers' own automatic checkpoint is the backstop, for connections without a Checkpointer
# (`make_engine` outside a Store) and a Checkpointer that fell behind.
WAL_AUTOCHECKPOINT_PAGES = 20_000
# Pages of the connection's cache (negative: KiB). The heartbeat index of a day's samples is tens
# of MB and a cycle touches one leaf per container: at SQLite's 2 MB default a cycle re-read most
# of them from the OS.
CACHE_SIZE_KIB = 65_536
# Read connections keep less: a dashboard holds several (refresh, watcher, loops), and each filled
# its 64 MiB with the pages of 10,000 containers and the newest events (190 MB resident at
# 10,000 containers); the OS keeps the file's pages cached for them anyway.
READ_CACHE_SIZE_KIB = 8_192
# When the WAL starts over it is cut back to this size: after a burst it otherwise keeps its
# largest size on disk for good (90-118 MB seen).
WAL_SIZE_LIMIT_BYTES = 32 * 2**20

T = TypeVar("T")


# PostgreSQL: the channel every committed write transaction of a `Store` notifies (one
# notification per transaction: the store sends it just before COMMIT, and PostgreSQL delivers it
# only if the transaction commits). Listeners: `parhelia.workers.pg_listen`.
CHANGE_CHANNEL = "parhelia_changes"
# The advisory lock that serializes migrations on PostgreSQL (any constant; "parhelia" in ASCII).
MIGRATION_LOCK_KEY = 0x7061726865
# An unreachable server fails within this, rather than a dashboard hanging on a dead network.
CONNECT_TIMEOUT_S = 10


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def masked(url: str) -> str:
    """`url` for display: the password replaced by ***, everywhere Parhelia prints a URL."""
    from parhelia.state.safe_text import mask_password

    return mask_password(url)


def unavailable(url: str, exc: BaseException) -> ParheliaError:
    """The coded error for a database that could not be opened (see `open_error`)."""
    return open_error(url, exc)


def in_utc(dbapi_conn) -> None:
    """A new PostgreSQL connection's session in UTC, its timestamps written out in ISO. Values are
    instants either way; but psycopg returns each `timestamptz` with the session's zone attached,
    and under a named zone (`Etc/UTC`, a server's local one) it looks each one up: half of
    reading 10,000 containers' narrow rows (31.5 against 16.8 ms, bench/tui.py). The live
    refresh reads those rows' timestamps as text (`view_queries.stamp_text`), which this makes
    `2026-03-10 11:00:00.5+00` on every server. In its own transaction (committed), so a later
    rollback keeps it."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SET datestyle TO 'ISO'")
    finally:
        cursor.close()
    dbapi_conn.commit()


def make_engine(url: str, *, immediate: bool = False, cache_kib: int | None = None) -> Engine:
    """An engine; for SQLite, `immediate=True` makes every transaction take the write lock up front,
    so two writers queue on the busy timeout instead of failing with "database is locked".
    `cache_kib`: each connection's page cache (default: CACHE_SIZE_KIB for a writer,
    READ_CACHE_SIZE_KIB for a reader)."""
    from sqlalchemy import create_engine, event

    if cache_kib is None:
        cache_kib = CACHE_SIZE_KIB if immediate else READ_CACHE_SIZE_KIB
    if not is_sqlite(url):
        if not is_postgresql(url):
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )

        @event.listens_for(engine, "connect")
        def _on_pg_connect(dbapi_conn, _record):  # pragma: no cover - every PostgreSQL test
            in_utc(dbapi_conn)

        return engine
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        # Only the default location is created for you (app/runtime.py): a mistyped --db would
        # otherwise open a fresh, empty database and report "all well".
        parent = Path(url.removeprefix("sqlite:///")).expanduser().parent
        if not parent.is_dir():
            raise ParheliaError(
                "E701",
                f"cannot open {url}: the directory {parent} does not exist",
                [f"mkdir -p {parent}", "parhelia config show"],
            )
        path = sqlite_file(url)
        if path is not None and not path.exists():
            # 0600; SQLite gives its -wal and -shm the same mode. If it cannot be created here,
            # SQLite's own error says so below.
            with contextlib.suppress(OSError):
                create_private_file(path)
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
        # 1,000-page autocheckpoint nearly every cycle paid a checkpoint and its fsyncs. A Store
        # checkpoints on its own thread; this is the backstop.
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA cache_size=-{cache_kib}")
        cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Checkpointer:
    """Checkpoints an SQLite file's WAL on a thread of its own, so a commit does not wait for the
    copy into the database file and its fsyncs (with 2M heartbeats stored, an inline checkpoint
    took 100-250 ms every few heartbeat cycles). `poke()` after each commit.

    PASSIVE checkpoints never wait for, nor block, readers or writers of any process; one that
    finds another process's checkpoint running is skipped. `before_write()` bounds the WAL under
    back-to-back writes, and `checkpoint()` runs one now and waits for it, for a measurement that
    must include the I/O its writes caused (bench/store.py).

    Everything goes through SQLite on a connection of its own: opening and closing the -wal or
    -shm file directly would drop this process's POSIX locks on it and corrupt the database."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.busy_seconds = 0.0  # time spent in checkpoints, for measurements
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()  # one checkpoint at a time; guards the connection
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._restart_due = False

    def poke(self) -> None:
        if self._closing.is_set():
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="parhelia-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def before_write(self) -> None:
        """Before a write transaction: if the last checkpoint found the WAL at `WAL_RESTART_PAGES`
        (checkpoints never caught up with the writes), checkpoint the rest now, in the writer's
        time: the transaction then starts the WAL over instead of growing it."""
        if self._restart_due:
            self.checkpoint()
            self._restart_due = False  # the WAL still holds those pages until this write

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, WAL frames, frames checkpointed), as `PRAGMA wal_checkpoint` reports them."""
        with self._lock:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            t = time.perf_counter()
            busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.busy_seconds += time.perf_counter() - t
            self._restart_due = frames >= WAL_RESTART_PAGES
            return busy, frames, done

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closing.is_set():
                return
            self._wake.clear()
            with contextlib.suppress(sqlite3.Error):  # the writers' autocheckpoint remains
                self.checkpoint()
            if self._closing.wait(CHECKPOINT_INTERVAL_S):
                return

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def current_revision(engine: Engine) -> str | None:
    """The schema revision, None for an empty database. Errors reading it propagate: a damaged,
    unreadable or unreachable database must not pass for an empty one that only "needs a migrate"."""
    from sqlalchemy import text

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            has = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'")
            ).first()
        else:
            from sqlalchemy import inspect

            has = inspect(conn).has_table("alembic_version")
        if not has:
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
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


def check_not_newer(url: str) -> str | None:
    """E700 for an SQLite file from a newer Parhelia, read through a bare connection before any
    engine sets its pragmas (switching a file to WAL would already change its bytes). Not
    `mode=ro`: a read-only connection to a WAL file leaves its -wal and -shm files behind.
    Returns the revision it read (None when there is none, or nothing was read)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()
    if not path.is_file():
        return None
    conn = sqlite3.connect(path)
    try:
        revision = sqlite_revision(conn)
    except sqlite3.Error:
        return None  # not readable as SQLite: the engine reports it properly
    finally:
        conn.close()
    _refuse_newer(revision)
    return revision


def sqlite_revision(conn: sqlite3.Connection) -> str | None:
    """The schema revision of the SQLite file behind a bare `sqlite3` connection (None: none)."""
    has = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
    ).fetchone()
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone() if has else None
    return row[0] if row else None


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to head; return (before, after). Refuses (E700) a database from a newer Parhelia."""
    before = current_revision(engine)
    if before == HEAD_REVISION:
        return before, before
    _refuse_newer(before)
    from alembic import command
    from sqlalchemy import text

    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Processes opening a fresh database at once migrate one after another (SQLite
                # gets this from BEGIN IMMEDIATE); Alembic then reads the revision under the lock.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            command.upgrade(_alembic_config(conn), "head")
    except ParheliaError:
        raise
    except Exception as exc:
        if is_damaged(exc):
            raise open_error(str(engine.url), exc, attempted="upgrade the schema") from exc
        raise ParheliaError(
            "E702", f"migration failed: {exc}", ["parhelia db status", "parhelia db migrate"]
        ) from exc
    return before, current_revision(engine) or HEAD_REVISION


# -- why a database could not be opened ---------------------------------------------------


def sqlite_file(url: str) -> Path | None:
    """The file behind an `sqlite:///PATH` URL (None for memory databases and other dialects)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).expanduser() if path else None


def _driver_words(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else repr(exc)


def is_damaged(exc: BaseException) -> bool:
    """SQLite's SQLITE_CORRUPT: garbled pages in an otherwise recognisable database file."""
    orig = getattr(exc, "orig", None) or exc
    return isinstance(orig, sqlite3.DatabaseError) and (
        getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_CORRUPT
        or "malformed" in str(orig)
    )


def open_error(url: str, exc: BaseException, *, attempted: str = "open the store") -> ParheliaError:
    """The coded error for a database that could not be opened or read: E703 when an SQLite file
    is damaged, otherwise E701 saying which of the usual causes it is, with commands that fix it.
    Every command (the store, `db status`, `db migrate`) reports a database through this one
    function, so the same file gets the same answer everywhere."""
    from parhelia.state.safe_text import mask_password

    shown = mask_password(url)
    words = mask_password(_driver_words(exc))
    path = sqlite_file(url)
    other = "parhelia --db sqlite:///parhelia.db db status"
    if is_damaged(exc):
        target = path or "parhelia.db"
        return ParheliaError(
            "E703",
            f"the database {shown} is damaged ({words}); nothing was written to it",
            [
                f"sqlite3 {target} .recover | sqlite3 recovered.db",
                "parhelia --db sqlite:///recovered.db db migrate",
                "parhelia config show",
            ],
            attempted=attempted,
        )
    if isinstance(exc, ModuleNotFoundError | ImportError):
        module = getattr(exc, "name", None) or words
        return ParheliaError(
            "E701",
            f"cannot open {shown}: its driver {module!r} is not installed",
            [f"pip install {_DRIVER_PACKAGES.get(module, module)}", other, "parhelia config show"],
            attempted=attempted,
        )
    if type(exc).__name__ in ("NoSuchModuleError", "ArgumentError"):
        return ParheliaError(
            "E701",
            f"{shown} is not a database URL Parhelia can use ({words})",
            [other, "PARHELIA_DB_URL=postgresql+psycopg://USER@HOST/DB parhelia db status"],
            attempted=attempted,
        )
    if path is not None and path.is_dir():
        return ParheliaError(
            "E701",
            f"cannot open {shown}: {path} is a directory, not a database file",
            [f"parhelia --db sqlite:///{path / 'parhelia.db'} db status", "parhelia config show"],
            attempted=attempted,
        )
    if path is not None and path.is_file() and "not a database" in words:
        return ParheliaError(
            "E701",
            f"cannot open {shown}: {path} is not an SQLite database ({words})",
            [f"file {path}", other, "parhelia config show"],
            attempted=attempted,
        )
    if path is not None and ("unable to open" in words or "readonly" in words):
        return ParheliaError(
            "E701",
            f"cannot open {shown}: {path} cannot be created or written here ({words})",
            [f"ls -ld {path.parent}", other, "parhelia config show"],
            attempted=attempted,
        )
    return ParheliaError(
        "E701",
        f"cannot open the database {shown}: {words}",
        [
            "parhelia config show",
            other,
            "PARHELIA_DB_URL=sqlite:///parhelia.db parhelia tui --once",
        ],
        attempted=attempted,
    )


_DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
}
