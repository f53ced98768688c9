"""The data each question returns, computed once for both the CLI's `--json` and the MCP tools.

Every function takes the `ControlPlane` and returns plain JSON-able data (dataclasses converted,
datetimes as ISO strings), so `parhelia containers list --json` and the `containers_list` tool
can never disagree: they are the same call.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from parhelia.state.errors import ParheliaError

if TYPE_CHECKING:
    from datetime import datetime

    from parhelia.state.views import ContainerView, DashboardView, EventView
    from parhelia.workers.control import ControlPlane
    from parhelia.workers.dispatch import Estimate
    from parhelia.workers.read_plane import ReadPlane

HEALTH_GROUPS = ("healthy", "degraded", "unhealthy", "dead", "unknown")


def plain(data: Any) -> Any:
    """`data` as the JSON the CLI prints (datetimes as ISO text, dataclasses as dicts)."""
    from parhelia.app.output import _default

    return json.loads(json.dumps(data, default=_default))


# -- status ---------------------------------------------------------------------------------


def status_data(view: DashboardView) -> dict:
    """The `tui --once --format json` (and `parhelia status --json`) data: verdict, reasons, view."""
    from parhelia.widgets.formatting import attention_reasons, stale_banner

    return {
        "status": "attention" if view.needs_attention else "ok",
        "attention": attention_reasons(view),
        "banner": stale_banner(view),
        "dashboard": view.to_dict(),
    }


# -- containers -----------------------------------------------------------------------------


def select_containers(
    control: ReadPlane, *, all_: bool = False, state: str | None = None
) -> tuple[datetime, list[ContainerView]]:
    """The containers `containers list` shows, and the moment they were read: active and recent
    (the dashboard's rows, `Store.container_views`' default window), or every one with `all_`.
    Only the container rows are read: the rest of the dashboard (events, budget, spend trend,
    reconciler) is nothing this list shows, and its statements were a fifth of the command's
    time over its imports (bench/cli.py)."""
    checked_state(state)
    now = control.clock()
    rows = control.container_views(now=now, recent_hours=24 * 365 * 10 if all_ else None)
    if state:
        rows = [c for c in rows if c.state == state]
    return now, rows


def orphan_rows(view: DashboardView) -> list[ContainerView]:
    return [c for c in view.containers if c.state == "orphaned"]


def health_groups(view: DashboardView) -> dict[str, list[str]]:
    """Active containers' ids by health."""
    groups: dict[str, list[str]] = {h: [] for h in HEALTH_GROUPS}
    for c in view.containers:
        if c.is_active:
            groups.setdefault(c.health, []).append(c.id)
    return groups


def health_data(groups: dict[str, list[str]]) -> dict:
    return {h: {"count": len(ids), "ids": ids} for h, ids in groups.items()}


# -- events ---------------------------------------------------------------------------------


def one_of(value: str | None, enum: type, what: str, suggestions: list[str]) -> str | None:
    """`value` as given, or E101 naming the valid ones (an empty one too): a typo in a filter
    must not read as "nothing there"."""
    valid = [member.value for member in enum]
    if value is not None and value not in valid:
        raise ParheliaError(
            "E101", f"unknown {what} {value!r}; valid: {', '.join(valid)}", suggestions
        )
    return value


def checked_state(state: str | None) -> str | None:
    """A container state as given, or E101 naming the valid ones."""
    from parhelia.state.enums import ContainerState

    return one_of(
        state,
        ContainerState,
        "state",
        ["parhelia containers list --state running", "parhelia containers list --all"],
    )


def checked_level(level: str | None, verb: str) -> str | None:
    """A minimum event level as given, or E101 naming the valid ones."""
    from parhelia.state.enums import EventLevel

    return one_of(
        level,
        EventLevel,
        "level",
        [f"parhelia events {verb} --level warning", f"parhelia events {verb} --help"],
    )


def checked_task_status(status: str | None) -> str | None:
    """A task status as given, or E101 naming the valid ones."""
    from parhelia.state.enums import TaskStatus

    return one_of(
        status, TaskStatus, "status", ["parhelia task list --status running", "parhelia task list"]
    )


def event_views(
    control: ControlPlane,
    *,
    container: str | None = None,
    task: str | None = None,
    types: str | None = None,
    level: str | None = None,
    since=None,
    until=None,
    limit: int = 50,
) -> list[EventView]:
    """`events list`: filtered by container, task, types (comma-separated), minimum level and
    time range (datetimes); newest last."""
    checked_level(level, "list")
    cid = control.container(container).id if container else None
    return control.event_views(
        container_id=cid,
        task_id=task,
        types=types.split(",") if types else None,
        min_level=level,
        since=since,
        until=until,
        limit=limit,
    )


def recent_events(control: ControlPlane, limit: int = 20) -> list[dict]:
    """The dashboard's events pane: the newest `limit` events, newest last."""
    return plain([asdict(e) for e in control.dashboard(event_limit=limit).events])


# -- tasks ----------------------------------------------------------------------------------


def task_list_data(control: ReadPlane, *, status: str | None = None, limit: int = 50) -> list:
    return control.task_dicts(status=checked_task_status(status), limit=limit)


def task_show_parts(control: ControlPlane, ref: str):
    """A task, its containers and its latest 20 events (newest last)."""
    t = control.task(ref)
    containers = control.task_containers(t.id)
    events = control.event_views(task_id=t.id, limit=20)
    data = {
        "task": t.model_dump(),
        "containers": [c.model_dump() for c in containers],
        "events": [e.__dict__ for e in events],
    }
    return t, containers, events, data


def estimate_data(est: Estimate) -> dict:
    """An estimate with what is left of the budget now and after this task."""
    return {
        **asdict(est),
        "remaining_usd": est.remaining_usd,
        "budget_left_after_usd": max(0.0, est.remaining_usd - est.cost_usd),
    }


# -- budget and the reconciler --------------------------------------------------------------


def budget_data(view: DashboardView) -> dict:
    b = view.budget
    return {**asdict(b), "percent": round(b.percent, 2), "remaining_usd": b.remaining_usd}


def reconcile_now(control: ControlPlane):
    """One reconcile cycle (then heartbeat and budget); the one-shot pass releases the lease after,
    so a one-off never leaves it behind (`workers.loops.LoopRunner.once`)."""
    from parhelia.app.spinner import waiting

    with waiting("Reconciling with the backend…"):
        return control.refresh_once()
