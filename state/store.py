"""`Store`: the one door to the database.

CRUD for tasks and containers, the SPEC-21 queries, batched heartbeat ingest, events, the
reconciler's runs and lease, persisted settings, and `dashboard()`, the single view query every
front end renders. Writes take the SQLite write lock up front (see `parhelia.state.db`), so
several processes can write at once without "database is locked".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    String,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlmodel import Session

from parhelia.state import db
from parhelia.state.budget import BudgetConfig, summarize
from parhelia.state.costs import accrued_cost
from parhelia.state.enums import (
    ACTIVE_STATES,
    LEVEL_ORDER,
    LIVE_TASK_STATUSES,
    ContainerState,
    EventLevel,
    EventSource,
    Health,
    TaskStatus,
)
from parhelia.state.errors import ParheliaError
from parhelia.state.lifecycle import check_transition
from parhelia.state.models import (
    Container,
    Event,
    Heartbeat,
    Lease,
    ReconcilerRun,
    Setting,
    Task,
    UTCDateTime,
    new_plane_id,
)
from parhelia.state.process_owner import ProcessOwner, is_gone
from parhelia.state.requests import gpu_count
from parhelia.state.task_end import next_task_status, task_status_for
from parhelia.state.timeutil import as_utc, utcnow
from parhelia.state.views import (
    RUN_COUNTS,
    ContainerDetail,
    ContainerView,
    DashboardView,
    EventView,
    ForeignSandbox,
    GraceSandbox,
    HeartbeatView,
    ReconcilerView,
)

ACTIVE = tuple(s.value for s in ACTIVE_STATES)
RECONCILER_LEASE = "reconciler"
PRUNE_BATCH = 2000  # most events (and runs) one retention pass deletes: a short write lock
# This store's control-plane id (`new_plane_id`), written once on the first open; every sandbox
# it dispatches carries it as a tag.
PLANE_KEY = "control_plane.id"
# Per backend: the sandboxes of another control plane its last good listing saw, by sandbox id
# (written by the reconciler, shown by the dashboard, refused by terminate).
FOREIGN_PREFIX = "reconciler.foreign."
IN_GRACE_PREFIX = "reconciler.in_grace."  # {sandbox id: when its orphan grace ends}
# The container columns a ContainerView needs, in `_container_views`' order.
_VIEW_COLUMNS = tuple(
    Container.__table__.c[name]
    for name in (
        "id",
        "backend",
        "sandbox_id",
        "state",
        "health",
        "task_id",
        "created_at",
        "started_at",
        "terminated_at",
        "last_heartbeat_at",
        "missed_heartbeats",
        "cpu_cores",
        "memory_mib",
        "gpu",
        "region",
        "cost_rate_per_hour",
        "cost_accrued_usd",
        "last_cpu_percent",
        "last_memory_mib",
        "last_memory_percent",
        "last_agent_alive",
        "termination_reason",
        "exit_code",
        "tags",
    )
)
# The latest-sample columns of a container row and the heartbeat columns they copy.
_SAMPLE = {
    "last_sample_at": "ts",
    "last_cpu_percent": "cpu_percent",
    "last_memory_mib": "memory_mib",
    "last_memory_percent": "memory_percent",
    "last_agent_alive": "agent_alive",
}
# The heartbeat columns with a scalar default, and what a sample without one of them stores.
_HEARTBEAT_DEFAULTS = {
    c.name: c.default.arg
    for c in Heartbeat.__table__.columns
    if c.default is not None and c.default.is_scalar
}
_SAMPLE_DEFAULTS = {k: _HEARTBEAT_DEFAULTS.get(k) for k in _SAMPLE.values()}


@dataclass(frozen=True)
class Stats:
    total: int
    by_state: dict[str, int]
    by_health: dict[str, int]
    cost_rate_per_hour: float
    accrued_usd: float
    oldest_running_id: str | None
    oldest_running_started_at: datetime | None


class Store:
    """Open (and upgrade) the database at `url`; SQLite gets WAL, busy timeout and foreign keys."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._notify = db.is_postgresql(url)
        revision = None
        try:
            if migrate:
                revision = db.check_not_newer(url)
            self.engine = db.make_engine(url)
            self._write_engine = (
                db.make_engine(url, immediate=True) if db.is_sqlite(url) else self.engine
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
                value = _get_setting(s, PLANE_KEY)
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
                value = _get_setting(s, PLANE_KEY)
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
            s.add_all(events)
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
            s.add_all(events)
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
            if (
                new_state in (ContainerState.TERMINATED, ContainerState.STOPPED)
                and c.terminated_at is None
            ):
                c.terminated_at = now
                c.cost_accrued_usd = max(
                    c.cost_accrued_usd, accrued_cost(c.cost_rate_per_hour, c.started_at, now, now)
                )
            for k, v in fields.items():
                setattr(c, k, v)
            c.state = new_state
            c.updated_at = now
            if old != new_state:
                s.add(
                    Event(
                        ts=now,
                        type="container.state",
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
                _follow_tasks(s, [c.id], now)
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

    def containers_without_heartbeat_since(self, since: datetime) -> list[Container]:
        """Running containers whose last heartbeat (or start, if none yet) is older than `since`."""
        q = select(Container).where(
            Container.state == ContainerState.RUNNING,
            or_(
                Container.last_heartbeat_at < since,
                (Container.last_heartbeat_at.is_(None)) & (Container.started_at < since),
            ),
        )
        with self.read() as s:
            return list(s.scalars(q))

    def backends_in_use(self) -> set[str]:
        with self.read() as s:
            return set(
                s.scalars(select(Container.backend).where(Container.state.in_(ACTIVE)).distinct())
            )

    def stats(self, now: datetime | None = None) -> Stats:
        now = now or utcnow()
        with self.read() as s:
            by_state = dict(
                s.execute(select(Container.state, func.count()).group_by(Container.state)).all()
            )
            by_health = dict(
                s.execute(
                    select(Container.health, func.count())
                    .where(Container.state.in_(ACTIVE))
                    .group_by(Container.health)
                ).all()
            )
            rate = (
                s.scalar(
                    select(func.coalesce(func.sum(Container.cost_rate_per_hour), 0.0)).where(
                        Container.state.in_(ACTIVE)
                    )
                )
                or 0.0
            )
            oldest = s.execute(
                select(Container.id, Container.started_at)
                .where(Container.state == ContainerState.RUNNING, Container.started_at.is_not(None))
                .order_by(Container.started_at)
                .limit(1)
            ).first()
            live = s.execute(
                select(
                    Container.cost_rate_per_hour, Container.started_at, Container.cost_accrued_usd
                ).where(Container.state.in_(ACTIVE))
            ).all()
            done = (
                s.scalar(
                    select(func.coalesce(func.sum(Container.cost_accrued_usd), 0.0)).where(
                        Container.state.not_in(ACTIVE)
                    )
                )
                or 0.0
            )
        accrued = done + sum(max(a, accrued_cost(r, st, None, now)) for r, st, a in live)
        return Stats(
            total=sum(by_state.values()),
            by_state=by_state,
            by_health=by_health,
            cost_rate_per_hour=rate,
            accrued_usd=accrued,
            oldest_running_id=oldest[0] if oldest else None,
            oldest_running_started_at=as_utc(oldest[1]) if oldest else None,
        )

    # -- events ---------------------------------------------------------------------------

    def add_event(
        self,
        type: str,
        message: str,
        *,
        level: str = EventLevel.INFO,
        source: str = EventSource.SYSTEM,
        container_id: str | None = None,
        task_id: str | None = None,
        old_value: str | None = None,
        new_value: str | None = None,
        details: dict | None = None,
        actor: str | None = None,
        ts: datetime | None = None,
    ) -> Event:
        ev = make_event(
            type,
            message,
            level=level,
            source=source,
            container_id=container_id,
            task_id=task_id,
            old_value=old_value,
            new_value=new_value,
            details=details,
            actor=actor,
            ts=ts,
        )
        with self.write() as s:
            s.add(ev)
        return ev

    def add_events(self, events: Sequence[Event]) -> None:
        if events:
            with self.write() as s:
                s.add_all(events)

    def events(
        self,
        *,
        container_id: str | None = None,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        level: str | None = None,
        min_level: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_id: int | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[Event]:
        """Events filtered by container, task, type, exact level or minimum level, and time range.

        Newest first unless `oldest_first`; `after_id` tails new events cheaply by primary key."""
        q = _filter_events(
            select(Event),
            container_id=container_id,
            task_id=task_id,
            types=types,
            level=level,
            min_level=min_level,
            since=since,
            until=until,
            after_id=after_id,
        )
        order = (Event.ts, Event.id) if oldest_first else (Event.ts.desc(), Event.id.desc())
        with self.read() as s:
            return list(s.scalars(q.order_by(*order).limit(limit)))

    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none): where a follower starts."""
        with self.read() as s:
            return s.scalar(select(func.max(Event.id))) or 0

    def count_events(self, **filters: Any) -> int:
        """How many events match `events()`'s filters (sizes an export's progress bar)."""
        with self.read() as s:
            return s.scalar(_filter_events(select(func.count(Event.id)), **filters)) or 0

    def event_rows(self, **filters: Any) -> Iterator[tuple]:
        """Every event matching `events()`'s filters, oldest first, as plain tuples in
        `EVENT_ROW_COLUMNS` order with `ts` as ISO 8601 UTC (see `event_batches`)."""
        for part in self.event_batches(**filters):
            yield from part

    def event_batches(self, *, batch: int = 10_000, **filters: Any) -> Iterator[list[tuple]]:
        """`event_rows` in lists of up to `batch` tuples: what an export of millions of rows
        streams. No ORM objects, and on SQLite no SQLAlchemy `Row` either: the rows come straight
        from the sqlite3 cursor with `ts` already made ISO in SQL (a Row and a Python conversion
        per row were most of an export's time, bench/events.py). Other databases stream through
        a server-side cursor (`stream_results`) and convert `ts` here."""
        ts_at = EVENT_ROW_COLUMNS.index("ts")
        with self.read() as s:
            conn = s.connection()
            cols: list[Any] = [getattr(Event, c) for c in EVENT_ROW_COLUMNS]
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # stored as `YYYY-MM-DD HH:MM:SS.ffffff` UTC: `event_row_ts` in SQL
                cols[ts_at] = func.replace(type_coerce(Event.ts, String), " ", "T").concat("+00:00")
            q = _filter_events(select(*cols), **filters).order_by(Event.ts, Event.id)
            if sqlite:
                # A plain (unbuffered) result fetches nothing itself: its DB-API cursor is read
                # directly, in batches.
                cursor = conn.execute(q).cursor
                while part := cursor.fetchmany(batch):
                    yield part
                return
            result = conn.execute(q.execution_options(stream_results=True, yield_per=batch))
            for rows in result.partitions():
                yield [(*r[:ts_at], event_row_ts(r[ts_at]), *r[ts_at + 1 :]) for r in rows]

    # -- heartbeats -----------------------------------------------------------------------

    def record_heartbeats(
        self,
        samples: Sequence[dict],
        container_updates: Sequence[dict] = (),
        events: Sequence[Event] = (),
    ) -> int:
        """One heartbeat cycle in one transaction: the samples, each container's heartbeat columns
        (`{"id": ..., "last_heartbeat_at": ..., "missed_heartbeats": ..., "health": ...}`) and the
        health-change events.

        Each sampled container's row also takes its newest sample (`last_sample_at`,
        `last_cpu_percent`, ...) unless it already holds a newer one, in the same UPDATE as its
        heartbeat columns: one statement per container whatever the mix."""
        with self.write() as s:
            conn = s.connection()
            # the newest sample per container (the later one on a tie, as the index orders them)
            latest: dict[str, dict] = {}
            for smp in samples:
                cur = latest.get(smp["container_id"])
                if cur is None or smp["ts"] >= cur["ts"]:
                    latest[smp["container_id"]] = smp
            groups: dict[tuple[tuple[str, ...], bool], list[dict]] = {}
            by_shape: dict[tuple[str, ...], list[dict]] = {}
            for u in container_updates:
                by_shape.setdefault(tuple(u), []).append(u)
            for shape, rows in by_shape.items():
                keys = tuple(sorted(k for k in shape if k != "id"))
                for u in rows:
                    groups.setdefault((keys, u["id"] in latest), []).append(u)
            updated = {u["id"] for u in container_updates}
            rest = [{"id": cid} for cid in latest if cid not in updated]
            if rest:
                groups.setdefault(((), True), []).extend(rest)
            for (keys, with_sample), rows in groups.items():
                if not keys and not with_sample:
                    continue
                columns = {"_id": [u["id"] for u in rows]}
                columns.update({k: [u[k] for u in rows] for k in keys})
                if with_sample:
                    picked = [latest[u["id"]] for u in rows]
                    columns.update(
                        {
                            f"_{k}": [p.get(k, d) for p in picked]
                            for k, d in _SAMPLE_DEFAULTS.items()
                        }
                    )
                _executemany(
                    conn,
                    ("update", keys, with_sample),
                    lambda keys=keys, with_sample=with_sample: _container_update(keys, with_sample),
                    columns,
                )
            if samples:  # after the container updates: their foreign-key checks find rows this
                # transaction already holds (no row lock to write on PostgreSQL)
                given = list(samples[0])
                columns = {k: [r[k] for r in samples] for k in given}
                for k, d in _HEARTBEAT_DEFAULTS.items():  # as an ORM insert fills them
                    columns.setdefault(k, [d] * len(samples))
                _executemany(
                    conn,
                    ("insert", tuple(columns)),
                    lambda: insert(Heartbeat.__table__),
                    columns,
                )
            s.add_all(events)
        return len(samples)

    def heartbeat_history(
        self, container_id: str, *, since: datetime | None = None, limit: int = 120
    ) -> list[Heartbeat]:
        """A container's most recent heartbeats, oldest first (ready for a sparkline)."""
        q = select(Heartbeat).where(Heartbeat.container_id == container_id)
        if since is not None:
            q = q.where(Heartbeat.ts >= since)
        with self.read() as s:
            rows = list(s.scalars(q.order_by(Heartbeat.ts.desc()).limit(limit)))
        return rows[::-1]

    def prune_heartbeats(self, before: datetime) -> int:
        """Delete heartbeats older than `before`; a container whose newest sample went with them
        shows none, as before any heartbeat."""
        with self.write() as s:
            n = s.execute(delete(Heartbeat).where(Heartbeat.ts < before)).rowcount or 0
            s.execute(
                update(Container)
                .where(Container.last_sample_at < before)
                .values({c: None for c in _SAMPLE})
            )
            return n

    def prune_history(
        self, events_before: datetime, runs_before: datetime, *, limit: int = PRUNE_BATCH
    ) -> tuple[int, int]:
        """Delete the oldest events before `events_before` and reconciler runs before `runs_before`,
        at most `limit` of each, through their time indexes; (events, runs) deleted. Bounded, so
        a backlog (retention shortened, or months unpruned) drains over cycles in short writes
        instead of one long lock; and no write at all when nothing is due."""
        tables = (
            (Event, Event.ts, events_before),
            (ReconcilerRun, ReconcilerRun.started_at, runs_before),
        )
        with self.read() as s:
            due = [
                s.scalar(select(m.id).where(col < t).limit(1)) is not None for m, col, t in tables
            ]
        if not any(due):
            return (0, 0)
        counts = []
        with self.write() as s:
            for (model, col, before), go in zip(tables, due, strict=True):
                oldest = select(model.id).where(col < before).order_by(col).limit(limit)
                q = delete(model).where(model.id.in_(oldest.scalar_subquery()))
                q = q.execution_options(synchronize_session=False)  # no RETURNING of every id
                counts.append((s.execute(q).rowcount or 0) if go else 0)
        return counts[0], counts[1]

    # -- reconciler runs and the lease -----------------------------------------------------

    def record_run(self, run: ReconcilerRun, events: Sequence[Event] = ()) -> ReconcilerRun:
        with self.write() as s:
            s.add(run)
            s.add_all(events)
        return run

    def runs(self, limit: int = 20) -> list[ReconcilerRun]:
        with self.read() as s:
            return list(
                s.scalars(select(ReconcilerRun).order_by(ReconcilerRun.id.desc()).limit(limit))
            )

    def stale_since(self) -> datetime | None:
        """When the view of the backends went stale: the first failed run since the last good one."""
        with self.read() as s:
            return _stale_since(s)

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
            return _get_setting(s, key, default)

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
            s.add_all(events)

    # -- views ----------------------------------------------------------------------------

    def container_views(
        self,
        *,
        now: datetime,
        recent_hours: float = 1.0,
        ids: Sequence[str] | None = None,
        limit: int = 5000,
    ) -> list[ContainerView]:
        """Active containers, plus those that ended within `recent_hours`, each with its latest heartbeat."""
        with self.read() as s:
            return _container_views(s, now=now, recent_hours=recent_hours, ids=ids, limit=limit)

    def spent_since(self, start: datetime, now: datetime, active: Sequence[ContainerView]) -> float:
        """Spend in a budget period: ended containers' final cost plus active ones' cost so far.

        A container that started before the period counts whole: the budget errs on the safe side."""
        with self.read() as s:
            return _spent_since(s, start, active)

    def reconciler_view(
        self, default_interval: float, *, now: datetime | None = None
    ) -> ReconcilerView:
        with self.read() as s:
            return _reconciler_view(s, default_interval, now or utcnow())

    def dashboard(
        self,
        *,
        now: datetime | None = None,
        budget: BudgetConfig | None = None,
        event_limit: int = 200,
        recent_hours: float = 1.0,
        reconcile_interval: float = 60.0,
        backend_label: str = "",
    ) -> DashboardView:
        """The one view query: containers with their latest heartbeat, recent events, budget, reconciler.

        One read transaction, so every part of the view is from the same moment."""
        from parhelia.state.budget import period_start

        now = now or utcnow()
        with self.read() as s:
            budget = budget or BudgetConfig(ceiling_usd=_get_setting(s, "budget.ceiling_usd", 25.0))
            containers = _container_views(s, now=now, recent_hours=recent_hours)
            events = _recent_event_views(s, event_limit)
            running = [c for c in containers if c.is_active]
            spent = _spent_since(s, period_start(now, budget.period), running)
            trend = _spend_trend(s, now)
            reconciler = _reconciler_view(s, reconcile_interval, now)
            plane = _get_setting(s, PLANE_KEY) or ""
            foreign = _foreign_sandboxes(s)
            in_grace = _in_grace(s)
        burn = sum(c.cost_rate_per_hour for c in running)
        gpus = sum(gpu_count(c.gpu) for c in running)
        return DashboardView(
            generated_at=now,
            containers=containers,
            events=events,
            budget=replace(summarize(budget, spent, burn, gpus, now), trend=trend),
            reconciler=reconciler,
            backend=backend_label,
            database=self.label,
            plane_id=plane,
            foreign=foreign,
            in_grace=in_grace,
        )

    def foreign_sandboxes(self) -> list[ForeignSandbox]:
        with self.read() as s:
            return _foreign_sandboxes(s)

    def container_detail(
        self, ref: str, *, now: datetime | None = None, heartbeats: int = 120, events: int = 50
    ) -> ContainerDetail:
        now = now or utcnow()
        c = self.get_container(ref)
        view = self.container_views(now=now, ids=[c.id])[0]
        task_status = None
        if c.task_id:
            with self.read() as s:
                t = s.get(Task, c.task_id)
                task_status = t.status if t else None
        return ContainerDetail(
            container=view,
            heartbeats=[
                to_heartbeat_view(h) for h in self.heartbeat_history(c.id, limit=heartbeats)
            ],
            events=[to_event_view(e) for e in self.events(container_id=c.id, limit=events)],
            task_status=task_status,
            metadata=dict(c.meta or {}),
        )

    # -- loops support (reconciler, heartbeat poller, budget guard) -----------------------

    def apply_changes(
        self,
        changes: Sequence[RowChange] = (),
        *,
        new_rows: Sequence[NewRow] = (),
        new_tasks: Sequence[Task] = (),
        events: Sequence[Event | dict] = (),
    ) -> Applied:
        """A loop cycle's writes in one transaction, a few statements whatever the count.

        A change applies only while its row still holds the `expect`ed values: another process may
        have moved the row since the loop read it, and a loop must never undo a user's terminate.
        Skipped changes and rows drop their events. New tasks that already exist are left alone
        (placeholders for orphans' task ids); a new row whose id or sandbox is taken is skipped."""
        now = utcnow()
        with self.write() as s:
            current: dict[str, Any] = {}
            for chunk in _chunks([c.id for c in changes]):
                q = select(*(getattr(Container, k) for k in _EXPECTABLE)).where(
                    Container.id.in_(chunk)
                )
                current.update({row.id: row._mapping for row in s.execute(q)})
            applied = [
                c
                for c in changes
                if c.id in current and all(current[c.id][k] == v for k, v in c.expect.items())
            ]
            if applied:
                s.execute(
                    update(Container),
                    [{"id": c.id, "updated_at": now, **c.fields} for c in applied],
                )
                moved = [c.id for c in applied if "state" in c.fields or "sandbox_id" in c.fields]
                if moved:
                    _follow_tasks(s, moved, now)
            if new_tasks:
                known = set()
                for chunk in _chunks([t.id for t in new_tasks]):
                    known.update(s.scalars(select(Task.id).where(Task.id.in_(chunk))))
                s.add_all([t for t in new_tasks if t.id not in known])
                s.flush()
            inserted = self._insertable(s, new_rows)
            s.add_all([r.container for r in inserted])
            s.flush()
            _add_events(
                s,
                [
                    *events,
                    *(e for c in applied for e in c.events),
                    *(e for r in inserted for e in r.events),
                ],
            )
        return Applied(
            changed=frozenset(c.id for c in applied),
            inserted=frozenset(r.container.id for r in inserted),
        )

    @staticmethod
    def _insertable(s: Session, rows: Sequence[NewRow]) -> list[NewRow]:
        taken: set[Any] = set()
        for chunk in _chunks([r.container.id for r in rows]):
            taken.update(s.scalars(select(Container.id).where(Container.id.in_(chunk))))
        pairs = [(r.container.backend, r.container.sandbox_id) for r in rows]
        for backend in {b for b, _ in pairs}:
            sids = [sid for b, sid in pairs if b == backend and sid]
            for chunk in _chunks(sids):
                q = select(Container.sandbox_id).where(
                    Container.backend == backend, Container.sandbox_id.in_(chunk)
                )
                taken.update((backend, sid) for sid in s.scalars(q))
        return [
            r
            for r in rows
            if r.container.id not in taken
            and (r.container.backend, r.container.sandbox_id) not in taken
        ]

    def container_rows(self, states: Iterable[str]) -> list[Any]:
        """Containers in `states` as plain read-only rows (attribute access, no ORM instances):
        a loop scanning ten thousand containers cannot afford to build ten thousand models."""
        cols = [c for c in Container.__table__.columns if c.name != "metadata"]
        q = select(*cols).where(Container.state.in_(list(states))).order_by(Container.created_at)
        with self.read() as s:
            return list(s.execute(q))

    def containers_matching(
        self, backend: str, *, ids: Iterable[str] = (), sandbox_ids: Iterable[str] = ()
    ) -> list[Container]:
        """Rows (any state) with one of these ids, or one of these sandbox ids on `backend`."""
        found: dict[str, Container] = {}
        with self.read() as s:
            for chunk in _chunks(list(ids)):
                found.update(
                    (c.id, c) for c in s.scalars(select(Container).where(Container.id.in_(chunk)))
                )
            for chunk in _chunks(list(sandbox_ids)):
                q = select(Container).where(
                    Container.backend == backend, Container.sandbox_id.in_(chunk)
                )
                found.update((c.id, c) for c in s.scalars(q))
        return list(found.values())

    def settings_with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every persisted setting whose key starts with `prefix` (one query for the guard's policies)."""
        with self.read() as s:
            rows = s.scalars(select(Setting).where(Setting.key.startswith(prefix, autoescape=True)))
            return {r.key: r.value for r in rows}


# -- view queries (on a caller's session, so `dashboard()` reads them in one transaction) ------


EVENT_ROW_COLUMNS = (
    "id",
    "ts",
    "type",
    "level",
    "source",
    "container_id",
    "task_id",
    "old_value",
    "new_value",
    "actor",
    "message",
)


def event_row_ts(value: Any) -> str:
    """An exported row's time as ISO 8601 UTC with microseconds (as SQLite stores it, so both
    databases export the same text), from SQLite's stored text or a driver's datetime."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    return value.replace(" ", "T", 1) + "+00:00"


def _filter_events(
    q: Any,
    *,
    container_id: str | None = None,
    task_id: str | None = None,
    types: Iterable[str] | None = None,
    level: str | None = None,
    min_level: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int | None = None,
) -> Any:
    """The one place the event filters become SQL (`Store.events`, `Store.event_rows`)."""
    if container_id is not None:
        q = q.where(Event.container_id == container_id)
    if task_id is not None:
        q = q.where(Event.task_id == task_id)
    if types:
        types = list(types)
        q = q.where(Event.type.in_(types) if len(types) > 1 else Event.type == types[0])
    if level is not None:
        q = q.where(Event.level == level)
    if min_level is not None:
        allowed = [
            lv.value for lv, n in LEVEL_ORDER.items() if n >= LEVEL_ORDER[EventLevel(min_level)]
        ]
        q = q.where(Event.level.in_(allowed))
    if since is not None:
        q = q.where(Event.ts >= since)
    if until is not None:
        q = q.where(Event.ts <= until)
    if after_id is not None:
        q = q.where(Event.id > after_id)
    return q


def _get_setting(s: Session, key: str, default: Any = None) -> Any:
    row = s.get(Setting, key)
    return default if row is None else row.value


def _in_grace(s: Session) -> list[GraceSandbox]:
    rows = s.scalars(select(Setting).where(Setting.key.startswith(IN_GRACE_PREFIX))).all()
    out = [
        GraceSandbox(row.key.removeprefix(IN_GRACE_PREFIX), sid, datetime.fromisoformat(ends))
        for row in rows
        for sid, ends in (row.value or {}).items()
    ]
    return sorted(out, key=lambda g: (g.grace_ends_at, g.sandbox_id))


def _foreign_sandboxes(s: Session) -> list[ForeignSandbox]:
    rows = s.scalars(select(Setting).where(Setting.key.startswith(FOREIGN_PREFIX))).all()
    out = [
        ForeignSandbox(
            backend=row.key.removeprefix(FOREIGN_PREFIX),
            sandbox_id=sid,
            plane_id=str(seen.get("plane", "")),
            container_id=seen.get("container"),
            task_id=seen.get("task"),
        )
        for row in rows
        for sid, seen in (row.value or {}).items()
    ]
    return sorted(out, key=lambda f: (f.backend, f.sandbox_id))


def _stale_since(s: Session) -> datetime | None:
    last_ok = s.scalar(select(func.max(ReconcilerRun.id)).where(ReconcilerRun.error.is_(None)))
    q = select(func.min(ReconcilerRun.started_at)).where(ReconcilerRun.error.is_not(None))
    if last_ok is not None:
        q = q.where(ReconcilerRun.id > last_ok)
    return as_utc(s.scalar(q))


def _spent_since(s: Session, start: datetime, active: Sequence[ContainerView]) -> float:
    ended = (
        s.scalar(
            select(func.coalesce(func.sum(Container.cost_accrued_usd), 0.0)).where(
                Container.state.not_in(ACTIVE), Container.terminated_at >= start
            )
        )
        or 0.0
    )
    return ended + sum(c.cost_accrued_usd for c in active if c.is_active)


def spend_trend_query(now: datetime) -> Any:
    """The containers that ran in the trend's day (live, or ended since it began)."""
    from parhelia.state.spend import TREND_HOURS

    cutoff = now - timedelta(hours=TREND_HOURS)
    return select(
        Container.state,
        Container.started_at,
        Container.created_at,
        Container.terminated_at,
        Container.cost_rate_per_hour,
        Container.cost_accrued_usd,
    ).where(or_(Container.state.in_((*ACTIVE, "stopped")), Container.terminated_at >= cutoff))


def _spend_trend(s: Session, now: datetime) -> tuple[float, ...]:
    """The last day's spend per hour (`spend.hourly_trend`) from the containers that ran in it:
    the live ones and those ended since (both columns indexed; no events, no heartbeats)."""
    from parhelia.state.spend import hourly_trend

    spans = []
    for state, started, created, ended, rate, accrued in s.execute(spend_trend_query(now)):
        if state in ACTIVE:  # as `_container_views` prices a live one
            accrued = max(accrued, accrued_cost(rate, as_utc(started), None, now))
        spans.append(("all", started or created, ended, accrued))
    return hourly_trend(spans, now)


def _reconciler_view(s: Session, default_interval: float, now: datetime) -> ReconcilerView:
    last = s.scalars(select(ReconcilerRun).order_by(ReconcilerRun.id.desc()).limit(1)).first()
    lease = s.get(Lease, RECONCILER_LEASE)
    counts = {}
    if last is not None:
        counts = {k: getattr(last, k) for k in RUN_COUNTS}
        counts["duration_ms"] = round(last.duration_ms, 1)
    stale_since = _stale_since(s) if last is not None and last.error else None
    last_error = last.error if last else None
    cycle = as_utc(lease.cycle_started_at) if lease else None
    if cycle is not None and (now - cycle).total_seconds() > lease.interval_seconds:
        # a cycle still running past its interval: what is shown is as old as its start
        stale_since = min(stale_since or cycle, cycle)
        last_error = (
            f"a reconcile cycle has run {(now - cycle).total_seconds():.0f} s, over its "
            f"{lease.interval_seconds:g} s interval"
            + (f"; before: {last_error}" if last_error else "")
        )
    return ReconcilerView(
        last_run_at=as_utc(last.finished_at or last.started_at) if last else None,
        next_run_at=as_utc(lease.next_run_at) if lease else None,
        interval_seconds=lease.interval_seconds if lease else default_interval,
        lease_holder=lease.holder if lease else None,
        lease_expires_at=as_utc(lease.expires_at) if lease else None,
        last_error=last_error,
        stale_since=stale_since,
        last_counts=counts,
        lease_dead=bool(lease) and is_gone(lease.host, lease.pid, lease.pid_started),
        cycle_started_at=cycle,
    )


def _container_views(
    s: Session,
    *,
    now: datetime,
    recent_hours: float = 1.0,
    ids: Sequence[str] | None = None,
    limit: int = 5000,
) -> list[ContainerView]:
    # The latest sample is on the container row (see `Store.record_heartbeats`): no search into
    # `heartbeats` per container. Plain column values, not ORM instances, and timestamps and tags
    # converted here once per distinct value: per-value type processing and ORM instances were
    # most of the dashboard's time (bench/store.py).
    q = (
        select(*_VIEW_SELECT, Task.prompt, _RATE_SOURCE)
        .select_from(Container)
        .outerjoin(Task, Task.id == Container.task_id)
    )
    if ids is not None:
        q = q.where(Container.id.in_(list(ids)))
    else:
        cutoff = now - timedelta(hours=recent_hours)
        # Stopped rows (the agent exited; the sandbox is winding down) are shown until terminated.
        q = q.where(
            or_(Container.state.in_((*ACTIVE, "stopped")), Container.terminated_at >= cutoff)
        )
    q = q.order_by(Container.created_at).limit(limit)
    rows = s.execute(q).all()
    if not rows:
        return []
    cols = list(zip(*rows, strict=True))
    for i in _VIEW_TIMESTAMPS:
        cols[i] = _convert_distinct(cols[i], _aware_utc)
    cols[_VIEW_TAGS] = _convert_distinct(cols[_VIEW_TAGS], _json_value)
    views = []
    for (
        cid,
        backend,
        sandbox_id,
        state,
        health,
        task_id,
        created_at,
        started_at,
        terminated_at,
        last_heartbeat_at,
        missed,
        cpu_cores,
        memory_mib,
        gpu,
        region,
        rate,
        accrued,
        cpu,
        mem,
        memp,
        alive,
        reason,
        exit_code,
        tags,
        prompt,
        rate_source,
    ) in zip(*cols, strict=True):
        if state in ACTIVE:
            accrued = max(accrued, accrued_cost(rate, started_at, None, now))
        views.append(
            ContainerView(
                id=cid,
                backend=backend,
                sandbox_id=sandbox_id,
                state=state,
                health=health,
                task_id=task_id,
                task_prompt=prompt,
                created_at=created_at,
                started_at=started_at,
                terminated_at=terminated_at,
                last_heartbeat_at=last_heartbeat_at,
                missed_heartbeats=missed,
                cpu_cores=cpu_cores,
                memory_mib=memory_mib,
                gpu=gpu,
                region=region,
                cost_rate_per_hour=rate,
                cost_accrued_usd=round(accrued, 6),
                cpu_percent=cpu,
                memory_used_mib=mem,
                memory_percent=memp,
                agent_alive=alive,
                termination_reason=reason,
                exit_code=exit_code,
                tags=dict(tags or {}),  # its own copy: rows share converted values
                rate_source=rate_source,
                rate_estimated=is_estimated(rate_source),
            )
        )
    return views


def _recent_event_views(s: Session, limit: int) -> list[EventView]:
    """The newest `limit` events, oldest first, as `Store.events(limit=...)` orders them."""
    q = (
        select(
            Event.id,
            _unprocessed(Event.ts),
            Event.type,
            Event.level,
            Event.source,
            Event.message,
            Event.container_id,
            Event.task_id,
            Event.old_value,
            Event.new_value,
            Event.actor,
        )
        .order_by(Event.ts.desc(), Event.id.desc())
        .limit(limit)
    )
    rows = s.execute(q).all()
    if not rows:
        return []
    cols = list(zip(*reversed(rows), strict=True))
    cols[1] = _convert_distinct(cols[1], _aware_utc)
    return [
        EventView(
            id=eid or 0,
            ts=ts,
            type=type_,
            level=level,
            source=source,
            message=message,
            container_id=container_id,
            task_id=task_id,
            old_value=old,
            new_value=new,
            actor=actor,
        )
        for (
            eid,
            ts,
            type_,
            level,
            source,
            message,
            container_id,
            task_id,
            old,
            new,
            actor,
        ) in zip(*cols, strict=True)
    ]


def _unprocessed(col: Any) -> Any:
    """`col` as the driver returns it (an SQLite timestamp or JSON column comes back as text),
    for `_convert_distinct`."""
    return type_coerce(col, String).label(col.key)


def is_estimated(rate_source: str | None) -> bool:
    """Whether an orphan's `meta.rate_source` is a guess from `[defaults]` (older rows: "assumed")."""
    return (rate_source or "").startswith(("estimated", "assumed"))


# An orphan's `meta.rate_source` (None for other rows), read in SQL so views skip the whole JSON.
_RATE_SOURCE = Container.__table__.c["metadata"]["rate_source"].as_string().label("rate_source")

# `_VIEW_COLUMNS` with the timestamps and tags left for `_convert_distinct`, and where they are.
_VIEW_SELECT = tuple(
    _unprocessed(c) if isinstance(c.type, (UTCDateTime, JSON)) else c for c in _VIEW_COLUMNS
)
_VIEW_TIMESTAMPS = tuple(i for i, c in enumerate(_VIEW_COLUMNS) if isinstance(c.type, UTCDateTime))
_VIEW_TAGS = next(i for i, c in enumerate(_VIEW_COLUMNS) if c.name == "tags")


def _convert_distinct(values: Sequence[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """`fn` over `values`, called once per distinct value (a fleet's rows share many timestamps
    and tags), so results may be shared between rows."""
    try:
        done = {v: fn(v) for v in set(values)}
    except TypeError:  # unhashable (a driver that decodes JSON itself)
        return [fn(v) for v in values]
    return list(map(done.__getitem__, values))


def _aware_utc(value: Any) -> datetime | None:
    """A stored timestamp as the column type returns it: aware UTC."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return as_utc(value)


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- loops support types --------------------------------------------------------------------

_EXPECTABLE = ("id", "state", "sandbox_id", "health", "missed_heartbeats", "updated_at")


@dataclass(frozen=True)
class RowChange:
    """Fields to set on one container row, applied only if the row still has `expect`'s values
    (keys from `_EXPECTABLE`), with the events that record it."""

    id: str
    fields: dict
    expect: dict
    events: tuple[Event | dict, ...] = ()


@dataclass(frozen=True)
class NewRow:
    container: Container
    events: tuple[Event | dict, ...] = ()


@dataclass(frozen=True)
class Applied:
    changed: frozenset[str]
    inserted: frozenset[str]


def _follow_tasks(s: Session, container_ids: Sequence[str], now: datetime) -> None:
    """Bring these containers' tasks to the status their containers give them
    (`parhelia.state.task_end`), with an event for each task that moves."""
    for chunk in _chunks(list(container_ids)):
        q = (
            select(
                Container.id,
                Container.state,
                Container.sandbox_id,
                Container.exit_code,
                Container.termination_reason,
                Container.started_at,
                Container.terminated_at,
                Task.id,
                Task.status,
                Task.timeout_minutes,
            )
            .join(Task, Task.id == Container.task_id)
            .where(Container.id.in_(chunk))
        )
        for cid, state, sid, code, reason, started, ended, tid, status, minutes in s.execute(q):
            derived = task_status_for(
                state,
                has_sandbox=sid is not None,
                exit_code=code,
                reason=reason,
                started_at=as_utc(started),
                ended_at=as_utc(ended),
                timeout_seconds=(minutes or 0) * 60.0,
            )
            new = next_task_status(status, derived)
            if new is None:
                continue
            ended_now = new not in LIVE_TASK_STATUSES
            s.execute(
                update(Task)
                .where(Task.id == tid)
                .values(status=new.value, updated_at=now, finished_at=now if ended_now else None)
            )
            if new == TaskStatus.CANCELLED or (status, new) == (
                TaskStatus.PENDING,
                TaskStatus.RUNNING,
            ):
                continue  # the container's own event says it (who stopped it, or that it started)
            s.add(
                Event(
                    ts=now,
                    type="task.status",
                    level=EventLevel.WARNING
                    if new in (TaskStatus.FAILED, TaskStatus.TIMED_OUT)
                    else EventLevel.INFO,
                    task_id=tid,  # a task's event: `task show` lists it, the message names cid
                    old_value=status,
                    new_value=new.value,
                    message=f"task {tid} {status} → {new.value} (container {cid} {state}"
                    + (f", exit {code}" if code is not None else "")
                    + (f", {reason}" if reason else "")
                    + ")",
                    source=EventSource.SYSTEM,
                    actor="store",
                )
            )


def _add_events(s: Session, events: Sequence[Event | dict]) -> None:
    """Events as models, or as plain dicts of Event columns (bulk-inserted: far cheaper by the
    thousand than building models)."""
    s.add_all([e for e in events if not isinstance(e, dict)])
    rows = [e for e in events if isinstance(e, dict)]
    if rows:
        s.execute(insert(Event), rows)


def _container_update(keys: tuple[str, ...], with_sample: bool) -> Any:
    """UPDATE containers by `_id` setting `keys`, and with `with_sample` the latest-sample columns
    from `_ts`, `_cpu_percent`, ... unless the row already holds a newer sample."""
    table = Container.__table__
    values: dict[str, Any] = {k: bindparam(k, type_=table.c[k].type) for k in keys}
    if with_sample:
        last = table.c.last_sample_at
        newer = or_(last.is_(None), last <= bindparam("_ts", type_=last.type))
        for dst, src in _SAMPLE.items():
            values[dst] = case(
                (newer, bindparam(f"_{src}", type_=table.c[dst].type)), else_=table.c[dst]
            )
    return update(table).where(table.c.id == bindparam("_id")).values(values)


_compiled: dict[tuple[Any, ...], tuple[str, list[str], list[Any]]] = {}


def _executemany(
    conn: Connection, key: tuple[Any, ...], build: Callable[[], Any], columns: dict[str, list]
) -> None:
    """executemany of the Core statement `build()` (cached under `key`) over rows given column by
    column: `columns` maps each parameter name to its values, one per row.

    On SQLite the rows go straight to the driver, each value bound through its column's own type
    (so naive datetimes are still refused), once per distinct value since a cycle's rows share
    their timestamps: SQLAlchemy's per-row parameter building cost more than SQLite itself
    (bench/store.py)."""
    n = len(next(iter(columns.values()), ()))
    if not n:
        return
    dialect = conn.dialect
    if dialect.name == "postgresql":
        return _executemany_pg(conn, key, columns)
    if dialect.name != "sqlite":
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        conn.execute(build(), [dict(zip(names, vals, strict=True)) for vals in rows])
        return
    cached = _compiled.get((dialect.name, *key))
    if cached is None:
        compiled = build().compile(dialect=dialect, column_keys=list(columns))
        names = list(compiled.positiontup or ())
        procs = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ]
        cached = _compiled[(dialect.name, *key)] = (str(compiled), names, procs)
    sql, names, procs = cached
    bound: list[list] = []
    done: dict[str, list] = {}
    for name, proc in zip(names, procs, strict=True):
        if name not in done:  # a parameter may appear more than once in the statement
            values = columns[name]
            done[name] = values if proc is None else _bound(values, proc)
        bound.append(done[name])
    conn.exec_driver_sql(sql, list(zip(*bound, strict=True)))


def _executemany_pg(conn: Connection, key: tuple[Any, ...], columns: dict[str, list]) -> None:
    """`_executemany` on PostgreSQL: COPY for the heartbeat rows, one UPDATE from arrays for the
    container updates (`parhelia.state.pg_ingest`)."""
    from parhelia.state import pg_ingest

    if key[0] == "insert":
        pg_ingest.copy_rows(conn, Heartbeat.__table__, columns, _bound)
        return
    _, keys, with_sample = key
    table = Container.__table__
    types = {"_id": table.c.id.type, **{k: table.c[k].type for k in keys}}
    set_sql = {k: f"v.{k}" for k in keys}
    if with_sample:
        newer = "(t.last_sample_at IS NULL OR t.last_sample_at <= v._ts)"
        for dst, src in _SAMPLE.items():
            types[f"_{src}"] = table.c[dst].type
            set_sql[dst] = f"CASE WHEN {newer} THEN v._{src} ELSE t.{dst} END"
    pg_ingest.update_from_staging(conn, table, columns, types, set_sql, _bound)


def _bound(values: list, proc: Callable[[Any], Any]) -> list:
    """`proc` over `values` (None stays None), called once per distinct value."""
    try:
        done = {v: proc(v) for v in set(values) if v is not None}
    except TypeError:  # unhashable (JSON values)
        return [None if v is None else proc(v) for v in values]
    done[None] = None
    return list(map(done.__getitem__, values))


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- helpers ------------------------------------------------------------------------------


def _unavailable(url: str, exc: Exception) -> ParheliaError:
    """E701 (E703 for a damaged file) naming the URL and the cause: the database could not be opened."""
    return db.open_error(url, exc)


def make_event(
    type: str,
    message: str,
    *,
    level: str = EventLevel.INFO,
    source: str = EventSource.SYSTEM,
    container_id: str | None = None,
    task_id: str | None = None,
    old_value: str | None = None,
    new_value: str | None = None,
    details: dict | None = None,
    actor: str | None = None,
    ts: datetime | None = None,
) -> Event:
    return Event(
        ts=ts or utcnow(),
        type=type,
        level=str(level),
        source=str(source),
        container_id=container_id,
        task_id=task_id,
        old_value=old_value,
        new_value=new_value,
        message=message,
        details=details or {},
        actor=actor,
    )


def to_container_view(
    c: Container,
    prompt: str | None,
    cpu: float | None,
    mem: float | None,
    memp: float | None,
    alive: bool | None,
    now: datetime,
) -> ContainerView:
    live = c.state in ACTIVE
    accrued = (
        max(c.cost_accrued_usd, accrued_cost(c.cost_rate_per_hour, c.started_at, None, now))
        if live
        else c.cost_accrued_usd
    )
    return ContainerView(
        id=c.id,
        backend=c.backend,
        sandbox_id=c.sandbox_id,
        state=c.state,
        health=c.health,  # shown as `ContainerView` maps it for the state
        task_id=c.task_id,
        task_prompt=prompt,
        created_at=as_utc(c.created_at),
        started_at=as_utc(c.started_at),
        terminated_at=as_utc(c.terminated_at),
        last_heartbeat_at=as_utc(c.last_heartbeat_at),
        missed_heartbeats=c.missed_heartbeats,
        cpu_cores=c.cpu_cores,
        memory_mib=c.memory_mib,
        gpu=c.gpu,
        region=c.region,
        cost_rate_per_hour=c.cost_rate_per_hour,
        cost_accrued_usd=round(accrued, 6),
        cpu_percent=cpu,
        memory_used_mib=mem,
        memory_percent=memp,
        agent_alive=alive,
        termination_reason=c.termination_reason,
        exit_code=c.exit_code,
        tags=dict(c.tags or {}),
    )


def to_event_view(e: Event) -> EventView:
    return EventView(
        id=e.id or 0,
        ts=as_utc(e.ts),
        type=e.type,
        level=e.level,
        source=e.source,
        message=e.message,
        container_id=e.container_id,
        task_id=e.task_id,
        old_value=e.old_value,
        new_value=e.new_value,
        actor=e.actor,
    )


def to_heartbeat_view(h: Heartbeat) -> HeartbeatView:
    return HeartbeatView(
        ts=as_utc(h.ts),
        cpu_percent=h.cpu_percent,
        memory_mib=h.memory_mib,
        memory_percent=h.memory_percent,
        agent_alive=h.agent_alive,
    )


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


__all__ = [
    "ACTIVE",
    "RECONCILER_LEASE",
    "Applied",
    "Health",
    "NewRow",
    "RowChange",
    "Stats",
    "Store",
    "make_event",
    "to_container_view",
    "to_event_view",
    "to_heartbeat_view",
]
