"""The one formatter: how a container, an event, the budget and the reconciler read on screen.

The dashboard's widgets, `parhelia tui --once` and the CLI tables all call these, so a value never
reads one way in the TUI and another in a script. Pure functions over `parhelia.state.views`;
Rich `Text` only where style matters, and every styled value also carries a symbol or a word
(never colour alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from parhelia.state.agent_activity import AgentState, activity_cell
from parhelia.state.health import NO_LIVE_HEALTH
from parhelia.state.safe_text import escape_controls
from parhelia.state.samples import beat
from parhelia.state.spend import sparkline
from parhelia.state.timeutil import age_seconds, compact_duration
from parhelia.state.views import (
    BudgetView,
    ContainerView,
    DashboardView,
    EventView,
    ReconcilerView,
    plural,
)

if TYPE_CHECKING:  # Rich loads in the functions that style text: plain-text commands
    from rich.text import Text  # (`status`, `containers list`) never import it (bench/cli.py)

HEALTH_SYMBOL = {
    "healthy": "●",
    "degraded": "◐",
    "unhealthy": "▲",
    "dead": "✖",
    "unknown": "○",
}
HEALTH_STYLE = {
    "healthy": "green",
    "degraded": "yellow",
    "unhealthy": "bold red",
    "dead": "bold red",
    "unknown": "dim",
}
STATE_STYLE = {
    "terminating": "bold yellow",
    "created": "cyan",
    "running": "green",
    "stopped": "dim",
    "terminated": "dim",
    "orphaned": "bold magenta",
}
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red"}
LEVEL_TAG = {"debug": "DEBUG", "info": "INFO ", "warning": "WARN ", "error": "ERROR"}
COMMAND_STYLE = "bold cyan"  # a command the user can type, as k9s shows its hints
BUDGET_STYLE = {
    "ok": "green",
    "warning": "yellow",
    "critical": "bold yellow",
    "exceeded": "bold red",
}


# -- scalars ---------------------------------------------------------------------------------


def age(since: datetime | None, now: datetime) -> str:
    """A compact age (`compact_duration`); `-` when unknown."""
    seconds = age_seconds(since, now)
    return "-" if seconds is None else compact_duration(seconds)


def money(value: float) -> str:
    """Dollars: three decimals under ten cents so small accruals still move, else two."""
    return f"${value:,.3f}" if 0 < abs(value) < 0.1 else f"${value:,.2f}"


def memory(mib: float | None) -> str:
    if mib is None:
        return "-"
    return f"{mib / 1024:.1f}G" if mib >= 1024 else f"{mib:.0f}M"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def clock(ts: datetime | None) -> str:
    """Wall-clock time in the local zone (what a user compares with their own clock)."""
    return "-" if ts is None else ts.astimezone().strftime("%H:%M:%S")


def short_clock(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone().strftime("%H:%M")


def excerpt(text: str | None, width: int = 40) -> str:
    if not text:
        return "-"
    line = escape_controls(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"


def health_label(health: str) -> str:
    return f"{HEALTH_SYMBOL.get(health, '?')} {health}"


def health_text(health: str) -> Text:
    from rich.text import Text

    return Text(health_label(health), style=HEALTH_STYLE.get(health, ""))


def state_text(state: str) -> Text:
    from rich.text import Text

    return Text(state, style=STATE_STYLE.get(state, ""))


# -- the containers table ----------------------------------------------------------------------


TASK_WIDTH = 40


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    justify: str = "left"  # left | right
    width: int = 8  # the widest value it normally holds


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", width=10),
    Column("state", "STATE", width=11),
    Column("health", "HEALTH", width=11),
    Column("agent", "AGENT", width=8),
    Column("task", "TASK", width=TASK_WIDTH),
    Column("age", "AGE", "right", 7),
    Column("heartbeat", "HB", "right", 7),
    Column("cpu", "CPU", "right", 4),
    Column("memory", "MEM", "right", 6),
    Column("rate", "$/H", "right", 6),
    Column("cost", "COST", "right", 9),
    Column("gpu", "GPU", width=9),
    Column("sandbox", "SANDBOX", width=14),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


def short_sandbox(sandbox_id: str | None) -> str:
    if not sandbox_id:
        return "-"
    return sandbox_id if len(sandbox_id) <= 14 else sandbox_id[:13] + "…"


# The AGENT column's order: an agent waiting for its user first, then busy ones.
AGENT_ORDER = {k: i for i, k in enumerate(("waiting", "working", "idle", "exited", "unknown"))}
AGENT_STYLE = {"waiting": "bold yellow", "working": "green", "exited": "dim"}


def container_cells(
    c: ContainerView, now: datetime, agent: AgentState | None = None, sample: tuple | None = None
) -> tuple[str, ...]:
    """The row's plain cells, in `COLUMNS` order (what changed is found by comparing these).
    `agent` is what its agent's session shows (`DashboardView.agents`): not a stored column;
    `sample` its newest heartbeat beside a kept view (`DashboardView.samples`)."""
    active = c.is_active
    seen, cpu, used = beat(c, sample)
    mark = ESTIMATE_MARK if c.rate_estimated else ""
    cells = {
        "id": c.id,
        "state": c.state,
        "health": "-" if c.health == NO_LIVE_HEALTH else health_label(c.health),
        "agent": activity_cell(agent) if active else "-",
        "task": excerpt(c.task_prompt or c.task_id, TASK_WIDTH),
        "age": age(c.started_at or c.created_at, now),
        "heartbeat": age(seen, now) if active else "-",
        "cpu": percent(cpu) if active else "-",
        "memory": memory(used) if active else "-",
        "rate": f"{mark}{c.cost_rate_per_hour:.2f}" if active else "-",
        "cost": f"{mark}{money(c.cost_accrued_usd)}",
        "gpu": c.gpu or "-",
        "sandbox": short_sandbox(c.sandbox_id),
    }
    return tuple(cells[k] for k in COLUMN_KEYS)


def row_style(c: ContainerView) -> str:
    """Orphans and unhealthy rows stand out; ended rows recede."""
    if c.state == "orphaned":
        return "bold magenta"
    if c.is_active and c.health in ("unhealthy", "dead"):
        return "bold red"
    if c.is_active and c.health == "degraded":
        return "yellow"
    if not c.is_active:
        return "dim"
    return ""


def cell_style(c: ContainerView, column: str, base: str, agent: AgentState | None = None) -> str:
    """A cell's style: the row's emphasis (`base`), with state, health and the agent's activity
    in their own colours."""
    if column == "agent" and base == "" and agent is not None:
        return AGENT_STYLE.get(agent.activity.kind, "")
    if column == "health" and base in ("", "dim"):
        return HEALTH_STYLE.get(c.health, "") if c.is_active else base
    if column == "state" and base in ("", "dim"):
        return STATE_STYLE.get(c.state, "")
    return base


HEALTH_ORDER = {h: i for i, h in enumerate(("healthy", "unknown", "degraded", "unhealthy", "dead"))}


def sort_keys(
    c: ContainerView, now: datetime, agent: AgentState | None = None, sample: tuple | None = None
) -> tuple:
    """A comparable key per column, in `COLUMNS` order (ages by seconds, money by value): each
    `(missing, value, id)`, where `missing` marks a cell shown as "-" (an ended row's usage and
    rate, a heartbeat never seen): those sort last either way, by id, and no stale hidden value
    orders them."""
    return tuple(sort_value(c, k, now, agent, sample) for k in COLUMN_KEYS)


# Each column's sort value but the two that depend on `now` (see `sort_keys`, `order_key`) and
# those of a heartbeat's sample (`SAMPLE_COLUMNS`).
_SORT_VALUE = {
    "id": lambda c, active: c.id,
    "state": lambda c, active: c.state,
    "health": lambda c, active: HEALTH_ORDER.get(c.health) if c.health != NO_LIVE_HEALTH else None,
    "task": lambda c, active: (c.task_prompt or c.task_id or "").lower() or None,
    "rate": lambda c, active: c.cost_rate_per_hour if active else None,
    "cost": lambda c, active: c.cost_accrued_usd,
    "gpu": lambda c, active: c.gpu or None,
    "sandbox": lambda c, active: c.sandbox_id or None,
}


# Columns whose key no heartbeat and no re-pricing moves: only a change to the rest of the row.
KEYS_KEPT_BY_HEARTBEATS = frozenset({"id", "state", "task", "age", "rate", "gpu", "sandbox"})
# Columns read from a heartbeat's sample (`state/samples.py`): their key moves with a sample that
# moved beside a kept view.
SAMPLE_COLUMNS = frozenset({"heartbeat", "cpu", "memory"})


def _agent_order(c: ContainerView, agent: AgentState | None) -> int | None:
    """The AGENT column's value: from the view's side map, not the row (`DashboardView.agents`)."""
    return AGENT_ORDER.get(agent.activity.kind) if agent is not None and c.is_active else None


def order_key(
    c: ContainerView, column: str, agent: AgentState | None = None, sample: tuple | None = None
) -> tuple:
    """The key of one column in `sort_keys`' form and order, without `now`: ages sort by their
    start (the older, the larger: the negated time), so a key stays good while the row (its
    agent, its sample) does not change and the dashboard works out only the changed rows' keys
    each refresh."""
    if column == "age":
        start = c.started_at or c.created_at
        return (False, -start.timestamp() if start is not None else 0.0, c.id)
    if column == "heartbeat":
        seen = beat(c, sample)[0] if c.is_active else None
        return (seen is None, 0 if seen is None else -seen.timestamp(), c.id)
    v = _value(c, column, agent, sample)
    return (v is None, 0 if v is None else v, c.id)


def _value(c: ContainerView, column: str, agent: AgentState | None, sample: tuple | None) -> Any:
    """A column's sort value but those of the age and the heartbeat (they depend on `now`)."""
    if column == "agent":
        return _agent_order(c, agent)
    if column in SAMPLE_COLUMNS:
        if not c.is_active:
            return None
        _, cpu, used = beat(c, sample)
        return cpu if column == "cpu" else used
    return _SORT_VALUE[column](c, c.is_active)


