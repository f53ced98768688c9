"""The view's statements, by name, in SQLAlchemy: what `state/view_reads.py` reads.

Each statement takes its moving values as named parameters (`cutoff`, `start`, `limit`, `ids`),
so one declaration serves two ways of running it: the store's session on any database
(`SessionReads`), and, for a read command, the SQL text compiled from it ahead of time into
`state/sqlite_catalogue.py` and `state/postgres_catalogue.py` (`catalogue_source`; a test keeps
each file equal to what these statements compile to, so they cannot drift apart).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal, replacement_traverse
from sqlmodel import Session

from parhelia.state.keys import ACTIVE, FOREIGN_PREFIX, IN_GRACE_PREFIX, PLANE_KEY, RECONCILER_LEASE
from parhelia.state.models import (
    Container,
    Event,
    JSONDocumentType,
    Lease,
    ReconcilerRun,
    Setting,
    Task,
    UTCDateTime,
)
from parhelia.state.view_reads import TASK_FIELDS, TASK_TIMESTAMPS, VIEW_READ, VIEW_TIMESTAMPS
from parhelia.state.views import RUN_COUNTS


class _Rare(ColumnElement):
    """A condition true for few rows: SQLite is told so (`likelihood(..., 0.01)`); others see
    the bare condition. After an `ANALYZE`, SQLite knows only that `state` has a handful of values
    over all the containers ever run, and would scan them all for the live ones."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: Any) -> None:
        self.clause = clause

    def self_group(self, against: Any = None) -> Any:
        return self  # a comparison already: no `= 1` around it in an OR


@compiles(_Rare)
def _rare_default(element: _Rare, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clause, **kw)


@compiles(_Rare, "sqlite")
def _rare_sqlite(element: _Rare, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clause, **kw)}, 0.01)"


def in_states(states: Any) -> Any:
    """`state IN states` as equalities each marked rare: the live rows through `ix_containers_state`
    however many ended rows the store keeps (see `_Rare`)."""
    return or_(*(_Rare(Container.state == s) for s in states))


def live_or_ended_since(cutoff: Any) -> Any:
    """Live (and stopped) containers, and those ended since `cutoff`: what the dashboard shows."""
    return or_(in_states((*ACTIVE, "stopped")), _Rare(Container.terminated_at >= cutoff))


def unprocessed(col: Any) -> Any:
    """`col` as the driver returns it (an SQLite timestamp or JSON column comes back as text)."""
    return type_coerce(col, String).label(col.key)


class _StampText(ColumnElement):
    """A timestamp column as text on every database: SQLite's own (naive UTC), PostgreSQL's cast
    (ISO with `+00`: its sessions are in UTC and ISO, `db.in_utc`). For rows compared as read
    (`state/live_views.py`): psycopg's `datetime` for each value took a quarter of the
    narrow read of 10,000 containers, and comparing them was slower again."""

    inherit_cache = True
    type = String()
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: Any) -> None:
        self.clause = clause


@compiles(_StampText)
def _stamp_text_default(element: _StampText, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clause, **kw)} AS TEXT)"


@compiles(_StampText, "sqlite")
def _stamp_text_sqlite(element: _StampText, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clause, **kw)


def stamp_text(col: Any) -> Any:
    """`col`, a timestamp, as text on every database (`_StampText`), labelled as the column."""
    return _StampText(col).label(col.key)


def _text(col: Any) -> Any:
    """A JSON column as its text on every database (PostgreSQL's driver would decode a `jsonb`
    string itself, SQLite's would not): `view_reads.json_value` decodes it alike."""
    return cast(col, Text).label(col.key)


# the moving values, named (`view_reads` passes them; a catalogued statement binds them by name)
CUTOFF = bindparam("cutoff", type_=UTCDateTime())
START = bindparam("start", type_=UTCDateTime())
LIMIT = bindparam("limit", type_=Integer())
RUNTIME = ("cutoff", "start", "limit", "ids", "status")

