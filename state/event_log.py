"""Events: the `Store`'s event methods (`EventLog`, mixed into `Store`), the one place event
filters become SQL, the event constructor every writer uses, and the export row shape.

Every write checks its type against `EventType` (`parhelia.state.event_types`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, insert, select, type_coerce
from sqlmodel import Session

from parhelia.state.enums import LEVEL_ORDER, EventLevel, EventSource
from parhelia.state.event_types import check_types, checked_type
from parhelia.state.models import Event
from parhelia.state.timeutil import as_utc, utcnow
from parhelia.state.views import EventView

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


class EventLog:
    """`Store`'s events: writing one, reading them filtered, exporting them in batches.
    A mixin of `Store`, whose `read()` and `write()` sessions it uses."""

    def add_event(self, type: str, message: str, **fields) -> Event:
        """Write one event now; `fields` are make_event's (level, source, container_id, ...)."""
        ev = make_event(type, message, **fields)
        with self.write() as s:
            s.add(ev)
        return ev

    def add_events(self, events: Sequence[Event]) -> None:
        if events:
            with self.write() as s:
                write_events(s, events)

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


COPY_EVENTS = 100  # on PostgreSQL, this many plain rows and more go in by COPY


def _each(values: list, proc: Any) -> list:
    return [None if v is None else proc(v) for v in values]


def write_events(s: Session, events: Sequence[Event | dict]) -> None:
    """Events as models, or as plain dicts of Event columns (bulk-inserted: far cheaper by the
    thousand than building models). Each type is checked (`EventType`) before anything is added."""
    check_types(e["type"] if isinstance(e, dict) else e.type for e in events)
    s.add_all([e for e in events if not isinstance(e, dict)])
    rows = [e for e in events if isinstance(e, dict)]
    if rows and all(r.keys() == rows[0].keys() for r in rows):
        conn = s.connection()
        if len(rows) >= COPY_EVENTS and conn.dialect.name == "postgresql":
            # binary COPY: a reconcile's 1,500 events took 224 ms as one executemany
            from parhelia.state import pg_ingest

            columns = {k: [r[k] for r in rows] for k in rows[0]}
            pg_ingest.copy_rows(conn, Event.__table__, columns, _each)
            return
        # Core's executemany: one statement for all. The ORM's bulk insert leaves out each row's
        # None values and groups only neighbours of the same shape, so rows alternating between
        # shapes went one statement each (on PostgreSQL a reconcile of 1,500 changes sent 1,000
        # INSERTs, a third of its time).
        conn.execute(insert(Event.__table__), rows)
    elif rows:
        s.execute(insert(Event), rows)


def event_fields(
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
) -> dict[str, Any]:
    """An event's columns as a plain dict: the one shape of an event, for an `Event` or a bulk insert."""
    return {
        "ts": ts or utcnow(),
        "type": checked_type(type),
        "level": str(level),
        "source": str(source),
        "container_id": container_id,
        "task_id": task_id,
        "old_value": None if old_value is None else str(old_value),
        "new_value": None if new_value is None else str(new_value),
        "message": message,
        "details": details or {},
        "actor": actor,
    }


def make_event(type: str, message: str, **fields: Any) -> Event:
    """An unsaved `Event`; `fields` are `event_fields`'."""
    return Event(**event_fields(type, message, **fields))


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