def sorted_ids(keyed: list[tuple[str, tuple]], *, reverse: bool) -> list[str]:
    """Ids by their sort key (`sort_keys`' form), rows without a value last whichever way."""
    have = [k for k in keyed if not k[1][0]]
    missing = [k for k in keyed if k[1][0]]
    have.sort(key=_second, reverse=reverse)
    missing.sort(key=_second)
    return [cid for cid, _ in have] + [cid for cid, _ in missing]


_second = itemgetter(1)


def sort_value(
    c: ContainerView,
    column: str,
    now: datetime,
    agent: AgentState | None = None,
    sample: tuple | None = None,
) -> tuple:
    """The key of one column (see `sort_keys`), worked out alone."""
    if column == "age":
        v = age_seconds(c.started_at or c.created_at, now) or 0.0
    elif column == "heartbeat":
        v = age_seconds(beat(c, sample)[0], now) if c.is_active else None
    else:
        v = _value(c, column, agent, sample)
    return (v is None, 0 if v is None else v, c.id)


def totals_line(rows: list[ContainerView]) -> str:
    counts: dict[str, int] = {}
    for c in rows:
        counts[c.state] = counts.get(c.state, 0) + 1
    burn = sum(c.cost_rate_per_hour for c in rows if c.is_active)
    parts = [
        f"Total: {plural(len(rows), 'container')}",
        *(f"{s.capitalize()}: {n}" for s, n in sorted(counts.items())),
    ]
    line = " | ".join([*parts, f"Cost: {money(burn)}/hr"])
    return line + (f" ({ESTIMATE_NOTE})" if any(c.rate_estimated for c in rows) else "")


