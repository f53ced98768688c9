"""The dashboard's containers kept between refreshes, so a refresh builds only what changed.

A full read of 10,000 containers (the join to their tasks, the metadata's rate source, each
timestamp converted, a view per row) took 400-500 ms; between two refreshes few rows change, and
under a heartbeating fleet only their heartbeat columns. Each refresh reads one narrow row per
shown container (`_NARROW`: what changes without the rest of the row); then

- a row not seen before, or whose `updated_at` or `state` moved, is read whole by id (every
  write but a heartbeat stamps `updated_at`; comparing each row's own value, not a high-water
  mark, misses no write whatever its clock);
- a row whose heartbeat columns alone moved keeps its view, and its narrow row is handed beside
  the views as its sample (`samples`, `state/samples.py`): unless the heartbeat moved its shown
  health, which lives in the view, and it gets a copy of its view with those columns replaced;
- a row the narrow read no longer returns (ended past the window, or deleted) leaves the view.

On SQLite, a refresh first reads the count that triggers move with every container row
inserted, updated or deleted (`containers_revision`, migration 0009): when it is what it was at a
read since which the rows have been kept, no container was written and the narrow read is not
sent; only the ended rows past the moving window leave. `PRAGMA data_version` played that part
until a heartbeating fleet showed that half the commits touch no container (the staged samples'
merge, history pruning, events), each costing a narrow read that found nothing. On PostgreSQL,
where the server's WAL position played it (it moves with every commit on the server), the shown
rows' count and the sum of the transaction ids that wrote them (`xmin`) play it: a write to one
of them gives it a newer id, an insert or a delete moves the count (`_pg_version`).

After a heartbeat of every row, the refresh reads and compares every narrow row and builds no
view: at 10,000 on a 2-core machine about 25 ms, of which reading the narrow rows (ten columns)
is about 15 ms; the young collection then walks the 10,000 new rows (2 ms). A new view for each
row, as the table's comparison by identity once asked for, cost 20 ms more in building, freeing
and collecting them (bench/tui.py).

Active rows are priced at `now` when built; an unchanged one is re-priced once its cost has moved
by `REPRICE_USD` (a tenth of a cent: below what a cost cell shows), found by when it is due (a
heap), while the budget's spend of the active rows is exact at `now` every refresh, kept in closed
form between changes (`state/active_spend.py`).
"""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from parhelia.state import samples
from parhelia.state.active_spend import ActiveSpend
from parhelia.state.costs import current_cost
from parhelia.state.health import shown_health
from parhelia.state.keys import ACTIVE
from parhelia.state.models import Container
from parhelia.state.pacing import SLICE_ROWS
from parhelia.state.views import ContainerView

REPRICE_USD = 0.001
TREND_SECONDS = 30.0  # the hourly spend trend is worked out again at most this often
ID_CHUNK = 500  # ids per `IN (...)` when rows are read whole

_C = Container.__table__.c
# view field -> column, for the columns a heartbeat cycle writes without stamping `updated_at`
_BEATS = {
    "health": _C.health,
    "last_heartbeat_at": _C.last_heartbeat_at,
    "missed_heartbeats": _C.missed_heartbeats,
    "cpu_percent": _C.last_cpu_percent,
    "memory_used_mib": _C.last_memory_mib,
    "memory_percent": _C.last_memory_percent,
    "agent_alive": _C.last_agent_alive,
}


def narrow_query(cutoff: datetime, limit: int) -> Any:
    """The rows the dashboard shows (as the full read selects them), by the columns that say
    whether a row changed (`_WHOLE`: any of them moved, the row is read whole), then the
    heartbeat columns (`_BEATS`)."""
    from parhelia.state.view_queries import live_or_ended_since, stamp_text

    # No ORDER BY: the rows keep the order they were shown in, and only new ones are sorted in
    # (sorting every row in SQL was a fifth of the read).
    return (
        select(
            *(stamp_text(c) if c.key in _RAW else c for c in _WHOLE),
            *(stamp_text(c) if c.key in _RAW else c for c in _BEATS.values()),
        )
        .where(live_or_ended_since(cutoff))
        .limit(limit)
    )


# id, then what says a write stamped `updated_at`, in this order (what prices an active row comes
# with its whole read: three columns fewer for every shown row, a fifth of the narrow read)
_WHOLE = (_C.id, _C.updated_at, _C.state)
# what the narrow read returns whatever their `terminated_at` (`live_or_ended_since`)
_SHOWN_STATES = frozenset((*ACTIVE, "stopped"))
_RAW = {"updated_at", "last_heartbeat_at"}  # timestamps: as text, converted when needed


