"""The bulk SQL paths, mixed into `Store` as `BulkWrites`: a heartbeat cycle in one transaction,
the loops' guarded row changes (`apply_changes`), retention pruning, and the executemany / COPY
machinery under them (`parhelia.state.pg_ingest` on PostgreSQL).

Loops write thousands of rows a cycle; these paths keep that to a few statements and skip the ORM
where building models cost more than the database (bench/store.py, bench/reconcile.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlmodel import Session

from parhelia.state.enums import LIVE_TASK_STATUSES, EventLevel, EventSource, TaskStatus
from parhelia.state.event_log import write_events
from parhelia.state.event_types import EventType
from parhelia.state.models import (
    HEARTBEATS_STAGED,
    Container,
    Event,
    Heartbeat,
    ReconcilerRun,
    Task,
)
from parhelia.state.task_end import next_task_status, task_status_for
from parhelia.state.timeutil import as_utc, utcnow

PRUNE_BATCH = 2000  # most events (and runs) one retention pass deletes: a short write lock
# On SQLite, samples gather in `heartbeats_staged` until about this many, then go into `heartbeats`
# in container order: twenty cycles of 1,000 containers write each index leaf once, not twenty
# times. Bounded, since history readers scan the staged rows (no index: it would cost what it
# saves): 20,000 rows are a few milliseconds.
MERGE_ROWS = 20_000
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
_ID = itemgetter("id")
_CONTAINER_ID = itemgetter("container_id")


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
    """A container row to insert, as its column values (`Container.__table__`'s keys; the rest
    take their defaults), with the events that record it. Plain values: a reconcile recording
    500 orphans spent a third of its time building and flushing models (bench/reconcile.py)."""

    values: dict
    events: tuple[Event | dict, ...] = ()

    @property
    def id(self) -> str:
        return self.values["id"]


@dataclass(frozen=True)
class Applied:
    changed: frozenset[str]
    inserted: frozenset[str]


class BulkWrites:
    """`Store`'s loop-sized writes: heartbeat cycles, the reconciler's changes, retention.
    A mixin of `Store`, whose `read()` and `write()` sessions it uses."""

    def record_heartbeats(
        self,
        samples: Sequence[dict],
        container_updates: Sequence[dict] = (),
        events: Sequence[Event] = (),
    ) -> int:
        """One heartbeat cycle in one transaction: the samples, each container's heartbeat columns
        (`{"id": ..., "last_heartbeat_at": ..., "missed_heartbeats": ..., "health": ...}`) and the
        health-change events. On SQLite, once `MERGE_ROWS` samples are staged, a second
        transaction then merges them (`_merge_trusted`; if it fails, the cycle is stored all the
        same and the next one merges).

        Each sampled container's row also takes its newest sample (`last_sample_at`,
        `last_cpu_percent`, ...) unless it already holds a newer one, in the same UPDATE as its
        heartbeat columns: one statement per container whatever the mix (on SQLite, a second one
        if some row holds a newer sample: `_update_newer`).

        A call with nothing to write takes no write lock (a fleet with nothing running)."""
        if not (samples or container_updates or events):
            return 0
        merge = False
        with self.write() as s:
            conn = s.connection()
            latest = _newest_per_container(samples)
            groups: dict[tuple[tuple[str, ...], bool], list[dict]] = {}
            # a poller's cycle is one or two shapes, nearly every row sampled: grouped by whole
            # lists where it can (a loop over each row was a tenth of the cycle, bench/store.py)
            shapes = list(map(tuple, container_updates))
            by_shape: dict[tuple[str, ...], list[dict]] = {}
            if len(set(shapes)) == 1:
                by_shape[shapes[0]] = list(container_updates)
            else:
                for shape, u in zip(shapes, container_updates, strict=True):
                    by_shape.setdefault(shape, []).append(u)
            for shape, rows in by_shape.items():
                keys = tuple(sorted(k for k in shape if k != "id"))
                if all(map(latest.__contains__, map(_ID, rows))):
                    groups.setdefault((keys, True), []).extend(rows)
                    continue
                for u in rows:
                    groups.setdefault((keys, u["id"] in latest), []).append(u)
            updated = set(map(_ID, container_updates))
            rest = [{"id": cid} for cid in latest if cid not in updated]
            if rest:
                groups.setdefault(((), True), []).extend(rest)
            for (keys, with_sample), rows in groups.items():
                if not keys and not with_sample:
                    continue
                ids = list(map(_ID, rows))
                columns = {"_id": ids}
                columns.update({k: list(map(itemgetter(k), rows)) for k in keys})
                if with_sample:  # samples have the first one's keys (as the INSERT below takes)
                    picked = list(map(latest.__getitem__, ids))
                    for k, d in _SAMPLE_DEFAULTS.items():
                        columns[f"_{k}"] = (
                            list(map(itemgetter(k), picked)) if k in samples[0] else [d] * len(ids)
                        )
                if with_sample and conn.dialect.name == "sqlite":
                    _update_newer(conn, keys, columns)
                    continue
                _executemany(
                    conn,
                    ("update", keys, with_sample),
                    lambda keys=keys, with_sample=with_sample: _container_update(keys, with_sample),
                    columns,
                )
            if samples:  # after the container updates; the heartbeats' container check (a foreign
                # key on SQLite, one statement-level trigger on PostgreSQL: migration 0007) refuses
                # the whole cycle if one names no container
                columns = {k: list(map(itemgetter(k), samples)) for k in samples[0]}
                for k, d in _HEARTBEAT_DEFAULTS.items():  # as an ORM insert fills them
                    columns.setdefault(k, [d] * len(samples))
                # PostgreSQL copies them into `heartbeats`; SQLite stages them (MERGE_ROWS)
                staged = conn.dialect.name != "postgresql"
                table = HEARTBEATS_STAGED if staged else Heartbeat.__table__
                _executemany(
                    conn, ("insert", table.name, tuple(columns)), lambda: insert(table), columns
                )
                merge = staged and _merge_due(conn, MERGE_ROWS)
            write_events(s, events)
        if merge:
            self._merge_trusted(at_least=MERGE_ROWS)
        return len(samples)

    def heartbeat_history(
        self, container_id: str, *, since: datetime | None = None, limit: int = 120
    ) -> list[Heartbeat]:
        """A container's most recent heartbeats, oldest first (ready for a sparkline): from
        `heartbeats` and the samples still staged (`MERGE_ROWS`), whose `id` is None."""
        q = select(Heartbeat).where(Heartbeat.container_id == container_id)
        st = HEARTBEATS_STAGED.c
        staged = select(*st).where(st.container_id == container_id)
        if since is not None:
            q = q.where(Heartbeat.ts >= since)
            staged = staged.where(st.ts >= since)
        with self.read() as s:
            rows = list(s.scalars(q.order_by(Heartbeat.ts.desc()).limit(limit)))
            newer = [
                Heartbeat(**{k: v for k, v in r._mapping.items() if k != "id"})
                for r in s.execute(staged.order_by(st.ts.desc(), st.id.desc()).limit(limit))
            ]
        if newer:  # staged ones first: on a tie of `ts` they are the later ones written
            rows = sorted(newer + rows, key=_TS, reverse=True)[:limit]
        return rows[::-1]

    def merge_heartbeats(self) -> int:
        """Move every staged sample into `heartbeats` now (a cycle does it once `MERGE_ROWS` have
        gathered); the samples moved. For a measurement that must pay for all it wrote, and a
        copy of the store. Nothing staged, nothing is written."""
        with self.read() as s:
            if s.scalar(select(HEARTBEATS_STAGED.c.id).limit(1)) is None:
                return 0
            sqlite = s.connection().dialect.name == "sqlite"
        if sqlite:
            return self._merge_trusted()
        with self.write() as s:
            return _merge_staged(s.connection())

    def _merge_trusted(self, at_least: int = 1) -> int:
        """SQLite: `_merge_staged` in a write transaction of its own, with foreign-key checks off.
        Each staged sample's container was checked when it was staged, and it cannot have gone
        since (deleting a container deletes its staged samples). With checks on, the staged table
        emptied row by row instead of at once, and a 1,000-sample cycle cost ~0.7 ms more (A/B
        of the bench/store.py cycle). The checks are back on before the connection is used
        again, or the connection is discarded."""
        if self._checkpointer is not None:
            self._checkpointer.before_write()
        try:
            with self._write_engine.connect() as conn:
                driver = conn.connection.driver_connection
                driver.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, as it must be
                try:
                    with conn.begin():
                        n = _merge_staged(conn, at_least=at_least)
                finally:
                    driver.execute("PRAGMA foreign_keys=ON")  # a no-op inside a transaction:
                    if driver.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
                        conn.invalidate()  # one left open by a failed rollback goes, unchecked
        except IntegrityError:
            raise
        except DatabaseError as exc:  # as `Store.write`: coded, never E900
            raise self._db_error(exc) from exc
        if self._checkpointer is not None:
            self._checkpointer.poke()
        return n

    def prune_heartbeats(self, before: datetime) -> int:
        """Delete heartbeats older than `before` (staged or not); a container whose newest sample
        went with them shows none, as before any heartbeat. No write at all when nothing is due
        (a read first, as `prune_history`): the poller calls it every cycle, and its write
        transaction (scanning the containers and the staged samples) held up every other writer."""
        due = (
            select(Heartbeat.id).where(Heartbeat.ts < before).limit(1),
            select(HEARTBEATS_STAGED.c.id).where(HEARTBEATS_STAGED.c.ts < before).limit(1),
            select(Container.id).where(Container.last_sample_at < before).limit(1),
        )
        with self.read() as s:
            if all(s.scalar(q) is None for q in due):
                return 0
        with self.write() as s:
            n = s.execute(delete(Heartbeat).where(Heartbeat.ts < before)).rowcount or 0
            old = delete(HEARTBEATS_STAGED).where(HEARTBEATS_STAGED.c.ts < before)
            n += s.execute(old).rowcount or 0
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
                rows = [{"id": c.id, "updated_at": now, **c.fields} for c in applied]
                if s.connection().dialect.name == "postgresql":
                    rows = _update_from_staging(s.connection(), rows)
                if rows:
                    s.execute(update(Container), rows)
                moved = [c.id for c in applied if "state" in c.fields or "sandbox_id" in c.fields]
                if moved:
                    follow_tasks(s, moved, now)
            if new_tasks:
                known = set()
                for chunk in _chunks([t.id for t in new_tasks]):
                    known.update(s.scalars(select(Task.id).where(Task.id.in_(chunk))))
                s.add_all([t for t in new_tasks if t.id not in known])
                s.flush()
            inserted = self._insertable(s, new_rows)
            shapes: dict[frozenset, list[dict]] = {}
            for r in inserted:  # executemany takes rows of one shape
                shapes.setdefault(frozenset(r.values), []).append(r.values)
            for rows in shapes.values():
                s.execute(insert(Container.__table__), rows)
            write_events(
                s,
                [
                    *events,
                    *(e for c in applied for e in c.events),
                    *(e for r in inserted for e in r.events),
                ],
            )
        return Applied(
            changed=frozenset(c.id for c in applied),
            inserted=frozenset(r.id for r in inserted),
        )

    @staticmethod
    def _insertable(s: Session, rows: Sequence[NewRow]) -> list[NewRow]:
        taken: set[Any] = set()
        for chunk in _chunks([r.id for r in rows]):
            taken.update(s.scalars(select(Container.id).where(Container.id.in_(chunk))))
        pairs = [(r.values["backend"], r.values.get("sandbox_id")) for r in rows]
        for backend in {b for b, _ in pairs}:
            sids = [sid for b, sid in pairs if b == backend and sid]
            for chunk in _chunks(sids):
                q = select(Container.sandbox_id).where(
                    Container.backend == backend, Container.sandbox_id.in_(chunk)
                )
                taken.update((backend, sid) for sid in s.scalars(q))
        return [
            r
            for r, pair in zip(rows, pairs, strict=True)
            if r.id not in taken and pair not in taken
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


def follow_tasks(s: Session, container_ids: Sequence[str], now: datetime) -> None:
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
                    type=EventType.TASK_STATUS.value,
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


_TS = attrgetter("ts")
_HISTORY = [c.name for c in Heartbeat.__table__.columns if c.name != "id"]


def _merge_staged(conn: Connection, *, at_least: int = 1) -> int:
    """Move the staged samples into `heartbeats` in container order (each container's index leaf
    written once for all of its samples), if at least `at_least` may be there (`_merge_due`).
    The samples moved."""
    st = HEARTBEATS_STAGED.c
    if not _merge_due(conn, at_least):
        return 0
    rows = select(*(st[k] for k in _HISTORY)).order_by(st.container_id, st.ts, st.id)
    n = conn.execute(insert(Heartbeat.__table__).from_select(_HISTORY, rows)).rowcount
    conn.execute(delete(HEARTBEATS_STAGED))
    return n or 0


def _merge_due(conn: Connection, at_least: int) -> bool:
    """Whether `at_least` samples may be staged: SQLite numbers the rows of an emptied table from 1
    again, so the highest id bounds the rows since the last merge, found in one index step."""
    return (conn.execute(select(func.max(HEARTBEATS_STAGED.c.id))).scalar() or 0) >= at_least


def _update_from_staging(conn: Connection, rows: list[dict]) -> list[dict]:
    """PostgreSQL: container rows updated by primary key, one COPY and one `UPDATE ... FROM` per
    shape of fields (`pg_ingest.update_from_staging`) instead of a statement per row (a reconcile's
    1,000 changes took ~100 ms as executemany). Returns the rows it left to the ORM: those with a
    field that is not a column of that name."""
    from parhelia.state import pg_ingest

    table = Container.__table__
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for r in rows:
        shapes.setdefault(tuple(sorted(k for k in r if k != "id")), []).append(r)
    left: list[dict] = []
    for keys, group in shapes.items():
        if not all(k in table.c and table.c[k].key == k for k in keys):
            left.extend(group)
            continue
        columns = {"_id": list(map(_ID, group))}
        columns.update({k: list(map(itemgetter(k), group)) for k in keys})
        types, set_sql = _containers_set(keys)
        pg_ingest.update_from_staging(conn, table, columns, types, set_sql, _bound)
    return left


def _containers_set(keys: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """For `pg_ingest.update_from_staging` of `containers` by id: each parameter's column type and
    each column set to its new value (`v.<column>`)."""
    table = Container.__table__
    types = {"_id": table.c.id.type, **{k: table.c[k].type for k in keys}}
    return types, {k: f"v.{k}" for k in keys}


def _newest_per_container(samples: Sequence[dict]) -> dict[str, dict]:
    """Each sampled container's newest sample (the later one on a tie, as the index orders them)."""
    latest = dict(zip(map(_CONTAINER_ID, samples), samples, strict=True))
    if len(latest) == len(samples):  # one sample per container, as in a poller's cycle
        return latest
    latest = {}
    for smp in samples:
        cur = latest.get(smp["container_id"])
        if cur is None or smp["ts"] >= cur["ts"]:
            latest[smp["container_id"]] = smp
    return latest


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