ESTIMATE_MARK = "~"
ESTIMATE_NOTE = "~ rate estimated from [defaults]: the backend does not report those resources"


def rate_text(c: ContainerView) -> str:
    """A container's rate for a detail view, saying where an estimated one came from."""
    text = f"{money(c.cost_rate_per_hour)}/h"
    return f"~{text} ({c.rate_source})" if c.rate_estimated else text


# -- events ------------------------------------------------------------------------------------


def event_text(e: EventView) -> Text:
    """One log line: time, level, source, container, message (with old -> new when it is a change)."""
    from rich.text import Text

    said = "→" in e.message  # the message already tells the change
    change = (
        f" ({e.old_value or '-'} → {e.new_value or '-'})"
        if (e.old_value or e.new_value) and not said
        else ""
    )
    who = f" by {e.actor}" if e.actor and e.source == "user" and e.actor not in e.message else ""
    line = Text(no_wrap=False)
    # Fixed-width columns, each span carrying its own trailing gap: a span that starts with a
    # space loses it in SVG exports (screenshots), and columns ran together there.
    level_style = LEVEL_STYLE.get(e.level, "")
    line.append(f"{clock(e.ts)} ", style="dim")
    line.append(f"{LEVEL_TAG.get(e.level, e.level.upper()[:5]).strip():<5} ", style=level_style)
    line.append(f"{e.source:<10} ", style="dim")
    if e.container_id and e.container_id not in e.message:
        line.append(f"{e.container_id} ", style="cyan")
    line.append(escape_controls(f"{e.message}{change}{who}"), style=level_style)
    return line


# -- budget ------------------------------------------------------------------------------------


