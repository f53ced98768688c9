"""The dashboard view built from the rows of named statements, with no SQLAlchemy in sight.

Every read of the one view goes through `Reads.rows(name, **params)`: the driver's own tuples
of the statement `name` (`state/view_queries.py` declares each one in SQLAlchemy). The store
runs them through its session (`view_queries.SessionReads`, any database); a read command on a
store at the current schema runs the same statements' SQL, compiled ahead of time
(`state/sqlite_catalogue.py`, `state/postgres_catalogue.py`), through the bare driver
(`state/quick_store.py`), and does not import SQLAlchemy at all: that import alone was most of
`parhelia containers list` (bench/cli.py).
What the rows become (timestamps converted, costs priced, the budget summed) is written once,
here, for both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from parhelia.state.budget import BudgetConfig, period_start, summarize
from parhelia.state.costs import burn_rate, current_cost
from parhelia.state.keys import ACTIVE, FOREIGN_PREFIX, IN_GRACE_PREFIX
from parhelia.state.requests import gpu_count
from parhelia.state.timeutil import as_utc
from parhelia.state.views import (
    RUN_COUNTS,
    ContainerView,
    DashboardView,
    EventView,
    ForeignSandbox,
    GraceSandbox,
    ReconcilerView,
    container_views_of,
)

# A guard against a runaway table, not a page size: the dashboard shows every active container
# (it was 5,000, which hid half of a 10,000 fleet).
CONTAINER_VIEW_LIMIT = 50_000

# The columns of the "containers" statement, in order: each `ContainerView` field read from the
# database (`view_queries.VIEW_SOURCES` says from which column; it is checked against this).
VIEW_READ = (
    "id", "backend", "sandbox_id", "state", "health", "task_id", "task_prompt", "created_at",
    "started_at", "terminated_at", "last_heartbeat_at", "missed_heartbeats", "cpu_cores",
    "memory_mib", "gpu", "region", "cost_rate_per_hour", "cost_accrued_usd", "cpu_percent",
    "memory_used_mib", "memory_percent", "agent_alive", "termination_reason", "exit_code",
    "tags", "rate_source",
)  # fmt: skip
VIEW_TIMESTAMPS = ("created_at", "started_at", "terminated_at", "last_heartbeat_at")
# Text columns with few distinct values across a fleet: the driver makes a new string for each
# row's; the views share one per value (a 10,000-row dashboard keeps them all).
_VIEW_SHARED = (
    "backend", "state", "health", "gpu", "region", "termination_reason", "rate_source",
    "task_prompt",
)  # fmt: skip


class Reads(Protocol):
    """Runs a named view statement (`view_queries.QUERIES`) in one read transaction."""

    def rows(self, name: str, **params: Any) -> list[tuple]: ...


# -- the view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The containers part of a view: the rows, and what the budget needs of them."""

    containers: list[ContainerView]
    active_cost: float  # the active rows' cost at the view's moment, unrounded
    trend: tuple[float, ...]
    burn_per_hour: float
    gpus: int
    samples: Mapping[str, tuple] | None = None  # a live dashboard's (`state/samples.py`)


def dashboard_view(
    reads: Reads,
    *,
    now: datetime,
    budget: BudgetConfig | None,
    event_limit: int,
    recent_hours: float,
    reconcile_interval: float,
    backend_label: str,
    database: str,
    fleet: Fleet | None = None,
) -> DashboardView:
    """The one view from `reads` (one transaction, so every part is of the same moment). `fleet`
    is given by a dashboard that keeps its rows between refreshes (`state/live_views.py`);
    otherwise every shown container is read."""
    budget = budget or stored_budget(reads)
    fleet = fleet or fleet_of(reads, now=now, recent_hours=recent_hours)
    spent = round(ended_spend_since(reads, period_start(now, budget.period)) + fleet.active_cost, 6)
    plane = setting_value(reads, "plane") or ""
    return DashboardView(
        generated_at=now,
        containers=fleet.containers,
        events=recent_event_views(reads, event_limit),
        budget=replace(
            summarize(budget, spent, fleet.burn_per_hour, fleet.gpus, now), trend=fleet.trend
        ),
        reconciler=reconciler_view(reads, reconcile_interval, now),
        backend=backend_label,
        database=database,
        plane_id=plane,
        foreign=foreign_sandboxes(reads),
        in_grace=in_grace(reads),
        samples=fleet.samples,
    )