class LiveContainers:
    """One dashboard's container views between its refreshes (`Store.dashboard(live=...)`).

    `changed` after each read: the ids whose view is a new object (None after a first read);
    the views of the others are the very objects of the last read. `samples`: the rows'
    heartbeat samples, a row's the same tuple while its heartbeat columns did not move."""

    def __init__(self) -> None:
        self._narrow: dict[str, tuple] = {}
        self._views: dict[str, ContainerView] = {}
        self._order: list[str] = []
        # active rows: (stored cost, rate, started, started in epoch seconds), and when their
        # shown cost has moved
        self._price: dict[str, tuple[float, float, datetime | None, float | None]] = {}
        self._due: dict[str, float] = {}
        # the kept rows in an ended state: shown only while in the window (`_SHOWN_STATES`)
        self._ended: set[str] = set()
        self._due_heap: list[tuple[float, str]] = []  # (when, id), older entries left behind
        self._shown: list[ContainerView] = []  # what the last read returned, kept when unchanged
        self._shown_order: list[str] | None = None
        self._spend = ActiveSpend()  # their sum at a moment; invalidated when `_price` changes
        self._trend: tuple[float, tuple[float, ...]] | None = None  # (monotonic, trend)
        self._totals: tuple[float, int] | None = None
        self.changed: set[str] | None = None
        # each shown row's newest narrow row (`state/samples.py`): what a heartbeat moved of a row
        # whose view was kept; the same tuple for a row that did not move
        self.samples: Mapping[str, tuple] = {}
        # what moves with the database's containers (`_containers_version`) when the kept rows
        # were last known to be its rows
        self._version: tuple[str, Any] | None = None
        self._window: tuple[datetime, int] | None = None  # (cutoff, limit) of the last read
        # of those, the ids read whole (the others changed only in heartbeat columns or price)
        self.reread: set[str] | None = None
        # of those, the ids whose text a filter reads may have changed (`reread`, and the rows
        # whose shown health a heartbeat moved): the containers pane's matches stand for the rest
        self.retexted: set[str] | None = None
        # called between slices of a long read, to let what matters more run (the dashboard:
        # a key being handled, which would otherwise share the interpreter with the read)
        self.pause: Callable[[], object] | None = None

    def read(
        self, s: Session, *, now: datetime, recent_hours: float, limit: int
    ) -> list[ContainerView]:
        from parhelia.state.view_queries import SessionReads
        from parhelia.state.view_reads import container_views

        cutoff = now - timedelta(hours=recent_hours)
        conn = s.connection()
        version = _containers_version(conn, cutoff)
        first = not self._views
        whole: list[tuple] = []
        # the rows whose heartbeat columns alone moved their shown health: their views renewed
        sick: set[str] = set()
        views = dict(self._views)
        if self._unchanged(version, cutoff, limit):
            # nothing committed since the rows were read: they are as read, less those ended past
            # the window since (what the query would no longer return)
            views_ = self._views
            gone = {k for k in self._ended if not _since(views_[k].terminated_at, cutoff)}
            narrow = (
                {k: r for k, r in self._narrow.items() if k not in gone} if gone else self._narrow
            )
        else:
            narrow: dict[str, tuple] = {}
            known = self._narrow.get
            new = 0
            one: Callable[[Any, Any], Any] = {}.setdefault  # a value's one object
            result = conn.execute(narrow_query(cutoff, limit))
            try:
                # the driver's own tuples, every column compared as read, none converted; fetched
                # and compared a slice at a time, so that only a slice of them is alive at once
                for part in self._fetched(result.cursor):
                    # one pass: compared, and a row whose heartbeat alone moved its shown health
                    # gets its new view (a second pass over the beaten rows: a sixth of the refresh)
                    for row in part:
                        old = known(row[0])
                        if old == row:  # most rows when idle: one comparison in C
                            narrow[old[0]] = old  # the very sample handed before: nothing moved
                            continue
                        # A row is kept with one object for each of its few values: the driver
                        # makes new ones for every column of every row, and 10,000 rows as
                        # fetched held 5 MB on PostgreSQL, twice while a refresh replaced those
                        # shown; kept so, 2 MB, for 1 ms more a cycle (bench/tui.py).
                        if old is None:
                            narrow[row[0]] = row = _kept(row, one)
                            new += 1
                            whole.append(row)
                            continue
                        key = old[0]
                        if old[1] != row[1] or old[2] != row[2]:  # `_WHOLE`
                            narrow[key] = row = _kept(row, one)
                            whole.append(row)
                            continue
                        # the heartbeat columns alone moved: the last sample's very objects for
                        # what did not move, and one text for the time the cycle stamped alike
                        _, _, _, health, stamp, missed, cpu, memory, percent, alive = row
                        narrow[key] = row = (
                            key,
                            old[1],
                            old[2],
                            old[3] if health == old[3] else one(health, health),
                            one(stamp, stamp),
                            missed,
                            cpu,
                            memory,
                            percent,
                            alive,
                        )
                        if shown_health(row[2], row[3], row[samples.STAMP]) != views[key].health:
                            # health lives in the view: a new one (only the sample moved for the
                            # rest of a cycle's rows, whose views are kept: `state/samples.py`)
                            stamp = samples.heard_at(row[samples.STAMP])
                            views[key] = _beaten(views[key], row, stamp)
                            sick.add(key)
            finally:
                result.close()
            # every kept row read again (the rows are distinct): none gone, no set of 10,000 made
            kept = len(narrow) - new == len(self._views)
            gone = set() if kept else self._views.keys() - narrow.keys()
        ended = set(self._ended)
        for key in gone:
            del views[key]
            ended.discard(key)
        for row in whole:  # only a row read whole can have changed its state
            if row[2] in _SHOWN_STATES:
                ended.discard(row[0])
            else:
                ended.add(row[0])
        changed: set[str] = set()
        ids = [r[0] for r in whole]
        read: list[ContainerView] = []
        stored: dict[str, float] = {}  # each row's stored cost, which its price starts from
        for i in range(0, len(ids), ID_CHUNK):
            read += container_views(
                SessionReads(s), now=now, ids=ids[i : i + ID_CHUNK], stored_costs=stored
            )
        for v in read:
            views[v.id] = v
            changed.add(v.id)
        if whole:
            self._spend.invalidate()
        now_s = now.timestamp()
        for key in ids:
            v = views.get(key)
            if v is not None and key in stored and v.state in ACTIVE:
                rate, start = v.cost_rate_per_hour, v.started_at
                self._price[key] = (stored[key], rate, start, start.timestamp() if start else None)
                self._set_due(key, _due(now_s, rate))
            else:
                self._price.pop(key, None)
                self._due.pop(key, None)
        changed.update(sick)
        for key in [k for k in self._price if k not in views] if gone else ():
            del self._price[key]
            self._due.pop(key, None)
            self._spend.invalidate()
        # an active row whose shown cost has moved is priced again (a new view, unless this read
        # made its view already: not yet handed out, it is priced in place), found by when it is
        # due (a heap), not by looking at every row
        for key in self._due_by(now_s):
            stored, rate, start, _ = self._price[key]
            cost = round(current_cost(stored, rate, start, now), 6)
            if cost != views[key].cost_accrued_usd:
                if key in changed:
                    views[key].__dict__["cost_accrued_usd"] = cost
                else:
                    views[key] = _with(views[key], {"cost_accrued_usd": cost}, health=False)
                    changed.add(key)
            self._set_due(key, _due(now_s, rate))
        # a row whose whole read found nothing (deleted since the narrow read) is not shown
        # (only a row read whole can lack a view: every other was kept or renewed)
        missing = {r[0] for r in whole if r[0] not in views}
        ended -= missing
        self._narrow = {k: r for k, r in narrow.items() if k in views} if missing else narrow
        self.samples = self._narrow  # never changed in place: a view handed out keeps its own
        # shown in the order of their creation, as a full read orders them
        order = [k for k in self._order if k in views] if gone or missing else self._order
        if len(order) != len(views):
            order = sorted(views, key=lambda k: views[k].created_at)
        self._order = order
        if first or whole or gone or missing:
            self._totals = None  # who is active, at what rate, with which GPU: read whole rows only
        if changed or gone or missing or order is not self._shown_order:
            self._shown = [views[k] for k in order]
            self._shown_order = order
        self._views = views
        self._ended = ended
        self._seen(version, cutoff, limit)  # only once the kept rows are the ones read
        self.changed = None if first else changed
        self.reread = None if first else {r[0] for r in whole}
        self.retexted = None if first else self.reread | sick
        return self._shown

    def _fetched(self, cursor: Any) -> Iterator[list[tuple]]:
        """The rows of `cursor` in slices of SLICE_ROWS, with `pause` called between two."""
        while True:
            part = cursor.fetchmany(SLICE_ROWS)
            yield part
            if len(part) < SLICE_ROWS:
                return
            if self.pause is not None:
                self.pause()

    def _set_due(self, key: str, at: float) -> None:
        self._due[key] = at
        if at != float("inf"):
            heapq.heappush(self._due_heap, (at, key))

    def _due_by(self, now_s: float) -> list[str]:
        """The rows whose shown cost is due to be worked out again by `now_s` (each once)."""
        heap, due = self._due_heap, self._due
        out = []
        while heap and heap[0][0] <= now_s:
            at, key = heapq.heappop(heap)
            if due.get(key) == at:  # not an entry since replaced, nor a row since gone
                out.append(key)
                due[key] = float("inf")  # each once, whatever older entries remain
        if len(heap) > 2 * len(due) + 64:  # entries of replaced dues and gone rows
            self._due_heap = [(at, k) for k, at in due.items() if at != float("inf")]
            heapq.heapify(self._due_heap)
        return out

    def _unchanged(self, version: tuple | None, cutoff: datetime, limit: int) -> bool:
        """Whether the rows last read are still the database's: its containers' version is what
        it was at the read the rows are kept from, the window has not moved back, and no limit
        cut the rows short."""
        if version is None or not self._views or self._window is None:
            return False
        last_cutoff, last_limit = self._window
        return (
            version == self._version
            and cutoff >= last_cutoff
            and limit == last_limit
            and len(self._narrow) < limit
        )

    def _seen(self, version: tuple | None, cutoff: datetime, limit: int) -> None:
        """The rows now kept are the database's as of `version`, read for this window."""
        self._window = (cutoff, limit)
        self._version = version

    def totals(self) -> tuple[float, int]:
        """The active rows' burn rate and GPUs, as a full read sums them; worked out again only
        after a refresh that read rows whole (a heartbeat or a price changes neither)."""
        if self._totals is None:
            from parhelia.state.costs import burn_rate
            from parhelia.state.requests import gpu_count

            running = [v for v in self._views.values() if v.is_active]
            self._totals = (
                burn_rate(v.cost_rate_per_hour for v in running),
                sum(gpu_count(v.gpu) for v in running),
            )
        return self._totals

    def active_cost(self, now: datetime) -> float:
        """The active rows' cost at `now`, each priced by `current_cost`'s rule, summed in closed
        form between changes (`state/active_spend.py`), not row by row each refresh."""
        return self._spend.at(
            lambda: ((stored, rate, start) for stored, rate, _, start in self._price.values()),
            now.timestamp(),
        )

    def trend(self, compute: Callable[[], tuple[float, ...]]) -> tuple[float, ...]:
        """The hourly spend trend, from `compute()` at most every TREND_SECONDS (a sparkline of
        hours; working it out over 10,000 containers each refresh was a fifth of the view)."""
        t = time.monotonic()
        if self._trend is None or t - self._trend[0] >= TREND_SECONDS:
            self._trend = (t, compute())
        return self._trend[1]


