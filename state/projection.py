"""The dashboard projection, mixed into `Store` as `Projection`: the read side that builds the
plain views of `parhelia.state.views` (container views, the dashboard, the reconciler's view,
spend so far and its trend, one container's detail).

The view queries take a caller's session, so `dashboard()` reads every part in one transaction.
`ContainerView` is built from one declaration (`VIEW_SOURCES`): each field and the column it is
read from; the SELECT and the dataclass construction both come from it."""

from __future__ import annotations

import json
import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, String, Text, cast, func, or_, select, type_coerce
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session

from parhelia.state.budget import BudgetConfig, summarize
from parhelia.state.costs import burn_rate, current_cost
from parhelia.state.event_log import to_event_view
from parhelia.state.keys import ACTIVE, FOREIGN_PREFIX, IN_GRACE_PREFIX, PLANE_KEY, RECONCILER_LEASE
from parhelia.state.live_views import LiveContainers
from parhelia.state.models import (
    Container,
    Event,
    Heartbeat,
    JSONDocumentType,
    Lease,
    ReconcilerRun,
    Setting,
    Task,
    UTCDateTime,
)
from parhelia.state.process_owner import is_gone
from parhelia.state.requests import gpu_count
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
    container_views_of,
)

# A guard against a runaway table, not a page size: the dashboard shows every active container
# (it was 5,000, which hid half of a 10,000 fleet).
CONTAINER_VIEW_LIMIT = 50_000


class Projection:
    """`Store`'s read side: the views every front end renders, each read in one transaction.
    A mixin of `Store`, whose `read()` and `write()` sessions it uses."""

    def container_views(
        self,
        *,
        now: datetime,
        recent_hours: float = 1.0,
        ids: Sequence[str] | None = None,
        limit: int = CONTAINER_VIEW_LIMIT,
    ) -> list[ContainerView]:
        """Active containers, plus those that ended within `recent_hours`, each with its latest heartbeat."""
        with self.read() as s:
            return _container_views(s, now=now, recent_hours=recent_hours, ids=ids, limit=limit)

    def reconcile_snapshot(self, states: Sequence[str]) -> list[Any]:
        """Containers in `states` for a reconcile cycle: `Store.container_rows`' rows (every column
        but `metadata`, attribute access) with each distinct timestamp and tag set converted once.
        Per-value type processing was most of a 10,000-row cycle (bench/reconcile.py)."""
        with self.read() as s:
            return _snapshot_rows(s, states)

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
        live: LiveContainers | None = None,
    ) -> DashboardView:
        """The one view query: containers with their latest heartbeat, recent events, budget, reconciler.

        One read transaction, so every part of the view is from the same moment. With `live` (a
        dashboard that refreshes), only the containers that changed since its last read are
        built again (`state/live_views.py`) and the spend trend is kept for half a minute."""
        from parhelia.state.budget import period_start

        now = now or utcnow()
        with self.read() as s:
            budget = budget or _stored_budget(s)
            active_costs: list[float] = []  # unrounded, for the budget's spend
            if live is None:
                containers = _container_views(
                    s, now=now, recent_hours=recent_hours, active_costs=active_costs
                )
            else:
                containers = live.read(
                    s, now=now, recent_hours=recent_hours, limit=CONTAINER_VIEW_LIMIT
                )
            events = _recent_event_views(s, event_limit)
            start = period_start(now, budget.period)
            if live is None:
                running = [c for c in containers if c.is_active]
                spent = round(_ended_spend_since(s, start) + math.fsum(active_costs), 6)
                trend = _spend_trend(s, now)
                burn = burn_rate(c.cost_rate_per_hour for c in running)
                gpus = sum(gpu_count(c.gpu) for c in running)
            else:
                spent = round(_ended_spend_since(s, start) + live.active_cost(now), 6)
                trend = live.trend(lambda: _spend_trend(s, now))
                burn, gpus = live.totals()
            reconciler = _reconciler_view(s, reconcile_interval, now)
            plane = setting_value(s, PLANE_KEY) or ""
            foreign = _foreign_sandboxes(s)
            in_grace = _in_grace(s)
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

    def stale_since(self) -> datetime | None:
        """When the view of the backends went stale: the first failed run since the last good one."""
        with self.read() as s:
            return _stale_since(s)

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


def setting_value(s: Session, key: str, default: Any = None) -> Any:
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
    return _ended_spend_since(s, start) + sum(c.cost_accrued_usd for c in active if c.is_active)


def _ended_spend_since(s: Session, start: datetime) -> float:
    """The final cost of the containers that ended since `start`."""
    return (
        s.scalar(
            select(func.coalesce(func.sum(Container.cost_accrued_usd), 0.0)).where(
                Container.state.not_in(ACTIVE), Container.terminated_at >= start
            )
        )
        or 0.0
    )


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


def in_states(states: Sequence[str]) -> Any:
    """`state IN states` as equalities each marked rare: the live rows through `ix_containers_state`
    however many ended rows the store keeps (see `_Rare`)."""
    return or_(*(_Rare(Container.state == s) for s in states))


