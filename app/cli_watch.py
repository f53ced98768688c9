"""`parhelia containers watch` and `parhelia task watch ID`: the dashboard's containers pane and a
task's story, live outside the dashboard.

Both wake on the database watcher (`workers.event_follow.Changes`), read the same view as the
dashboard (`ControlPlane.dashboard`), hold heartbeat-driven churn back with SPEC-20's aggregation
(`state.aggregation.Aggregator`, one rule for every watch) and never hold back a change of
state or health. Ctrl-C ends them with 130, a closed pipe silently.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict
from typing import Annotated

import typer

from parhelia.app.cli_common import runtime
from parhelia.state.event_types import EventType
from parhelia.state.views import ContainerView, DashboardView, EventView

REDRAW_SECONDS = 1.0  # ages and costs move on their own: redraw (or re-read) this often
WATCH_COLUMNS = ("id", "state", "health", "cpu", "memory", "age", "cost", "task")


def container_line_cells(c: ContainerView, now) -> dict[str, str]:
    """The watch's columns, from the dashboard's cells (uptime is the dashboard's age)."""
    from parhelia.widgets.formatting import COLUMN_KEYS, container_cells

    cells = dict(zip(COLUMN_KEYS, container_cells(c, now), strict=True))
    return {k: cells[k] for k in WATCH_COLUMNS}


def change_event(old: ContainerView | None, new: ContainerView, seq: int) -> EventView | None:
    """A container's change, said as an event so the one aggregation rule applies: state or
    health changes are status changes (never held), samples are heartbeat-derived."""
    if old is not None and (old.state, old.health) == (new.state, new.health):
        sample = (new.cpu_percent, new.memory_used_mib, round(new.cost_accrued_usd, 2))
        if sample == (old.cpu_percent, old.memory_used_mib, round(old.cost_accrued_usd, 2)):
            return None
        return EventView(seq, _now(), EventType.CONTAINER_SAMPLE, "info", "heartbeat", "", new.id)
    return EventView(
        seq,
        _now(),
        EventType.CONTAINER_STATE,
        "info",
        "reconciler",
        "",
        new.id,
        old_value=old.state if old else None,
        new_value=new.state,
    )


def _now():
    from parhelia.state.timeutil import utcnow

    return utcnow()


def containers_watch(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Ended containers too.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON line per change (the default when piped).")
    ] = False,
) -> None:
    """A live line per container (state, health, CPU, memory, uptime, cost) until Ctrl-C."""
    from parhelia.app.stream_out import LineOut, run_until_interrupted
    from parhelia.state.aggregation import Aggregator

    rt = runtime(ctx, json_out)
    lines = rt.json_out or not sys.stdout.isatty()
    out = LineOut(json_out=True)
    stop = threading.Event()
    agg = Aggregator()
    seen: dict[str, ContainerView] = {}
    seq = iter(range(1, 1 << 62))

    def read() -> DashboardView:
        view = rt.control.dashboard(event_limit=0)
        if not all_:
            view = DashboardView(
                view.generated_at,
                [c for c in view.containers if c.is_active or c.id in seen],
                [],
                view.budget,
                view.reconciler,
                view.backend,
                view.database,
            )
        return view

    def emit_lines(view: DashboardView) -> None:
        by_id = {c.id: c for c in view.containers}
        due = []
        for c in view.containers:
            e = change_event(seen.get(c.id), c, next(seq))
            if e is not None:
                due += agg.feed(e)
        due += agg.flush(_now())
        for e in due:
            c = by_id.get(e.container_id)
            if c is not None:
                seen[c.id] = c
                out.doc({**asdict(c), "change": e.type.split(".")[1]})

    def body_lines() -> None:
        changes = rt.control.changes()
        try:
            emit_lines(read())
            while not stop.is_set():
                changes.wait(stop)
                emit_lines(read())
        finally:
            changes.close()

    def body_live() -> None:
        from rich.live import Live

        changes = rt.control.changes()
        try:
            with Live(render_table(read()), auto_refresh=False, screen=False) as live:
                last = 0.0
                while not stop.is_set():
                    woke = changes.wait(stop)
                    if woke or time.monotonic() - last >= REDRAW_SECONDS:
                        live.update(render_table(read()), refresh=True)
                        last = time.monotonic()
        finally:
            changes.close()

    run_until_interrupted(body_lines if lines else body_live)


def render_table(view: DashboardView):
    """The Live table: the dashboard's cells and colours for the watch's columns."""
    from rich.table import Table
    from rich.text import Text

    from parhelia.widgets.formatting import COLUMNS, cell_style, row_style, totals_line

    labels = {c.key: c for c in COLUMNS}
    table = Table(box=None, pad_edge=False, caption=totals_line(view.containers))
    for key in WATCH_COLUMNS:
        col = labels[key]
        table.add_column(col.label, justify=col.justify, no_wrap=True)
    for c in view.containers:
        cells = container_line_cells(c, view.generated_at)
        base = row_style(c)
        table.add_row(*(Text(cells[k], style=cell_style(c, k, base)) for k in WATCH_COLUMNS))
    if not view.containers:
        table.add_row("-", *([""] * (len(WATCH_COLUMNS) - 1)))
    return table


# -- task watch ---------------------------------------------------------------------------------

TERMINAL = {"completed": 0, "failed": 1, "cancelled": 1}


def task_outcome(rt, task_id: str) -> int | None:
    """None while the task runs; its exit code once it ended: 0 completed, 1 failed, timed out or
    cancelled. A task whose containers all ended reads from how the last one ended."""
    task = rt.control.task(task_id)
    if task.status in TERMINAL:
        return TERMINAL[task.status]
    containers = rt.control.task_containers(task_id)
    if not containers or any(c.state in ("created", "running", "orphaned") for c in containers):
        return None
    last = max(containers, key=lambda c: c.terminated_at or c.created_at)
    ok = last.exit_code == 0 and last.termination_reason not in ("timeout", "timed_out")
    return 0 if ok else 1


def task_watch(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task id.")],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings, errors and completions.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """A task's events (its container's health among them) until it ends: exit 0 completed,
    1 failed or timed out, 130 interrupted."""
    from parhelia.app.cli_events import follow_events

    rt = runtime(ctx, json_out)
    task_id = rt.control.task(task).id
    outcome: list[int] = []

    def done(_batch) -> bool:
        code = task_outcome(rt, task_id)
        if code is not None:
            outcome.append(code)
        return code is not None

    follow_events(rt, {"task_id": task_id}, from_start=True, quiet=quiet, until_done=done)
    if not outcome:  # ended before any event said so (a store that writes no events for it)
        code = task_outcome(rt, task_id)
        outcome.append(1 if code is None else code)
    raise typer.Exit(outcome[0])