def _since(ended: datetime | None, cutoff: datetime) -> bool:
    return ended is not None and ended >= cutoff


def _containers_version(conn: Any, cutoff: datetime) -> tuple[str, Any] | None:
    """What moves when a shown container row may have changed, read before the rows (on
    PostgreSQL each statement of a read sees the newest commits: a commit between the two only
    costs a read). On SQLite the count its triggers keep (`containers_revision`: one row, none
    before the first container was written), the same for every connection and process. On
    PostgreSQL `_pg_version` over the rows live or ended since the start of `cutoff`'s hour (a
    window that moves once an hour and holds every row shown meanwhile). None elsewhere: every
    refresh reads the narrow rows."""
    name = conn.dialect.name
    if name == "postgresql":
        since = cutoff.replace(minute=0, second=0, microsecond=0)
        return name, tuple(conn.execute(_pg_version(), {"since": since}).one())
    if name != "sqlite":
        return None
    n = conn.exec_driver_sql("SELECT n FROM containers_revision WHERE id = 1").scalar()
    return name, n or 0


@functools.cache
def _pg_version() -> Any:
    """The rows' count, and the sum and the largest of their `xmin` (the id of the transaction
    that wrote each row's version): a write gives a row a newer id, so the sum moves, and an
    insert or a delete moves the count; the largest id keeps an id counter's wraparound, which
    could leave the sum as it was, from hiding a write. One scan in the server over about the
    narrow read's rows, one row sent."""
    from sqlalchemy import bindparam, func, literal_column

    from parhelia.state.models import UTCDateTime
    from parhelia.state.view_queries import live_or_ended_since

    xmin = literal_column("containers.xmin::text::bigint")
    return (
        select(func.count(), func.coalesce(func.sum(xmin), 0), func.max(xmin))
        .select_from(Container.__table__)
        .where(live_or_ended_since(bindparam("since", type_=UTCDateTime())))
    )