def _update_newer(conn: Connection, keys: tuple[str, ...], columns: dict[str, list]) -> None:
    """SQLite: `_container_update(keys, True)` in two steps. First every row whose stored sample is
    not newer takes `keys` and its sample, plainly (`_container_update_newer`); if some row did not
    match (it holds a newer sample, or is gone), every row then takes `keys` alone, which the rows
    already done hold. A poller's samples are the newest, so that is one plain UPDATE a cycle:
    the CASE of each sample column, evaluated on every row, was a fifth of the UPDATE's time
    (bench/store.py's cycle, per statement)."""
    done = _executemany(
        conn,
        ("update-newer", keys),
        lambda: _container_update_newer(keys),
        columns,
    )
    if keys and done < len(columns["_id"]):
        only = {k: columns[k] for k in ("_id", *keys)}
        _executemany(conn, ("update", keys, False), lambda: _container_update(keys, False), only)


def _container_update_newer(keys: tuple[str, ...]) -> Any:
    """UPDATE containers by `_id` setting `keys` and the latest-sample columns from `_ts`,
    `_cpu_percent`, ..., on rows that hold no newer sample (the others are left whole)."""
    table = Container.__table__
    last = table.c.last_sample_at
    values: dict[str, Any] = {k: bindparam(k, type_=table.c[k].type) for k in keys}
    for dst, src in _SAMPLE.items():
        values[dst] = bindparam(f"_{src}", type_=table.c[dst].type)
    newer = or_(last.is_(None), last <= bindparam("_ts", type_=last.type))
    return update(table).where(table.c.id == bindparam("_id"), newer).values(values)