def live_or_ended_since(cutoff: datetime) -> Any:
    """Live (and stopped) containers, and those ended since `cutoff`: what the dashboard shows."""
    return or_(in_states((*ACTIVE, "stopped")), _Rare(Container.terminated_at >= cutoff))


def spend_trend_query(now: datetime) -> Any:
    """The containers that ran in the trend's day (live, or ended since it began); timestamps
    as the driver returns them (`_unprocessed`)."""
    from parhelia.state.spend import TREND_HOURS

    cutoff = now - timedelta(hours=TREND_HOURS)
    return select(
        Container.state,
        _unprocessed(Container.started_at),
        _unprocessed(Container.created_at),
        _unprocessed(Container.terminated_at),
        Container.cost_rate_per_hour,
        Container.cost_accrued_usd,
    ).where(live_or_ended_since(cutoff))


def _spend_trend(s: Session, now: datetime) -> tuple[float, ...]:
    """The last day's spend per hour (`spend.hourly_trend`) from the containers that ran in it:
    the live ones and those ended since (both columns indexed; no events, no heartbeats). In
    epoch seconds, each distinct timestamp converted once: per-value type processing and
    datetimes were most of a 10,000-container first read."""
    from parhelia.state.active_spend import cost_at
    from parhelia.state.spend import hourly_trend_seconds

    rows = _fetch(s, spend_trend_query(now))
    if not rows:
        return hourly_trend_seconds((), now)
    states, started, created, ended, rates, accrued = zip(*rows, strict=True)
    started, created, ended = (_convert_distinct(c, _epoch) for c in (started, created, ended))
    now_s = now.timestamp()
    spans = [
        # as `_container_views` prices a live one
        ("all", s0 if s0 is not None else c0, e0, cost_at(a, r, s0, now_s) if st in ACTIVE else a)
        for st, s0, c0, e0, r, a in zip(
            states, started, created, ended, rates, accrued, strict=True
        )
    ]
    return hourly_trend_seconds(spans, now)


def _fetch(s: Session, q: Any) -> list[tuple]:
    """`q`'s rows as the driver's own tuples: no SQLAlchemy row or type processing (a caller
    converts what needs it, once per distinct value)."""
    result = s.connection().execute(q)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _epoch(value: Any) -> float | None:
    """A stored timestamp in epoch seconds, as `_aware_utc(value).timestamp()` works it out
    (SQLite's text is naive UTC: its difference from the epoch, without an aware datetime)."""
    if isinstance(value, str):
        naive = datetime.fromisoformat(value)
        if naive.tzinfo is not None:
            naive = naive.replace(tzinfo=None)
        return (naive - _NAIVE_EPOCH).total_seconds()
    return None if value is None else _aware_utc(value).timestamp()


_NAIVE_EPOCH = datetime(1970, 1, 1)


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
    limit: int = CONTAINER_VIEW_LIMIT,
    active_costs: list[float] | None = None,
    stored_costs: dict[str, float] | None = None,
) -> list[ContainerView]:
    """The views; with `active_costs`, the active rows' costs at `now` are added to it unrounded
    (the budget sums them so, as the live refresh and the budget guard do); with `stored_costs`,
    each row's stored `cost_accrued_usd` by id (what `state/live_views.py` prices it from)."""
    # The latest sample is on the container row (see `Store.record_heartbeats`): no search into
    # `heartbeats` per container. Plain column values, not ORM instances, converted column by
    # column (timestamps and tags once per distinct value) and each view built positionally:
    # per-value type processing and ORM instances were most of the dashboard's time
    # (bench/store.py).
    q = select(*_VIEW_SELECT).select_from(Container).outerjoin(Task, Task.id == Container.task_id)
    if ids is not None:
        q = q.where(Container.id.in_(list(ids)))
    else:
        cutoff = now - timedelta(hours=recent_hours)
        # Stopped rows (the agent exited; the sandbox is winding down) are shown until terminated.
        q = q.where(live_or_ended_since(cutoff))
    q = q.order_by(Container.created_at).limit(limit)
    rows = _fetch(s, q)
    if not rows:
        return []
    col = dict(zip(_VIEW_READ, zip(*rows, strict=True), strict=True))
    col["agent_alive"] = _convert_distinct(col["agent_alive"], _bool)  # SQLite's 0/1
    for name in _VIEW_TIMESTAMPS:
        col[name] = _convert_distinct(col[name], _aware_utc)
    # each view its own copy of its tags: rows share converted values
    col["tags"] = [dict(t or {}) for t in _convert_distinct(col["tags"], _json_value)]
    priced = [
        current_cost(accrued, rate, started, now) if state in ACTIVE else None
        for state, accrued, rate, started in zip(
            col["state"],
            col["cost_accrued_usd"],
            col["cost_rate_per_hour"],
            col["started_at"],
            strict=True,
        )
    ]
    if active_costs is not None:
        active_costs.extend(p for p in priced if p is not None)
    if stored_costs is not None:
        stored_costs.update(zip(col["id"], col["cost_accrued_usd"], strict=True))
    col["cost_accrued_usd"] = [
        round(accrued if p is None else p, 6)
        for p, accrued in zip(priced, col["cost_accrued_usd"], strict=True)
    ]
    for name, (source, fn) in _VIEW_DERIVED.items():
        col[name] = _convert_distinct(col[source], fn)
    for name in _VIEW_SHARED:  # one string object per distinct value, not one per row
        col[name] = _convert_distinct(col[name], _same)
    return container_views_of(col[name] for name in _VIEW_FIELDS)