def fleet_of(reads: Reads, *, now: datetime, recent_hours: float) -> Fleet:
    """Every shown container read and priced at `now`, the budget's sums over the active ones."""
    active_costs: list[float] = []  # unrounded, for the budget's spend
    containers = container_views(
        reads, now=now, recent_hours=recent_hours, active_costs=active_costs
    )
    running = [c for c in containers if c.is_active]
    return Fleet(
        containers=containers,
        active_cost=math.fsum(active_costs),
        trend=spend_trend(reads, now),
        burn_per_hour=burn_rate(c.cost_rate_per_hour for c in running),
        gpus=sum(gpu_count(c.gpu) for c in running),
    )


# -- containers -----------------------------------------------------------------------------


def container_views(
    reads: Reads,
    *,
    now: datetime,
    recent_hours: float = 1.0,
    ids: Sequence[str] | None = None,
    limit: int = CONTAINER_VIEW_LIMIT,
    active_costs: list[float] | None = None,
    stored_costs: dict[str, float] | None = None,
) -> list[ContainerView]:
    """Active containers and those ended within `recent_hours` (or the rows of `ids`), oldest
    first, each with its latest heartbeat; with `active_costs`, the active rows' costs at `now`
    are added to it unrounded (the budget sums them so, as the live refresh and the budget guard
    do); with `stored_costs`, each row's stored `cost_accrued_usd` by id (what
    `state/live_views.py` prices it from)."""
    if ids is not None:
        rows = reads.rows("containers_by_id", ids=list(ids), limit=limit)
    else:
        rows = reads.rows("containers", cutoff=now - timedelta(hours=recent_hours), limit=limit)
    return container_views_from(rows, now, active_costs=active_costs, stored_costs=stored_costs)


def container_views_from(
    rows: list[tuple],
    now: datetime,
    *,
    active_costs: list[float] | None = None,
    stored_costs: dict[str, float] | None = None,
) -> list[ContainerView]:
    """Views from the "containers" statement's rows: plain column values converted column by
    column (timestamps and tags once per distinct value) and each view built positionally;
    per-value type processing and ORM instances were most of the dashboard's time
    (bench/store.py). The latest sample is on the container row (`Store.record_heartbeats`)."""
    if not rows:
        return []
    col = dict(zip(VIEW_READ, zip(*rows, strict=True), strict=True))
    col["agent_alive"] = convert_distinct(col["agent_alive"], as_bool)  # SQLite's 0/1
    for name in VIEW_TIMESTAMPS:
        col[name] = convert_distinct(col[name], aware_utc)
    # each view its own copy of its tags: rows share converted values
    col["tags"] = [dict(t or {}) for t in convert_distinct(col["tags"], json_value)]
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
    col["rate_estimated"] = convert_distinct(col["rate_source"], is_estimated)
    for name in _VIEW_SHARED:  # one string object per distinct value, not one per row
        col[name] = convert_distinct(col[name], _same)
    return container_views_of(col[name] for name in VIEW_FIELDS)


def is_estimated(rate_source: str | None) -> bool:
    """Whether an orphan's `meta.rate_source` is a guess from `[defaults]` (older rows: "assumed")."""
    return (rate_source or "").startswith(("estimated", "assumed"))


VIEW_FIELDS = (*VIEW_READ, "rate_estimated")  # read, then derived (`is_estimated`)


# -- money ----------------------------------------------------------------------------------


def ended_spend_since(reads: Reads, start: datetime) -> float:
    """The final cost of the containers that ended since `start`."""
    return reads.rows("ended_spend", start=start)[0][0] or 0.0


