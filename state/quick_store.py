"""A read command's store without SQLAlchemy: the view through the bare driver (`sqlite3`, or
`psycopg` for a `postgresql+psycopg://` URL).

Importing SQLModel and SQLAlchemy is most of `parhelia containers list`'s time (bench/cli.py),
and 0.6 s of a PostgreSQL `tui --once` at 10,000 containers (1.25 s against its 1.5 s target);
the view needs neither. On a database at the schema this Parhelia knows, `QuickStore` runs the
view's statements as compiled ahead of time (`state/sqlite_catalogue.py`,
`state/postgres_catalogue.py`, kept equal to `state/view_queries.py` by a test) and builds the
view with the store's own code (`state/view_reads.py`), in one read transaction (on PostgreSQL a
read-only snapshot: every part of the view of the same moment).

Everything else, and everything off that path (another revision, a new file or database, another
driver, an error of any kind), is the full `Store`'s: `QuickStore.open` then answers None and the
command opens that, or a method this class does not have opens it on first use. So the quick
path can make a read faster, never different: a test compares its views with the store's on
both databases. A PostgreSQL server that cannot be reached is the one exception: the quick path
says so itself (E701, as the store would), rather than the store waiting out the same timeout
again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from parhelia.state import db, postgres_catalogue, sqlite_catalogue, view_reads
from parhelia.state.timeutil import utcnow
from parhelia.state.view_reads import CONTAINER_VIEW_LIMIT, sqlite_text

if TYPE_CHECKING:
    from parhelia.state.budget import BudgetConfig
    from parhelia.state.store import Store
    from parhelia.state.views import ContainerView, DashboardView, EventView, ReconcilerView


# The driver's package in a URL the quick path reads (`postgresql://` alone is SQLAlchemy's
# psycopg2, which this path does not speak: that store's to open, or to say it cannot)
PSYCOPG_SCHEME = "postgresql+psycopg://"


class QuickReads:
    """`view_reads.Reads` over a bare driver connection: the catalogued SQL, timestamps bound as
    the store binds them (SQLite: the text it writes; PostgreSQL: aware, a `timestamptz`)."""

    def __init__(self, conn: Any, *, sqlite: bool = True) -> None:
        self.conn = conn
        self.sqlite = sqlite
        self.statements = (sqlite_catalogue if sqlite else postgres_catalogue).STATEMENTS

    def rows(self, name: str, **params: Any) -> list[tuple]:
        if self.sqlite:
            params = {
                k: sqlite_text(v) if isinstance(v, datetime) else v for k, v in params.items()
            }
        return self.conn.execute(self.statements[name], params).fetchall()


class QuickStore:
    """The store's view reads on an SQLite file, without SQLAlchemy; any other method is the full
    `Store`'s, opened once on first use."""

    def __init__(
        self, url: str, conn: Any, full: Callable[[], Store] | None = None, *, sqlite: bool = True
    ) -> None:
        self.url = url
        self._conn = conn
        self._sqlite = sqlite
        # what the driver raises (a locked or damaged file, a dropped connection): the full store
        # answers then, and says it properly
        self._errors: type[Exception] = sqlite3.Error if sqlite else _psycopg().Error
        self._open_full = full  # the caller's full store, which the caller closes
        self._full: Store | None = None

    @classmethod
    def open(cls, url: str, *, full: Callable[[], Store] | None = None) -> QuickStore | None:
        """A quick store for `url` (`full`: how to open the full store, if the caller keeps
        one), or None when the full store must open it: neither an SQLite file that exists nor
        a `postgresql+psycopg://` database with the schema, or not at the revision the catalogue
        was compiled for (a migration to run, or a newer Parhelia's database: E700 is the full
        store's to say), or without its plane id yet (the full store makes it on first open), or
        unreadable. On PostgreSQL, a server that cannot be reached raises the store's E701
        (`db.open_error`)."""
        if url.startswith(PSYCOPG_SCHEME):
            return cls._open_postgres(url, full)
        path = db.sqlite_file(url)
        if (
            path is None
            or "?" in url
            or not path.is_file()
            or sqlite_catalogue.REVISION != db.HEAD_REVISION
        ):
            return None
        try:
            conn = sqlite3.connect(path, timeout=db.BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error:
            return None
        try:
            if db.sqlite_revision(conn) == sqlite_catalogue.REVISION and _has_plane(conn):
                return cls(url, conn, full)
        except sqlite3.Error:
            pass
        conn.close()
        return None

    @classmethod
    def _open_postgres(cls, url: str, full: Callable[[], Store] | None) -> QuickStore | None:
        """`open` for a `postgresql+psycopg://` URL: a read-only, repeatable-read connection (each
        read one snapshot), kept only at this Parhelia's revision with a plane id."""
        if postgres_catalogue.REVISION != db.HEAD_REVISION:
            return None
        psycopg = _psycopg()
        conninfo = "postgresql://" + url.removeprefix(PSYCOPG_SCHEME)
        try:
            conn = psycopg.connect(conninfo, connect_timeout=db.CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:  # the store would wait as long to say the same
            raise db.open_error(url, exc) from exc
        except psycopg.Error:
            return None
        try:
            db.in_utc(conn)
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                found = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                if found == [(postgres_catalogue.REVISION,)] and _has_plane(conn, sqlite=False):
                    return cls(url, conn, full, sqlite=False)
        except psycopg.Error:  # no schema yet (the store makes it), or not ours
            pass
        conn.close()
        return None

    @property
    def label(self) -> str:
        return db.masked(self.url)

    @contextmanager
    def _read(self) -> Iterator[QuickReads]:
        """One read transaction (a snapshot: every part of a view is of the same moment; psycopg
        begins it with the first statement)."""
        if self._sqlite:
            self._conn.execute("BEGIN")
        try:
            yield QuickReads(self._conn, sqlite=self._sqlite)
        finally:
            self._conn.rollback()

    def dashboard(
        self,
        *,
        now: datetime | None = None,
        budget: BudgetConfig | None = None,
        event_limit: int = 200,
        recent_hours: float = 1.0,
        reconcile_interval: float = 60.0,
        backend_label: str = "",
        live: Any = None,
    ) -> DashboardView:
        """`Store.dashboard`, the one-shot view (a dashboard that keeps rows, `live`, is the full
        store's)."""
        kwargs = {
            "now": now or utcnow(),
            "budget": budget,
            "event_limit": event_limit,
            "recent_hours": recent_hours,
            "reconcile_interval": reconcile_interval,
            "backend_label": backend_label,
        }
        if live is not None:
            return self.full.dashboard(**kwargs, live=live)
        try:
            with self._read() as reads:
                return view_reads.dashboard_view(reads, **kwargs, database=self.label)
        except self._errors:  # locked past the timeout, damaged, dropped: the full store says it
            return self.full.dashboard(**kwargs)

    def container_views(
        self,
        *,
        now: datetime,
        recent_hours: float = 1.0,
        ids: Any = None,
        limit: int = CONTAINER_VIEW_LIMIT,
    ) -> list[ContainerView]:
        """`Store.container_views` (by ids: the full store's)."""
        if ids is None:
            try:
                with self._read() as reads:
                    return view_reads.container_views(
                        reads, now=now, recent_hours=recent_hours, limit=limit
                    )
            except self._errors:
                pass
        return self.full.container_views(now=now, recent_hours=recent_hours, ids=ids, limit=limit)

    def task_dicts(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        """`Store.task_dicts`: the newest tasks, as `Task.model_dump()` gives them."""
        try:
            with self._read() as reads:
                return view_reads.task_dicts(reads, status=status, limit=limit)
        except self._errors:
            return self.full.task_dicts(status=status, limit=limit)

    def recent_events(self, limit: int) -> list[EventView]:
        """`Store.recent_events`: the newest `limit` events, oldest first."""
        try:
            with self._read() as reads:
                return view_reads.recent_event_views(reads, limit)
        except self._errors:
            return self.full.recent_events(limit)

    def reconciler_view(
        self, default_interval: float, *, now: datetime | None = None
    ) -> ReconcilerView:
        """`Store.reconciler_view`: the last run, the lease, since when the view is stale."""
        try:
            with self._read() as reads:
                return view_reads.reconciler_view(reads, default_interval, now or utcnow())
        except self._errors:
            return self.full.reconciler_view(default_interval, now=now)

    def settings_with_prefix(self, prefix: str) -> dict[str, Any]:
        """`Store.settings_with_prefix`: every stored setting whose key starts with `prefix`."""
        try:
            with self._read() as reads:
                return view_reads.settings(reads, prefix)
        except self._errors:
            return self.full.settings_with_prefix(prefix)

    @property
    def full(self) -> Store:
        """The full store, for whatever the view's statements do not cover."""
        if self._full is None:
            if self._open_full is not None:
                self._full = self._open_full()
            else:
                from parhelia.state.store import Store

                self._full = Store(self.url)
        return self._full

    def __getattr__(self, name: str) -> Any:
        # only for names this class does not define: those are the full store's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full, name)

    def close(self) -> None:
        self._conn.close()
        if self._full is not None and self._open_full is None:
            self._full.close()


def _has_plane(conn: Any, *, sqlite: bool = True) -> bool:
    return bool(QuickReads(conn, sqlite=sqlite).rows("plane"))


def _psycopg() -> Any:
    import psycopg  # only for a PostgreSQL URL: a read command on SQLite never loads it

    return psycopg