def _snapshot_rows(s: Session, states: Sequence[str]) -> list[Any]:
    q = select(*_SNAPSHOT_SELECT).where(in_states(states)).order_by(Container.created_at)
    rows = s.execute(q).all()
    if not rows:
        return []
    cols = list(zip(*rows, strict=True))
    for i, c in enumerate(_SNAPSHOT_COLUMNS):
        if isinstance(c.type, UTCDateTime):
            cols[i] = _convert_distinct(cols[i], _aware_utc)
        elif isinstance(c.type, JSONDocumentType):
            cols[i] = _json_all(cols[i])
    return list(map(_SnapshotRow._make, zip(*cols, strict=True)))


def _json_all(texts: Sequence[str | None]) -> list[Any]:
    """Stored JSON documents decoded in one `json.loads` of them all: each row's tags differ
    (they name the container), and a call per document was most of a 10,000-row snapshot's
    decoding on PostgreSQL (bench/reconcile.py)."""
    return json.loads("[" + ",".join("null" if t is None else t for t in texts) + "]")


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

_C = Container.__table__.c
# Where each `ContainerView` field is read from: the one list a new column is added to (beside its
# field in the dataclass). `_container_views` selects these columns, prices `cost_accrued_usd`
# (`current_cost` while active), copies `tags`, and builds each view from them positionally.
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
# Fields computed from another field rather than read: {field: (source field, function)}.
_VIEW_DERIVED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "rate_estimated": ("rate_source", is_estimated)
}
_VIEW_FIELDS = tuple(f.name for f in fields(ContainerView))
if set(_VIEW_FIELDS) != {*VIEW_SOURCES, *_VIEW_DERIVED}:  # a field without a source, or a stray
    raise TypeError(
        "ContainerView fields and VIEW_SOURCES disagree: "
        f"{sorted(set(_VIEW_FIELDS) ^ {*VIEW_SOURCES, *_VIEW_DERIVED})}"
    )
_VIEW_READ = tuple(VIEW_SOURCES)
# Text columns with few distinct values across a fleet: the driver makes a new string for each
# row's; the views share one per value (a 10,000-row dashboard keeps them all).
_VIEW_SHARED = (
    "backend", "state", "health", "gpu", "region", "termination_reason", "rate_source",
    "task_prompt",
)  # fmt: skip
# Timestamps and JSON are selected as the driver returns them, for `_convert_distinct`.
_VIEW_SELECT = tuple(
    _unprocessed(c) if isinstance(c.type, (UTCDateTime, JSONDocumentType)) else c
    for c in VIEW_SOURCES.values()
)
_VIEW_TIMESTAMPS = tuple(n for n, c in VIEW_SOURCES.items() if isinstance(c.type, UTCDateTime))


# The reconciler's snapshot: every container column but `metadata`, as plain named tuples.
_SNAPSHOT_COLUMNS = tuple(c for c in Container.__table__.columns if c.name != "metadata")
# JSON as its text on every database (PostgreSQL's driver would decode each `jsonb` itself): the
# rows' documents are then decoded in one call (`_json_all`)
_SNAPSHOT_SELECT = tuple(
    cast(c, Text).label(c.key)
    if isinstance(c.type, JSONDocumentType)
    else _unprocessed(c)
    if isinstance(c.type, UTCDateTime)
    else c
    for c in _SNAPSHOT_COLUMNS
)
_SnapshotRow = namedtuple("_SnapshotRow", [c.key for c in _SNAPSHOT_COLUMNS])


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
        try:  # SQLite's naive UTC text: parsed with its offset, six times faster than .replace
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # text that carries its own offset (or no time): taken as UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return as_utc(value)


def _same(value: Any) -> Any:
    return value


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def to_heartbeat_view(h: Heartbeat) -> HeartbeatView:
    return HeartbeatView(
        ts=as_utc(h.ts),
        cpu_percent=h.cpu_percent,
        memory_mib=h.memory_mib,
        memory_percent=h.memory_percent,
        agent_alive=h.agent_alive,
    )


def _stored_budget(s: Session) -> BudgetConfig:
    """For a caller with no settings of its own (`ControlPlane` always passes the effective
    budget): the same rule, over the defaults and what is stored in the database."""
    from parhelia.state.settings import STORED_SETTINGS, Settings, effective_budget

    rows = s.execute(select(Setting.key, Setting.value).where(Setting.key.in_(STORED_SETTINGS)))
    stored = {k: v for k, v in rows if v is not None}  # one statement, not one per setting
    return effective_budget(Settings(), stored)
