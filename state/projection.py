"""The dashboard projection, mixed into `Store` as `Projection`: the read side that builds the
plain views of `parhelia.state.views` (container views, the dashboard, the reconciler's view,
spend so far and its trend, one container's detail).

The view is read in one transaction of a caller's session through `view_queries.SessionReads`:
the statements are declared once (`state/view_queries.py`) and what their rows become is written
once (`state/view_reads.py`), shared with the read commands' quick path (`state/quick_store.py`)."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, select
from sqlmodel import Session

from parhelia.state import view_reads
from parhelia.state.budget import BudgetConfig
from parhelia.state.event_log import to_event_view
from parhelia.state.live_views import LiveContainers
from parhelia.state.models import Container, Heartbeat, JSONDocumentType, Setting, Task, UTCDateTime
from parhelia.state.timeutil import as_utc, utcnow
from parhelia.state.view_queries import SessionReads, in_states, unprocessed
from parhelia.state.view_reads import (
    CONTAINER_VIEW_LIMIT,
    Fleet,
    aware_utc,
    container_views,
    convert_distinct,
)
from parhelia.state.views import (
    ContainerDetail,
    ContainerView,
    DashboardView,
    EventView,
    ForeignSandbox,
    HeartbeatView,
    ReconcilerView,
)


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
            return container_views(
                SessionReads(s), now=now, recent_hours=recent_hours, ids=ids, limit=limit
            )

    def container_snapshot(self, states: Sequence[str]) -> list[Any]:
        """Containers in `states` as plain rows (every column but `metadata`, attribute access),
        each distinct timestamp and tag set converted once, for the loops (a reconcile cycle, a
        heartbeat pass): per-value type processing and ORM instances were most of a 10,000-row
        cycle (bench/reconcile.py)."""
        with self.read() as s:
            return _snapshot_rows(s, states)

    def priced_active(self) -> list[PricedRow]:
        """The active containers as the budget guard prices them (id, state, health, started,
        created, rate, stored cost, tags, the backend's billed cost): plain rows, timestamps and
        tags converted once per distinct value. ORM instances of 10,000 rows were a second of
        every budget pass (bench/reconcile.py)."""
        with self.read() as s:
            rows = SessionReads(s).rows("priced_active")
        if not rows:
            return []
        cols = list(zip(*rows, strict=True))
        cols[3], cols[4] = (convert_distinct(c, aware_utc) for c in (cols[3], cols[4]))
        cols[7] = [t or {} for t in _json_all(cols[7])]
        return list(map(PricedRow._make, zip(*cols, strict=True)))

    def spent_since(self, start: datetime, now: datetime, active: Sequence[ContainerView]) -> float:
        """Spend in a budget period: ended containers' final cost plus active ones' cost so far.

        A container that started before the period counts whole: the budget errs on the safe side."""
        with self.read() as s:
            ended = view_reads.ended_spend_since(SessionReads(s), start)
        return ended + sum(c.cost_accrued_usd for c in active if c.is_active)

    def reconciler_view(
        self, default_interval: float, *, now: datetime | None = None
    ) -> ReconcilerView:
        with self.read() as s:
            return view_reads.reconciler_view(SessionReads(s), default_interval, now or utcnow())

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
        now = now or utcnow()
        with self.read() as s:
            reads = SessionReads(s)
            fleet = None
            if live is not None:
                containers = live.read(
                    s, now=now, recent_hours=recent_hours, limit=CONTAINER_VIEW_LIMIT
                )
                burn, gpus = live.totals()
                fleet = Fleet(
                    containers=containers,
                    active_cost=live.active_cost(now),
                    trend=live.trend(lambda: view_reads.spend_trend(reads, now)),
                    burn_per_hour=burn,
                    gpus=gpus,
                    samples=live.samples,
                )
            return view_reads.dashboard_view(
                reads,
                now=now,
                budget=budget,
                event_limit=event_limit,
                recent_hours=recent_hours,
                reconcile_interval=reconcile_interval,
                backend_label=backend_label,
                database=self.label,
                fleet=fleet,
            )

    def task_dicts(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        """`list_tasks`' tasks as `Task.model_dump()` gives them, without the instances."""
        with self.read() as s:
            return view_reads.task_dicts(SessionReads(s), status=status, limit=limit)

    def recent_events(self, limit: int) -> list[EventView]:
        """The newest `limit` events, oldest first (the view's events pane, `events list`)."""
        with self.read() as s:
            return view_reads.recent_event_views(SessionReads(s), limit)

    def stale_since(self) -> datetime | None:
        """When the view of the backends went stale: the first failed run since the last good one."""
        with self.read() as s:
            return view_reads.stale_since(SessionReads(s))

    def foreign_sandboxes(self) -> list[ForeignSandbox]:
        with self.read() as s:
            return view_reads.foreign_sandboxes(SessionReads(s))

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


def _snapshot_rows(s: Session, states: Sequence[str]) -> list[Any]:
    q = select(*_SNAPSHOT_SELECT).where(in_states(states)).order_by(Container.created_at)
    rows = s.execute(q).all()
    if not rows:
        return []
    cols = list(zip(*rows, strict=True))
    for i, c in enumerate(_SNAPSHOT_COLUMNS):
        if isinstance(c.type, UTCDateTime):
            cols[i] = convert_distinct(cols[i], aware_utc)
        elif isinstance(c.type, JSONDocumentType):
            cols[i] = _json_all(cols[i])
    return list(map(_SnapshotRow._make, zip(*cols, strict=True)))


def _json_all(texts: Sequence[str | None]) -> list[Any]:
    """Stored JSON documents decoded in one `json.loads` of them all: each row's tags differ
    (they name the container), and a call per document was most of a 10,000-row snapshot's
    decoding on PostgreSQL (bench/reconcile.py)."""
    return json.loads("[" + ",".join("null" if t is None else t for t in texts) + "]")


# The reconciler's snapshot: every container column but `metadata`, as plain named tuples.
_SNAPSHOT_COLUMNS = tuple(c for c in Container.__table__.columns if c.name != "metadata")
# JSON as its text on every database (PostgreSQL's driver would decode each `jsonb` itself): the
# rows' documents are then decoded in one call (`_json_all`)
_SNAPSHOT_SELECT = tuple(
    cast(c, Text).label(c.key)
    if isinstance(c.type, JSONDocumentType)
    else unprocessed(c)
    if isinstance(c.type, UTCDateTime)
    else c
    for c in _SNAPSHOT_COLUMNS
)
_SnapshotRow = namedtuple("_SnapshotRow", [c.key for c in _SNAPSHOT_COLUMNS])
PricedRow = namedtuple(
    "PricedRow",
    "id state health started_at created_at cost_rate_per_hour cost_accrued_usd tags billed_usd",
)


def to_heartbeat_view(h: Heartbeat) -> HeartbeatView:
    return HeartbeatView(
        ts=as_utc(h.ts),
        cpu_percent=h.cpu_percent,
        memory_mib=h.memory_mib,
        memory_percent=h.memory_percent,
        agent_alive=h.agent_alive,
    )