def spend_trend(reads: Reads, now: datetime) -> tuple[float, ...]:
    """The last day's spend per hour (`spend.hourly_trend`) from the containers that ran in it:
    the live ones and those ended since (both columns indexed; no events, no heartbeats). In
    epoch seconds, each distinct timestamp converted once: per-value type processing and
    datetimes were most of a 10,000-container first read."""
    from parhelia.state.active_spend import cost_at
    from parhelia.state.spend import TREND_HOURS, hourly_trend_seconds

    rows = reads.rows("spend_trend", cutoff=now - timedelta(hours=TREND_HOURS))
    if not rows:
        return hourly_trend_seconds((), now)
    states, started, created, ended, rates, accrued = zip(*rows, strict=True)
    started, created, ended = (convert_distinct(c, epoch) for c in (started, created, ended))
    now_s = now.timestamp()
    spans = [
        # as `container_views_from` prices a live one
        ("all", s0 if s0 is not None else c0, e0, cost_at(a, r, s0, now_s) if st in ACTIVE else a)
        for st, s0, c0, e0, r, a in zip(
            states, started, created, ended, rates, accrued, strict=True
        )
    ]
    return hourly_trend_seconds(spans, now)


def stored_budget(reads: Reads) -> BudgetConfig:
    """For a caller with no settings of its own (`ControlPlane` always passes the effective
    budget): the same rule, over the defaults and what is stored in the database."""
    from parhelia.state.settings import STORED_SETTINGS, Settings, effective_budget

    stored = {
        k: v
        for k, v in settings(reads).items()
        if k in STORED_SETTINGS and v is not None  # one statement, not one per setting
    }
    return effective_budget(Settings(), stored)


# -- tasks ----------------------------------------------------------------------------------

# A task's fields as `Task.model_dump()` gives them, in its order (`view_queries` checks the table)
TASK_FIELDS = (
    "id", "prompt", "status", "backend", "cpu", "memory_mib", "gpu", "region", "timeout_minutes",
    "estimated_cost_usd", "retry_of", "attempt", "session_id", "created_at", "updated_at",
    "finished_at", "actor",
)  # fmt: skip
TASK_TIMESTAMPS = ("created_at", "updated_at", "finished_at")


def task_dicts(reads: Reads, *, status: str | None = None, limit: int = 100) -> list[dict]:
    """The newest `limit` tasks (in `status`), newest first, each as `Task.model_dump()` makes
    it: what `task list` and the MCP tasks tool print."""
    if status:
        rows = reads.rows("tasks_in_status", status=status, limit=limit)
    else:
        rows = reads.rows("tasks", limit=limit)
    if not rows:
        return []
    col = dict(zip(TASK_FIELDS, zip(*rows, strict=True), strict=True))
    for name in TASK_TIMESTAMPS:
        col[name] = convert_distinct(col[name], aware_utc)
    return [dict(zip(TASK_FIELDS, v, strict=True)) for v in zip(*col.values(), strict=True)]


# -- events, the reconciler, settings -------------------------------------------------------


def recent_event_views(reads: Reads, limit: int) -> list[EventView]:
    """The newest `limit` events, oldest first, as `Store.events(limit=...)` orders them."""
    rows = reads.rows("recent_events", limit=limit)
    if not rows:
        return []
    cols = list(zip(*reversed(rows), strict=True))
    cols[1] = convert_distinct(cols[1], aware_utc)
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


def reconciler_view(reads: Reads, default_interval: float, now: datetime) -> ReconcilerView:
    """The last run (its counts, its error and since when the view is stale) and the lease."""
    from parhelia.state.process_owner import is_gone

    last = next(iter(reads.rows("last_run")), None)
    lease = next(iter(reads.rows("lease")), None)
    counts: dict[str, Any] = {}
    last_run_at = last_error = stale_since = None
    if last is not None:
        started, finished, duration_ms, last_error, *numbers = last
        counts = dict(zip(RUN_COUNTS, numbers, strict=True))
        counts["duration_ms"] = round(duration_ms, 1)
        last_run_at = aware_utc(finished or started)
        if last_error:
            stale_since = aware_utc(reads.rows("stale_since")[0][0])
    if lease is None:
        return ReconcilerView(
            last_run_at=last_run_at,
            next_run_at=None,
            interval_seconds=default_interval,
            lease_holder=None,
            lease_expires_at=None,
            last_error=last_error,
            stale_since=stale_since,
            last_counts=counts,
        )
    holder, expires, next_run, interval, host, pid, pid_started, cycle = lease
    cycle = aware_utc(cycle)
    if cycle is not None and (now - cycle).total_seconds() > interval:
        # a cycle still running past its interval: what is shown is as old as its start
        stale_since = min(stale_since or cycle, cycle)
        last_error = (
            f"a reconcile cycle has run {(now - cycle).total_seconds():.0f} s, over its "
            f"{interval:g} s interval" + (f"; before: {last_error}" if last_error else "")
        )
    return ReconcilerView(
        last_run_at=last_run_at,
        next_run_at=aware_utc(next_run),
        interval_seconds=interval,
        lease_holder=holder,
        lease_expires_at=aware_utc(expires),
        last_error=last_error,
        stale_since=stale_since,
        last_counts=counts,
        lease_dead=is_gone(host, pid, pid_started),
        cycle_started_at=cycle,
    )