def bar(fraction: float, width: int) -> str:
    """A text progress bar that reads without colour: filled and empty blocks."""
    width = max(4, width)
    filled = round(min(1.0, max(0.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def budget_lines(b: BudgetView, now: datetime, width: int = 40) -> list[Text]:
    """Spent against the ceiling (bar and %), burn, when the ceiling is reached, GPUs, policy."""
    from rich.text import Text

    style = BUDGET_STYLE.get(b.level, "")
    pct = b.percent
    head = Text()
    head.append(f"{money(b.spent_usd)} of {money(b.ceiling_usd)} this {b.period} · ")
    head.append(f"{pct:.0f}%", style=style)
    if b.level != "ok":
        head.append(" · ")
        head.append(b.level.upper(), style=style)
    shown = trend_width(b, width)
    bar_line = Text(bar(pct / 100.0, width - shown - 1 if shown else width), style=style)
    if shown:  # the spend trend next to the bar: each block an hour, the newest on the right
        bar_line.append(" " + sparkline(list(b.trend[-shown:])), style="bold")
    if b.burn_rate_per_hour > 0 and b.ceiling_at is not None:
        eta = f"full at {short_clock(b.ceiling_at)} (in {age(now, b.ceiling_at)})"
    elif b.spent_usd >= b.ceiling_usd > 0:
        eta = "ceiling reached"
    else:
        eta = "never full at this rate"  # burn 0: the ceiling is not reached
    burn = Text(f"burn {money(b.burn_rate_per_hour)}/h · {eta}")
    detail = Text(
        f"GPUs running {b.running_gpus} · policy {b.policy} · left {money(b.remaining_usd)}",
        style="dim",
    )
    lines = [head, bar_line, burn, detail]
    if shown:
        peak = max(b.trend[-shown:])
        lines.append(
            Text(
                f"trend {shown} h · peak {money(peak)}/h"
                if peak > 0
                else f"trend {shown} h · no spend",
                style="dim",
            )
        )
    return lines


def trend_width(b: BudgetView, width: int) -> int:
    """How many hours of the spend trend fit beside the bar (a third of the width at most, none
    when fewer than 4 would)."""
    n = min(len(b.trend), width // 3)
    return n if n >= 4 else 0


# -- header and banner ---------------------------------------------------------------------------


def reconciler_line(
    r: ReconcilerView, now: datetime, me: str | None = None, *, short: bool = False
) -> str:
    """The reconciler's last and next run and who holds the lease; `short` for narrow headers."""
    if r.last_run_at:
        last = f"{age(r.last_run_at, now)} ago" if short else f"last {age(r.last_run_at, now)} ago"
    else:
        last = "never run"
    if r.next_run_at is None:
        nxt = ""
    elif r.next_run_at <= now:
        nxt = " · next due"
    else:
        nxt = (
            f" · next {age(now, r.next_run_at)}"
            if short
            else f" · next in {age(now, r.next_run_at)}"
        )
    if r.lease_holder and r.lease_expires_at and r.lease_expires_at > now:
        mine = me and r.lease_holder == me
        who = ("me" if short else "this dashboard") if mine else r.lease_holder
        lease = f" · lease {who}" + (" (dead)" if r.lease_dead else "")
    else:
        lease = " · lease free"
    return f"{'rec' if short else 'reconciler'} {last}{nxt}{lease}"


def short_plane_id(plane_id: str) -> str:
    """The header's form: the first 8 hex digits, enough to tell two teammates' planes apart."""
    return plane_id.removeprefix("cp-")[:8]


def status_text(
    backend: str,
    database: str,
    reconciler: str,
    mode: str = "",
    budget: str = "",
    plane: str = "",
) -> Text:
    """The header line: backend, database (left out when empty, as on a narrow screen) and its
    control plane's short id, the reconciler, whether this process acts or reads, and the budget
    when its pane is hidden."""
    from rich.text import Text

    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(" parhelia ", style="bold reverse")
    line.append(f" backend {backend}", style="bold")
    if database:
        line.append(f" · db {database}", style="dim")
    if plane:
        line.append(f" · plane {short_plane_id(plane)}", style="dim")
    line.append(f" · {reconciler}")
    if budget:
        line.append(f" · {budget}", style="bold")
    if mode:
        line.append(f" · {mode}", style="italic")
    return line


def foreign_line(view: DashboardView) -> str | None:
    """Another control plane's sandboxes, counted apart from ours: shown, never acted on."""
    n = len(view.foreign)
    if not n:
        return None
    planes = len({f.plane_id for f in view.foreign})
    whose = "another control plane" if planes == 1 else f"{planes} other control planes"
    return f"{n} sandbox(es) of {whose} running: not this Parhelia's, never touched"


def stale_banner(view: DashboardView) -> str | None:
    """Plainly say the view is stale, since when, and why: never read a failed listing as empty."""
    r = view.reconciler
    if not r.stale:
        return None
    where = (_named_backend(r.last_error) or view.backend or "backend").capitalize()
    reason = f": {r.last_error}" if r.last_error else ""
    return (
        f"{where} unreachable since {short_clock(r.stale_since)}, showing last known state{reason}"
    )


def _named_backend(error: str | None) -> str | None:
    """The backend a failed listing's error names first (the reconciler writes "modal: ..."):
    the default backend is not the one unreachable when another one's listing failed."""
    head, sep, _ = (error or "").partition(": ")
    return head if sep and head.isalpha() and head.islower() else None


def attention_reasons(view: DashboardView) -> list[str]:
    """The view's attention list as lines of text (`reason: command`)."""
    return [str(a) for a in view.attention()]
