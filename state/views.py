"""Plain view data: what `Store.dashboard()` returns to every front end.

The TUI, `parhelia tui --once`, `parhelia status` and the MCP tools all render these, so they
can never disagree. Frozen dataclasses with no database attachment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime

from parhelia.state.costs import burn_rate
from parhelia.state.health import shown_health


@dataclass(frozen=True)
class ContainerView:
    id: str
    backend: str
    sandbox_id: str | None
    state: str
    health: str
    task_id: str | None
    task_prompt: str | None
    created_at: datetime
    started_at: datetime | None
    terminated_at: datetime | None
    last_heartbeat_at: datetime | None
    missed_heartbeats: int
    cpu_cores: float
    memory_mib: int
    gpu: str | None
    region: str | None
    cost_rate_per_hour: float
    cost_accrued_usd: float
    # latest heartbeat sample (None until the first heartbeat)
    cpu_percent: float | None = None
    memory_used_mib: float | None = None
    memory_percent: float | None = None
    agent_alive: bool | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    tags: dict = field(default_factory=dict)
    # How an orphan's rate was found (`meta.rate_source`); None for a dispatched container.
    rate_source: str | None = None
    # The rate (and so the cost) is a guess from `[defaults]`: the backend could not tell the
    # orphan's resources. Every view marks it (`~`) and says so.
    rate_estimated: bool = False

    def __post_init__(self) -> None:
        # One mapping decides the health a row shows for its state (`state.health.shown_health`),
        # so the TUI, `containers list` and `--json` cannot tell two stories.
        object.__setattr__(
            self, "health", shown_health(self.state, self.health, self.last_heartbeat_at)
        )

    @property
    def is_active(self) -> bool:
        return self.state in ("created", "running", "orphaned")

    @property
    def needs_attention(self) -> bool:
        return self.state == "orphaned" or (self.is_active and self.health in ("unhealthy", "dead"))


_CONTAINER_FIELDS = tuple(f.name for f in fields(ContainerView))


def container_views_of(columns: Iterable[Iterable]) -> list[ContainerView]:
    """Views from columns of values in field order, each as its constructor makes it (health
    shown by `shown_health`) without the constructor's frozen setattr per field: 1.7 against
    5.4 us a view (10,000 of them in a first read). The attributes go in in field order, so each
    view keeps a key-sharing dict as a constructed one does."""
    new, names, out = object.__new__, _CONTAINER_FIELDS, []
    for values in zip(*columns, strict=True):
        view = new(ContainerView)
        d = view.__dict__
        d.update(zip(names, values, strict=True))
        d["health"] = shown_health(d["state"], d["health"], d["last_heartbeat_at"])
        out.append(view)
    return out


@dataclass(frozen=True)
class EventView:
    id: int
    ts: datetime
    type: str
    level: str
    source: str
    message: str
    container_id: str | None = None
    task_id: str | None = None
    old_value: str | None = None
    new_value: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class BudgetView:
    ceiling_usd: float
    spent_usd: float
    burn_rate_per_hour: float
    period: str
    period_start: datetime
    policy: str
    running_gpus: int
    # when the ceiling is reached at the current burn rate; None if never (burn 0) or already past
    ceiling_at: datetime | None
    level: str  # ok | warning (>= first threshold) | critical (>= 80%) | exceeded (>= 100%)
    # spend per hour over the last day, oldest first, the current hour last (`spend.hourly_trend`)
    trend: tuple[float, ...] = ()

    @property
    def percent(self) -> float:
        return 100.0 * self.spent_usd / self.ceiling_usd if self.ceiling_usd > 0 else 0.0

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.ceiling_usd - self.spent_usd)


# What one reconcile cycle counted (`ReconcilerView.last_counts`, `parhelia reconciler run`).
RUN_COUNTS = ("listed", "known", "adopted", "orphans", "terminated", "corrections", "marked_stale")


@dataclass(frozen=True)
class ReconcilerView:
    last_run_at: datetime | None
    next_run_at: datetime | None
    interval_seconds: float
    lease_holder: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    # when the view of the backend became stale (first failed listing since the last success)
    stale_since: datetime | None
    last_counts: dict = field(default_factory=dict)
    lease_dead: bool = False  # the holder's process is gone from this host
    cycle_started_at: datetime | None = None  # a cycle in flight since

    @property
    def stale(self) -> bool:
        return self.stale_since is not None

    def watched(self, now: datetime) -> bool:
        """A live reconciler holds the lease and its last pass is younger than its interval (plus
        that pass's own time and a second), with nothing stale: what a one-shot refresh would
        show, since it could not take the lease, so `parhelia status` reads it and asks no
        backend again. A dead, expired, late or failing holder is no answer."""
        if self.stale or self.lease_dead or not (self.lease_holder and self.last_run_at):
            return False
        if self.lease_expires_at is None or self.lease_expires_at <= now:
            return False
        took = self.last_counts.get("duration_ms", 0.0) / 1000
        return (now - self.last_run_at).total_seconds() <= self.interval_seconds + took + 1.0


@dataclass(frozen=True)
class Attention:
    """One reason someone should look, and the command that deals with it."""

    text: str
    command: str

    def __str__(self) -> str:
        return f"{self.text}: {self.command}"


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 container`, `2 containers`."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def still_running_note(view: DashboardView | None, *, demo: bool = False) -> str | None:
    """What quitting the dashboard leaves behind, said on the way out; None when nothing runs."""
    live = [c for c in view.containers if c.is_active] if view is not None else []
    if not live:
        return None
    rate = burn_rate(c.cost_rate_per_hour for c in live)
    what = f"{plural(len(live), 'container')} still running, ${rate:.2f}/h"
    if demo:
        return f"{what}; the demo stops its own now."
    return (
        f"{what}; they keep running (parhelia containers list; parhelia containers terminate ID)."
    )


@dataclass(frozen=True)
class GraceSandbox:
    """A running sandbox no row records, not yet an orphan: its grace (a dispatch may still be
    writing its row) ends at `grace_ends_at`, when the reconciler records it as one."""

    backend: str
    sandbox_id: str
    grace_ends_at: datetime


def grace_left(ends: datetime, now: datetime) -> str:
    """`grace 1m 40s left`, or that the next cycle records it."""
    seconds = int((ends - now).total_seconds())
    if seconds <= 0:
        return "grace over, recorded as orphan next cycle"
    minutes, secs = divmod(seconds, 60)
    return f"grace {minutes}m {secs:02d}s left" if minutes else f"grace {secs}s left"


@dataclass(frozen=True)
class ForeignSandbox:
    """A sandbox of another control plane (another store) on a shared cloud: shown, never touched."""

    backend: str
    sandbox_id: str
    plane_id: str
    container_id: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class DashboardView:
    generated_at: datetime
    containers: list[ContainerView]
    events: list[EventView]
    budget: BudgetView
    reconciler: ReconcilerView
    backend: str = ""
    database: str = ""
    plane_id: str = ""  # this store's control-plane id
    # what the last good listings saw of other control planes; counted apart, never acted on
    foreign: list[ForeignSandbox] = field(default_factory=list)
    # running sandboxes no row records yet, inside their orphan grace (the last cycle's sightings)
    in_grace: list[GraceSandbox] = field(default_factory=list)
    # agents waiting for their user in a session (`state.agent_activity.attention_items`)
    agents_waiting: list[Attention] = field(default_factory=list)
    # what each local agent is doing, by container id (`state.agent_activity.AgentState`): the
    # containers pane's AGENT column, merged in when rows are formatted (`container_cells`)
    agents: dict = field(default_factory=dict)
    # a live dashboard's newest heartbeat sample per container id, beside views it kept
    # (`state/samples.py`); None in a full read, whose views hold their own
    samples: Mapping[str, tuple] | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.containers:
            out[c.state] = out.get(c.state, 0) + 1
        return out

    def attention(self) -> list[Attention]:
        """Why `--once` exits 1 and what the help pane leads with; empty when all is well. The one
        place these rules live: every front end renders this list."""
        out = []
        orphans = sum(1 for c in self.containers if c.state == "orphaned")
        sick = sum(1 for c in self.containers if c.is_active and c.health in ("unhealthy", "dead"))
        if orphans:
            out.append(
                Attention(f"{plural(orphans, 'orphaned container')}", "parhelia containers orphans")
            )
        if sick:
            out.append(
                Attention(
                    f"{plural(sick, 'unhealthy or dead container')}", "parhelia containers health"
                )
            )
        if self.budget.level != "ok":
            out.append(
                Attention(
                    f"budget {self.budget.level} at {self.budget.percent:.0f}%",
                    "parhelia budget show",
                )
            )
        if self.in_grace:
            out.append(
                Attention(
                    f"{plural(len(self.in_grace), 'unrecorded sandbox', 'unrecorded sandboxes')}, "
                    f"{grace_left(self.in_grace[0].grace_ends_at, self.generated_at)}",
                    "parhelia reconciler run",
                )
            )
        if self.reconciler.stale:
            out.append(
                Attention("view is stale (backend listing failing)", "parhelia reconciler status")
            )
        out.extend(self.agents_waiting)
        return out

    @property
    def needs_attention(self) -> bool:
        return bool(self.attention())

    def to_dict(self) -> dict:
        """What `--json` prints: every field but a live dashboard's `samples` (its own)."""
        out = asdict(replace(self, samples=None))
        del out["samples"]
        return out


@dataclass(frozen=True)
class HeartbeatView:
    ts: datetime
    cpu_percent: float | None
    memory_mib: float | None
    memory_percent: float | None
    agent_alive: bool


@dataclass(frozen=True)
class ContainerDetail:
    """Everything the detail screen and `containers show` need about one container."""

    container: ContainerView
    heartbeats: list[HeartbeatView]
    events: list[EventView]
    task_status: str | None = None
    metadata: dict = field(default_factory=dict)