def stale_since(reads: Reads) -> datetime | None:
    """When the view of the backends went stale: the first failed run since the last good one."""
    return aware_utc(reads.rows("stale_since")[0][0])


def setting_value(reads: Reads, name: str) -> Any:
    """The value of the setting a named statement reads (`plane`: this store's plane id)."""
    row = next(iter(reads.rows(name)), None)
    return None if row is None else json_value(row[0])


def settings(reads: Reads, prefix: str = "") -> dict[str, Any]:
    """Every stored setting whose key starts with `prefix`, decoded (a handful of rows: read
    whole, matched here)."""
    return {
        key: json_value(value) for key, value in reads.rows("settings") if key.startswith(prefix)
    }


def in_grace(reads: Reads) -> list[GraceSandbox]:
    out = [
        GraceSandbox(key.removeprefix(IN_GRACE_PREFIX), sid, datetime.fromisoformat(ends))
        for key, value in reads.rows("in_grace")
        for sid, ends in (json_value(value) or {}).items()
    ]
    return sorted(out, key=lambda g: (g.grace_ends_at, g.sandbox_id))


def foreign_sandboxes(reads: Reads) -> list[ForeignSandbox]:
    out = [
        ForeignSandbox(
            backend=key.removeprefix(FOREIGN_PREFIX),
            sandbox_id=sid,
            plane_id=str(seen.get("plane", "")),
            container_id=seen.get("container"),
            task_id=seen.get("task"),
        )
        for key, value in reads.rows("foreign")
        for sid, seen in (json_value(value) or {}).items()
    ]
    return sorted(out, key=lambda f: (f.backend, f.sandbox_id))


# -- converting the driver's values ---------------------------------------------------------


def convert_distinct(values: Sequence[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """`fn` over `values`, called once per distinct value (a fleet's rows share many timestamps
    and tags), so results may be shared between rows."""
    try:
        done = {v: fn(v) for v in set(values)}
    except TypeError:  # unhashable (a driver that decodes JSON itself)
        return [fn(v) for v in values]
    return list(map(done.__getitem__, values))


def aware_utc(value: Any) -> datetime | None:
    """A stored timestamp as the column type returns it: aware UTC."""
    if isinstance(value, str):
        if value.endswith("+00"):  # PostgreSQL's text in a UTC session (`view_queries.stamp_text`)
            return datetime.fromisoformat(value + ":00")
        try:  # SQLite's naive UTC text: parsed with its offset, six times faster than .replace
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # text that carries its own offset (or no time): taken as UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return as_utc(value)


def epoch(value: Any) -> float | None:
    """A stored timestamp in epoch seconds, as `aware_utc(value).timestamp()` works it out
    (SQLite's text is naive UTC: its difference from the epoch, without an aware datetime)."""
    if isinstance(value, str):
        naive = datetime.fromisoformat(value)
        if naive.tzinfo is not None:
            naive = naive.replace(tzinfo=None)
        return (naive - _NAIVE_EPOCH).total_seconds()
    return None if value is None else aware_utc(value).timestamp()


_NAIVE_EPOCH = datetime(1970, 1, 1)


def sqlite_text(value: datetime) -> str:
    """An aware timestamp as the store writes it to SQLite (naive UTC, microseconds always: what
    SQLAlchemy's SQLite `DATETIME` makes of `UTCDateTime`'s value), so a bound timestamp compares
    with the stored text as the store's own statements do."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use parhelia.state.timeutil.utcnow()")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _same(value: Any) -> Any:
    return value


def as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