_C = Container.__table__.c
# An orphan's `meta.rate_source` (None for other rows), read in SQL so views skip the whole JSON.
_RATE_SOURCE = _C["metadata"]["rate_source"].as_string().label("rate_source")
# Where each `ContainerView` field is read from: the one list a new column is added to (beside its
# field in the dataclass and its name in `view_reads.VIEW_READ`, in the same order).
VIEW_SOURCES: dict[str, Any] = {
    "id": _C.id,
    "backend": _C.backend,
    "sandbox_id": _C.sandbox_id,
    "state": _C.state,
    "health": _C.health,
    "task_id": _C.task_id,
    "task_prompt": Task.__table__.c.prompt,
    "created_at": _C.created_at,
    "started_at": _C.started_at,
    "terminated_at": _C.terminated_at,
    "last_heartbeat_at": _C.last_heartbeat_at,
    "missed_heartbeats": _C.missed_heartbeats,
    "cpu_cores": _C.cpu_cores,
    "memory_mib": _C.memory_mib,
    "gpu": _C.gpu,
    "region": _C.region,
    "cost_rate_per_hour": _C.cost_rate_per_hour,
    "cost_accrued_usd": _C.cost_accrued_usd,
    "cpu_percent": _C.last_cpu_percent,
    "memory_used_mib": _C.last_memory_mib,
    "memory_percent": _C.last_memory_percent,
    "agent_alive": _C.last_agent_alive,
    "termination_reason": _C.termination_reason,
    "exit_code": _C.exit_code,
    "tags": _C.tags,
    "rate_source": _RATE_SOURCE,
}
_timestamps = tuple(n for n, c in VIEW_SOURCES.items() if isinstance(c.type, UTCDateTime))
if tuple(VIEW_SOURCES) != VIEW_READ or _timestamps != VIEW_TIMESTAMPS:
    raise TypeError("VIEW_SOURCES and view_reads.VIEW_READ / VIEW_TIMESTAMPS disagree")
# Timestamps and JSON are selected as the driver returns them, converted once per distinct value.
_VIEW_SELECT = tuple(
    unprocessed(c) if isinstance(c.type, (UTCDateTime, JSONDocumentType)) else c
    for c in VIEW_SOURCES.values()
)
_T = Task.__table__.c
if (
    tuple(c.key for c in _T) != TASK_FIELDS
    or tuple(c.key for c in _T if isinstance(c.type, UTCDateTime)) != TASK_TIMESTAMPS
):
    raise TypeError("the tasks table and view_reads.TASK_FIELDS / TASK_TIMESTAMPS disagree")
_TASKS = select(*(unprocessed(c) if isinstance(c.type, UTCDateTime) else c for c in _T))
_VIEWS = select(*_VIEW_SELECT).select_from(Container).outerjoin(Task, Task.id == Container.task_id)
_R = ReconcilerRun
_SETTING = select(Setting.key, _text(Setting.value))