def _due(now_s: float, rate: float) -> float:
    """When a cost priced at `now_s` will have moved by REPRICE_USD."""
    return now_s + REPRICE_USD * 3600.0 / rate if rate > 0 else float("inf")


# `_beaten` unpacks a narrow row positionally: `_WHOLE`, then `_BEATS` in this order
if (*(c.key for c in _WHOLE), *_BEATS) != (
    *("id", "updated_at", "state", "health", "last_heartbeat_at", "missed_heartbeats"),
    *("cpu_percent", "memory_used_mib", "memory_percent", "agent_alive"),
):
    raise TypeError("the narrow row's columns and `_beaten`'s unpacking disagree")
if tuple(
    len(_WHOLE) + list(_BEATS).index(f)
    for f in ("last_heartbeat_at", "cpu_percent", "memory_used_mib")
) != (
    samples.STAMP,
    samples.CPU,
    samples.MEMORY,
):
    raise TypeError("the narrow row's columns and `state/samples.py`'s positions disagree")
_ALIVE = {None: None, 0: False, 1: True}  # SQLite's 0/1 (PostgreSQL's bools hash alike)


def _beaten(
    view: ContainerView,
    row: tuple,
    stamp: datetime | None,
    *,
    _new: Any = object.__new__,
    _set: Any = object.__setattr__,
    _alive: Any = _ALIVE.get,
) -> ContainerView:
    """`view` with the heartbeat columns of its narrow `row` (`last_heartbeat_at` converted:
    `stamp`), its health shown as its constructor shows it: `_with` without an intermediate dict
    or a call of `__post_init__`, for the rows a heartbeat cycle moved (every running one, each
    cycle; the builtins it calls are bound once). The new view's attributes are a copy of the old
    one's dict, which keeps its keys shared as a constructed view's are (a dict of its own would
    be four times its size) and is made in one step (a third less than filling an empty one key
    by key)."""
    d = view.__dict__.copy()
    (
        _,
        _,
        state,
        health,
        _,
        d["missed_heartbeats"],
        d["cpu_percent"],
        d["memory_used_mib"],
        d["memory_percent"],
        alive,
    ) = row
    d["last_heartbeat_at"] = stamp
    d["agent_alive"] = _alive(alive, True)  # as bool(): any other value is true
    d["health"] = shown_health(state, health, stamp)
    new = _new(ContainerView)
    _set(new, "__dict__", d)  # past the frozen dataclass's guard
    return new


