"""`Store`: the one door to the database.

This module holds the connections and the rows: CRUD for tasks and containers, the checked
lifecycle `transition`, the SPEC-21 queries, the reconciler's runs and lease, persisted settings.
The rest of the door is mixed in from beside it: `event_log.EventLog` (events),
`bulk.BulkWrites` (heartbeat cycles, the loops' guarded changes, retention) and
`projection.Projection` (`dashboard()`, the single view query every front end renders). Writes
take the SQLite write lock up front (see `parhelia.state.db`), so several processes can write at
once without "database is locked".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlmodel import Session

from parhelia.state import db, view_reads
from parhelia.state.bulk import (
    BulkWrites,
    follow_tasks,
)
from parhelia.state.enums import ContainerState, EventLevel
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import (
    EventLog,
    write_events,
)
from parhelia.state.event_types import EventType
from parhelia.state.keys import ACTIVE, PLANE_KEY, RECONCILER_LEASE
from parhelia.state.lifecycle import check_transition, end_of_life
from parhelia.state.models import (
    Container,
    Event,
    Lease,
    ReconcilerRun,
    Setting,
    Task,
    new_plane_id,
)
from parhelia.state.process_owner import ProcessOwner, is_gone
from parhelia.state.projection import (
    Projection,
    setting_value,
)
from parhelia.state.timeutil import as_utc, utcnow
from parhelia.state.view_queries import SessionReads


class Store(EventLog, BulkWrites, Projection):
    """Open (and upgrade) the database at `url`; SQLite gets WAL, busy timeout and foreign keys."""

    def __init__(
        self, url: str, *, migrate: bool = True, write_cache_kib: int | None = None
    ) -> None:
        self.url = url
        self._notify = db.is_postgresql(url)
        revision = None
        try:
            if migrate:
                revision = db.check_not_newer(url)
            self.engine = db.make_engine(url)
            self._write_engine = (
                db.make_engine(url, immediate=True, cache_kib=write_cache_kib)
                if db.is_sqlite(url)
                else self.engine
            )
            path = self._write_engine.url.database if db.is_sqlite(url) else None
            self._checkpointer = (
                db.Checkpointer(path) if path and not path.startswith(":memory:") else None
            )
        except ParheliaError:
            raise
        except Exception as exc:  # a URL SQLAlchemy cannot parse, a driver that is not installed
            raise _unavailable(url, exc) from exc
        if migrate:
            try:
                # An SQLite file already read at head needs no second look through the write
                # engine (which would take the write lock to read the revision again).
                if revision != db.HEAD_REVISION:
                    db.migrate(self._write_engine)
            except ParheliaError:
                self.close()  # leave no connection (or -wal file) behind a refused open
                raise
            except Exception as exc:  # not a database, unreadable, unreachable server
                self.close()
                raise _unavailable(url, exc) from exc
            except BaseException:
                self.close()
                raise
            self._ensure_plane_id()

    def _ensure_plane_id(self) -> str:
        """Read the plane id, or make it if this is the first open. Two processes opening a new
        database at once agree: the insert is in one write transaction (serialised on SQLite), and
        a loser on PostgreSQL hits the primary key and reads the winner's."""
        try:
            with self.read() as s:
                value = setting_value(s, PLANE_KEY)
            if value:
                return value
        except ParheliaError:
            pass  # an in-memory database: only the write connection has the tables
        try:
            with self.write() as s:
                row = s.get(Setting, PLANE_KEY)
                if row is None:
                    row = Setting(key=PLANE_KEY, value=new_plane_id(), updated_by="store")
                    s.add(row)
                value = row.value
        except IntegrityError:
            with self.read() as s:
                value = setting_value(s, PLANE_KEY)
        return value

    @property
    def plane_id(self) -> str:
        """This store's control-plane id (the same for every process on this database); read each
        time (one primary-key lookup), so every reader agrees with the row."""
        return self._ensure_plane_id()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()

    @property
    def label(self) -> str:
        """The database for display, without credentials."""
        return db.masked(self.url)

    @property
    def sqlite_path(self) -> str | None:
        return self.engine.url.database if db.is_sqlite(self.url) else None

    # -- sessions -------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except IntegrityError:
            raise
        except DatabaseError as exc:  # locked, unreachable, damaged: coded, never E900
            raise self._db_error(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; commits on success, rolls back on error."""
        if self._checkpointer is not None:
            self._checkpointer.before_write()
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                yield session
                if self._notify:  # delivered by PostgreSQL only when this transaction commits
                    session.execute(text("SELECT pg_notify(:c, '')"), {"c": db.CHANGE_CHANNEL})
        except IntegrityError:
            raise
        except DatabaseError as exc:  # locked, unreachable, damaged: coded, never E900
            raise self._db_error(exc) from exc
        if self._checkpointer is not None:
            self._checkpointer.poke()

    def checkpoint(self) -> None:
        """Checkpoint the WAL now and wait for it (no-op off SQLite files): for measurements that
        must include the I/O their writes caused."""
        if self._checkpointer is not None:
            self._checkpointer.checkpoint()

    def _db_error(self, exc: DatabaseError) -> ParheliaError:
        if db.is_damaged(exc) or not isinstance(exc, OperationalError):
            return db.open_error(self.url, exc, attempted="read the store")
        return ParheliaError(
            "E701", f"database error: {exc.orig}", ["parhelia db status", "parhelia config show"]
        )

    # -- tasks ----------------------------------------------------------------------------

    def add_task(self, task: Task) -> Task:
        with self.write() as s:
            s.add(task)
        return task

    def get_task(self, task_id: str) -> Task:
        with self.read() as s:
            task = s.get(Task, task_id) or _unique_prefix(s, Task, task_id, "t")
        if task is None:
            raise ParheliaError(
                "E201", f"no task {task_id!r}", ["parhelia task list", "parhelia task list --json"]
            )
        return task

    def list_tasks(self, *, status: str | None = None, limit: int = 100) -> list[Task]:
        q = select(Task).order_by(Task.created_at.desc()).limit(limit)
        if status:
            q = q.where(Task.status == status)
        with self.read() as s:
            return list(s.scalars(q))

    def update_task(self, task_id: str, **fields: Any) -> Task:
        with self.write() as s:
            task = s.get(Task, task_id)
            if task is None:
                raise ParheliaError(
                    "E201",
                    f"no task {task_id!r}",
                    ["parhelia task list", "parhelia task list --json"],
                )
            for k, v in fields.items():
                setattr(task, k, v)
            task.updated_at = utcnow()
        return task

    # -- containers -----------------------------------------------------------------------

    def add_container(
        self, container: Container, *, task: Task | None = None, events: Sequence[Event] = ()
    ) -> Container:
        """Write a container (and its task, and the events that record it) in one transaction."""
        with self.write() as s:
            if task is not None:
                s.add(task)
                s.flush()
            s.add(container)
            write_events(s, events)
        return container

    def get_container(self, ref: str) -> Container:
        """By id, by sandbox id, or by a unique id prefix; E204 otherwise."""
        with self.read() as s:
            found = s.get(Container, ref)
            if found is None:
                found = s.scalars(
                    select(Container).where(Container.sandbox_id == ref).limit(1)
                ).first()
            if found is None:
                found = _unique_prefix(s, Container, ref, "c")
        if found is None:
            raise ParheliaError(
                "E204",
                f"no container {ref!r}",
                [
                    "parhelia containers list",
                    "parhelia containers orphans",
                    "parhelia reconciler run",
                ],
            )
        return found

    def container_by_sandbox(self, backend: str, sandbox_id: str) -> Container | None:
        with self.read() as s:
            return s.scalars(
                select(Container).where(
                    Container.backend == backend, Container.sandbox_id == sandbox_id
                )
            ).first()

    def update_container(
        self, container_id: str, *, events: Sequence[Event] = (), **fields: Any
    ) -> Container:
        with self.write() as s:
            c = s.get(Container, container_id)
            if c is None:
                raise ParheliaError(
                    "E204",
                    f"no container {container_id!r}",
                    ["parhelia containers list", "parhelia reconciler run"],
                )
            if "state" in fields:
                check_transition(c.id, c.state, fields["state"])
            for k, v in fields.items():
                setattr(c, k, v)
            c.updated_at = utcnow()
            write_events(s, events)
        return c

    def transition(
        self,
        container_id: str,
        new_state: str,
        *,
        source: str,
        actor: str | None = None,
        message: str = "",
        level: str = EventLevel.INFO,
        details: dict | None = None,
        now: datetime | None = None,
        **fields: Any,
    ) -> Container:
        """Move a container through the lifecycle (checked), stamping times and writing the event."""
        now = now or utcnow()
        with self.write() as s:
            c = s.get(Container, container_id)
            if c is None:
                raise ParheliaError(
                    "E204",
                    f"no container {container_id!r}",
                    ["parhelia containers list", "parhelia reconciler run"],
                )
            old = c.state
            check_transition(c.id, old, new_state)
            if new_state == ContainerState.RUNNING and c.started_at is None:
                c.started_at = now
            for k, v in {**end_of_life(c, new_state, now), **fields}.items():
                setattr(c, k, v)
            c.state = new_state
            c.updated_at = now
            if old != new_state:
                s.add(
                    Event(
                        ts=now,
                        type=EventType.CONTAINER_STATE.value,
                        level=level,
                        container_id=c.id,
                        task_id=c.task_id,
                        old_value=old,
                        new_value=new_state,
                        message=message or f"{c.id} {old} → {new_state}",
                        details=details or {},
                        source=source,
                        actor=actor,
                    )
                )
                s.flush()
                follow_tasks(s, [c.id], now)
        return c

    def record_sandbox(
        self, container_id: str, sandbox_id: str, *, source: str, actor: str, **fields: Any
    ) -> Container:
        """The dispatcher's last write: its `created` row runs as `sandbox_id`. A listing may have
        adopted the sandbox by its tag first (and seen it exit): then the row already holds it and
        stays as the listing left it, so a quick agent ends stopped, not in an E105."""
        try:
            return self.transition(
                container_id,
                ContainerState.RUNNING,
                source=source,
                actor=actor,
                sandbox_id=sandbox_id,
                **fields,
            )
        except ParheliaError as exc:
            # a row's sandbox id, once set, never changes: holding ours, it was adopted
            if exc.code == "E105" and self.get_container(container_id).sandbox_id == sandbox_id:
                return self.get_container(container_id)
            raise

    def containers(
        self,
        *,
        states: Iterable[str] | None = None,
        health: Iterable[str] | None = None,
        task_id: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
    ) -> list[Container]:
        q = select(Container).order_by(Container.created_at)
        if states is not None:
            q = q.where(Container.state.in_(list(states)))
        if health is not None:
            q = q.where(Container.health.in_(list(health)))
        if task_id is not None:
            q = q.where(Container.task_id == task_id)
        if backend is not None:
            q = q.where(Container.backend == backend)
        if limit:
            q = q.limit(limit)
        with self.read() as s:
            return list(s.scalars(q))

    def active_containers(self) -> list[Container]:
        return self.containers(states=ACTIVE)

    def containers_by_state(self, state: str) -> list[Container]:
        return self.containers(states=[state])

    def containers_by_health(self, health: str) -> list[Container]:
        return self.containers(health=[health], states=ACTIVE)

    def orphans(self) -> list[Container]:
        return self.containers(states=[ContainerState.ORPHANED])

    def containers_for_task(self, task_id: str) -> list[Container]:
        return self.containers(task_id=task_id)

    def backends_in_use(self) -> set[str]:
        with self.read() as s:
            return set(
                s.scalars(select(Container.backend).where(Container.state.in_(ACTIVE)).distinct())
            )

    # -- reconciler runs and the lease -----------------------------------------------------

    def record_run(self, run: ReconcilerRun, events: Sequence[Event] = ()) -> ReconcilerRun:
        with self.write() as s:
            s.add(run)
            write_events(s, events)
        return run

    def runs(self, limit: int = 20) -> list[ReconcilerRun]:
        with self.read() as s:
            return list(
                s.scalars(select(ReconcilerRun).order_by(ReconcilerRun.id.desc()).limit(limit))
            )

    def acquire_lease(
        self,
        holder: str,
        ttl_seconds: float,
        *,
        name: str = RECONCILER_LEASE,
        now: datetime | None = None,
        interval_seconds: float | None = None,
        next_run_at: datetime | None = None,
        owner: ProcessOwner | None = None,
        renew_only: bool = False,
        in_cycle: bool | None = None,
    ) -> bool:
        """Take or renew the lease; True when `holder` holds it afterwards. An expired lease, or one
        whose holder's process is gone from this host, is taken over; with `renew_only` a lease
        held by another (or by nobody) is left alone. `in_cycle` marks a cycle started (True) or
        finished (False) so readers can see one that overruns.

        Without `now`, time is the database's clock on PostgreSQL (laptops sharing one database
        disagree about the time; the server is the one clock they share), this machine's on
        SQLite. The row is locked while it is judged (FOR UPDATE; SQLite's write lock does that)."""
        try:
            with self.write() as s:
                if now is None:
                    now = (
                        as_utc(s.scalar(text("SELECT clock_timestamp()")))
                        if db.is_postgresql(self.url)
                        else utcnow()
                    )
                expires = now + timedelta(seconds=ttl_seconds)
                lease = s.get(Lease, name, with_for_update=True)
                if lease is None:
                    if renew_only:
                        return False
                    lease = Lease(
                        name=name,
                        holder=holder,
                        acquired_at=now,
                        expires_at=expires,
                        interval_seconds=interval_seconds or 60.0,
                    )
                    s.add(lease)
                elif lease.holder != holder:
                    if renew_only:
                        return False
                    alive = as_utc(lease.expires_at) > now and not is_gone(
                        lease.host, lease.pid, lease.pid_started
                    )
                    if alive:
                        return False
                    lease.acquired_at = now
                    lease.host = lease.pid = lease.pid_started = lease.cycle_started_at = None
                lease.holder = holder
                lease.expires_at = expires
                if owner is not None:
                    lease.host, lease.pid, lease.pid_started = owner.host, owner.pid, owner.started
                if interval_seconds is not None:
                    lease.interval_seconds = interval_seconds
                if next_run_at is not None:
                    lease.next_run_at = next_run_at
                if in_cycle is not None:
                    lease.cycle_started_at = now if in_cycle else None
                return True
        except IntegrityError:  # another process inserted the row first
            return False

    def release_lease(self, holder: str, *, name: str = RECONCILER_LEASE) -> None:
        with self.write() as s:
            lease = s.get(Lease, name)
            if lease is not None and lease.holder == holder:
                s.delete(lease)

    def holds_lease(
        self, holder: str, *, name: str = RECONCILER_LEASE, now: datetime | None = None
    ) -> bool:
        """Whether `holder` holds an unexpired lease now (checked before each heartbeat pass)."""
        lease = self.get_lease(name)
        return (
            lease is not None
            and lease.holder == holder
            and as_utc(lease.expires_at) > (now or utcnow())
        )

    def get_lease(self, name: str = RECONCILER_LEASE) -> Lease | None:
        with self.read() as s:
            return s.get(Lease, name)

    # -- persisted settings ---------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self.read() as s:
            return setting_value(s, key, default)

    def set_setting(
        self, key: str, value: Any, *, actor: str | None = None, events: Sequence[Event] = ()
    ) -> None:
        with self.write() as s:
            row = s.get(Setting, key)
            if row is None:
                s.add(Setting(key=key, value=value, updated_by=actor))
            else:
                row.value = value
                row.updated_at = utcnow()
                row.updated_by = actor
            write_events(s, events)

    def settings_with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every persisted setting whose key starts with `prefix` (one query for the guard's
        policies), as a read command's quick store answers it (`view_reads.settings`)."""
        with self.read() as s:
            return view_reads.settings(SessionReads(s), prefix)


# -- helpers ------------------------------------------------------------------------------


def _unavailable(url: str, exc: Exception) -> ParheliaError:
    """E701 (E703 for a damaged file) naming the URL and the cause: the database could not be opened."""
    return db.open_error(url, exc)


AMBIGUOUS_SHOWN = 5  # candidates named in the error; more are counted


def _unique_prefix(session: Session, model: type, prefix: str, kind: str) -> Any:
    """The one row whose id starts with `prefix`, with or without its `c-`/`t-` (as Docker
    takes `9c9c` for a full id); None when none does; E101 naming the candidates when several do."""
    if not prefix.startswith(f"{kind}-"):
        prefix = f"{kind}-{prefix}"
    if len(prefix) < len(kind) + 2:
        return None
    rows = list(
        session.scalars(
            select(model)
            .where(model.id.startswith(prefix, autoescape=True))
            .order_by(model.id)
            .limit(AMBIGUOUS_SHOWN + 1)
        )
    )
    if len(rows) > 1:
        ids = [r.id for r in rows[:AMBIGUOUS_SHOWN]]
        more = ", …" if len(rows) > AMBIGUOUS_SHOWN else ""
        noun = "containers" if kind == "c" else "task"
        raise ParheliaError(
            "E101",
            f"{prefix!r} is ambiguous: it starts {', '.join(ids)}{more}; give more characters",
            [f"parhelia {noun} show {ids[0]}", f"parhelia {noun} list"],
        )
    return rows[0] if rows else None


# The store's public names, wherever they are defined: callers outside `state/` import them from
# here (`_bound` only by tests/test_postgres_team.py).
__all__ = ["Store"]