QUERIES: dict[str, Any] = {
    # Stopped rows (the agent exited; the sandbox is winding down) are shown until terminated.
    "containers": _VIEWS.where(live_or_ended_since(CUTOFF))
    .order_by(Container.created_at)
    .limit(LIMIT),
    "containers_by_id": _VIEWS.where(Container.id.in_(bindparam("ids", expanding=True)))
    .order_by(Container.created_at)
    .limit(LIMIT),
    "ended_spend": select(func.coalesce(func.sum(Container.cost_accrued_usd), 0.0)).where(
        Container.state.not_in(ACTIVE), Container.terminated_at >= START
    ),
    # the containers that ran in the trend's day (live, or ended since it began)
    "spend_trend": select(
        Container.state,
        unprocessed(Container.started_at),
        unprocessed(Container.created_at),
        unprocessed(Container.terminated_at),
        Container.cost_rate_per_hour,
        Container.cost_accrued_usd,
    ).where(live_or_ended_since(CUTOFF)),
    "recent_events": select(
        Event.id,
        unprocessed(Event.ts),
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
    .limit(LIMIT),
    "last_run": select(
        unprocessed(_R.started_at),
        unprocessed(_R.finished_at),
        _R.duration_ms,
        _R.error,
        *(getattr(_R, k) for k in RUN_COUNTS),
    )
    .order_by(_R.id.desc())
    .limit(1),
    # the first failed run since the last good one
    "stale_since": select(unprocessed(func.min(_R.started_at).label("started_at"))).where(
        _R.error.is_not(None),
        _R.id
        > select(func.coalesce(func.max(_R.id), 0)).where(_R.error.is_(None)).scalar_subquery(),
    ),
    "lease": select(
        Lease.holder,
        unprocessed(Lease.expires_at),
        unprocessed(Lease.next_run_at),
        Lease.interval_seconds,
        Lease.host,
        Lease.pid,
        Lease.pid_started,
        unprocessed(Lease.cycle_started_at),
    ).where(Lease.name == RECONCILER_LEASE),
    # what the budget guard prices each active container by (`Store.priced_active`)
    "priced_active": select(
        Container.id,
        Container.state,
        Container.health,
        unprocessed(Container.started_at),
        unprocessed(Container.created_at),
        Container.cost_rate_per_hour,
        Container.cost_accrued_usd,
        _text(Container.tags),
        _C["metadata"]["billed_usd"].as_float().label("billed_usd"),
    )
    .where(in_states(ACTIVE))
    .order_by(Container.created_at),
    "plane": select(_text(Setting.value)).where(Setting.key == PLANE_KEY),
    # as `Store.list_tasks` orders them
    "tasks": _TASKS.order_by(Task.created_at.desc()).limit(LIMIT),
    "tasks_in_status": _TASKS.where(Task.status == bindparam("status"))
    .order_by(Task.created_at.desc())
    .limit(LIMIT),
    "settings": _SETTING,
    "foreign": _SETTING.where(Setting.key.startswith(FOREIGN_PREFIX)),
    "in_grace": _SETTING.where(Setting.key.startswith(IN_GRACE_PREFIX)),
}
# What a read command runs without SQLAlchemy (`state/quick_store.py`): every statement of the
# one-shot view (a list of ids binds an expanding parameter, which only the session can)
# (the budget guard's rows are read by the loops, which hold a full store anyway).
CATALOGUED = tuple(name for name in QUERIES if name not in ("containers_by_id", "priced_active"))


class SessionReads:
    """`view_reads.Reads` over a session: each statement's rows as the driver's own tuples (no
    SQLAlchemy row or type processing: a caller converts what needs it, once per distinct value)."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def rows(self, name: str, **params: Any) -> list[tuple]:
        result = self.s.connection().execute(QUERIES[name], params)
        try:
            return result.cursor.fetchall()
        finally:
            result.close()


# The generated modules of compiled statements, by dialect (`make catalogue` writes them)
CATALOGUES = {"sqlite": "sqlite_catalogue.py", "postgresql": "postgres_catalogue.py"}
_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
# how each driver names a parameter (sqlite3's named style, psycopg's pyformat)
_PARAMETER = {"sqlite": ":{}", "postgresql": "%({})s"}


def catalogue_source(dialect_name: str = "sqlite") -> str:
    """`state/sqlite_catalogue.py` (or `postgres_catalogue.py`) as these statements compile for
    that database: constants inline, the moving values as the driver's named parameters
    (`:cutoff`, `%(cutoff)s`), and the schema revision they are for. Written by `make catalogue`
    (`python -m parhelia.state.view_queries`); a test keeps each file equal to this."""
    from parhelia.state.db import HEAD_REVISION

    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import psycopg

        dialect: Any = psycopg.dialect()
    else:
        from sqlalchemy.dialects import sqlite

        dialect = sqlite.dialect()
    # a marker the compiler leaves alone (it would escape psycopg's `%` in a literal column)
    marker = "__parhelia_param_{}__"

    def named(element: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in RUNTIME:
            return literal_column(marker.format(element.key))
        return None

    lines = [
        f'"""The view\'s statements compiled for {_NAMES[dialect_name]}: generated by',
        "`python -m parhelia.state.view_queries` from `state/view_queries.py`; do not edit (a test",
        'keeps this file equal to what the statements compile to)."""',
        "",
        f"REVISION = {HEAD_REVISION!r}",
        "",
        "STATEMENTS = {",
    ]
    for name in CATALOGUED:
        stmt = replacement_traverse(QUERIES[name], {}, named)
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        for key in RUNTIME:
            sql = sql.replace(marker.format(key), _PARAMETER[dialect_name].format(key))
        lines.append(f"    {name!r}: (")
        lines += [f"        {piece!r}" for piece in _wrapped(sql)]
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _wrapped(sql: str, width: int = 80) -> list[str]:
    """`sql` in pieces of at most `width` characters (at spaces), concatenated when read."""
    out, line = [], ""
    for word in sql.split(" "):
        if line and len(line) + 1 + len(word) > width:
            out.append(line + " ")
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line]


if __name__ == "__main__":
    from pathlib import Path

    for dialect_name, file_name in CATALOGUES.items():
        target = Path(__file__).with_name(file_name)
        target.write_text(catalogue_source(dialect_name))
        print(f"wrote {target}")