def _kept(row: tuple, one: Callable[[Any, Any], Any]) -> tuple:
    """A narrow `row` as kept: one object (`one`, a dict's `setdefault`) for each state, health
    and heartbeat time its read returned (a heartbeat cycle stamps its rows alike)."""
    key, updated, state, health, stamp, *beats = row
    return (key, updated, one(state, state), one(health, health), one(stamp, stamp), *beats)


def with_sample(view: ContainerView, sample: tuple | None) -> ContainerView:
    """`view` with the heartbeat columns of its `sample` (`LiveContainers.samples`): what a full
    read returns for it, for a caller that needs one whole view (a kept view's own heartbeat
    fields are those of its last build). `view` itself without a sample."""
    return (
        view if sample is None else _beaten(view, sample, samples.heard_at(sample[samples.STAMP]))
    )


def _with(view: ContainerView, values: dict[str, Any], *, health: bool = True) -> ContainerView:
    """`view` with `values` replaced, its health worked out again as its constructor does (unless
    nothing it depends on is among them): a copy of its attributes, at a fraction of
    `dataclasses.replace`'s cost (10,000 a second)."""
    new = object.__new__(ContainerView)
    d = new.__dict__
    d.update(view.__dict__)
    d.update(values)
    if health:
        new.__post_init__()
    return new