_compiled: dict[tuple[Any, ...], tuple[str, list[str], list[Any]]] = {}


def _executemany(
    conn: Connection, key: tuple[Any, ...], build: Callable[[], Any], columns: dict[str, list]
) -> int:
    """executemany of the Core statement `build()` (cached under `key`) over rows given column by
    column: `columns` maps each parameter name to its values, one per row. The rows it changed,
    on SQLite (-1 elsewhere).

    On SQLite the rows go straight to the driver, each value bound through its column's own type
    (so naive datetimes are still refused), once per distinct value since a cycle's rows share
    their timestamps: SQLAlchemy's per-row parameter building cost more than SQLite itself
    (bench/store.py)."""
    n = len(next(iter(columns.values()), ()))
    if not n:
        return 0
    dialect = conn.dialect
    if dialect.name == "postgresql":
        _executemany_pg(conn, key, columns)
        return -1
    if dialect.name != "sqlite":
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        conn.execute(build(), [dict(zip(names, vals, strict=True)) for vals in rows])
        return -1
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
    return conn.exec_driver_sql(sql, list(zip(*bound, strict=True))).rowcount


def _executemany_pg(conn: Connection, key: tuple[Any, ...], columns: dict[str, list]) -> None:
    """`_executemany` on PostgreSQL: COPY for the heartbeat rows, one UPDATE from arrays for the
    container updates (`parhelia.state.pg_ingest`)."""
    from parhelia.state import pg_ingest

    if key[0] == "insert":
        pg_ingest.copy_rows(conn, Heartbeat.__table__, columns, _bound)
        return
    _, keys, with_sample = key
    table = Container.__table__
    types, set_sql = _containers_set(keys)
    if with_sample:
        newer = "(t.last_sample_at IS NULL OR t.last_sample_at <= v._ts)"
        for dst, src in _SAMPLE.items():
            types[f"_{src}"] = table.c[dst].type
            set_sql[dst] = f"CASE WHEN {newer} THEN v._{src} ELSE t.{dst} END"
    pg_ingest.update_from_staging(conn, table, columns, types, set_sql, _bound)


def _bound(values: list, proc: Callable[[Any], Any]) -> list:
    """`proc` over `values` (None stays None), called once per distinct value."""
    first = values[0]
    # one value (a cycle's timestamp, usually one object: `count` then compares identities, a
    # tenth of the time a set of ids took, bench/store.py); equal values bind alike, as below
    if values[-1] is first and values.count(first) == len(values):
        return [None if first is None else proc(first)] * len(values)
    try:
        done = {v: proc(v) for v in set(values) if v is not None}
    except TypeError:  # unhashable (JSON values)
        return [None if v is None else proc(v) for v in values]
    done[None] = None
    return list(map(done.__getitem__, values))


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
