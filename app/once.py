"""`parhelia tui --once`: the dashboard's panes rendered once to stdout, for scripts and cron.

The same view (`ControlPlane.dashboard()`) and the same formatter (`parhelia.widgets.formatting`)
as the live dashboard, laid out with Rich: text (plain when piped), JSON (the `--json` envelope)
or SVG. The exit code says whether anyone needs to look: 0 all well, 1 attention, 2 error.
"""

from __future__ import annotations

import io
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from parhelia.app.snapshot import exit_code as exit_code  # re-exported: tests import it here
from parhelia.app.snapshot import render_json
from parhelia.state.views import DashboardView
from parhelia.widgets.formatting import (
    BUDGET_STYLE,
    COLUMNS,
    COMMAND_STYLE,
    TASK_WIDTH,
    Column,
    budget_lines,
    cell_style,
    container_cells,
    event_text,
    foreign_line,
    reconciler_line,
    row_style,
    sort_value,
    stale_banner,
    status_text,
    totals_line,
)

EVENT_TAIL = 10
MIN_TASK = 16


def render_once(
    view: DashboardView, *, fmt: str = "text", width: int = 120, color: bool = False
) -> str:
    if fmt == "json":
        return render_json(view)
    console = Console(
        file=io.StringIO(),
        width=width,
        record=fmt == "svg",
        force_terminal=color,
        no_color=not color and fmt != "svg",
        color_system="truecolor" if (color or fmt == "svg") else None,
        legacy_windows=False,
        highlight=False,
        emoji=False,
    )
    console.print(dashboard_renderable(view, width))
    if fmt == "svg":
        return console.export_svg(title="parhelia tui --once")
    text = console.file.getvalue()
    return "\n".join(line.rstrip() for line in text.split("\n"))


def dashboard_renderable(view: DashboardView, width: int) -> RenderableType:
    now = view.generated_at
    parts: list[RenderableType] = [
        status_text(
            view.backend, view.database, reconciler_line(view.reconciler, now), plane=view.plane_id
        )
    ]
    banner = stale_banner(view)
    if banner:
        parts.append(Text(f"⚠ {banner}", style="bold red"))
    parts.append(containers_table(view, now, width))
    side = [budget_panel(view, now, width), attention_panel(view)]
    parts.append(Group(*side))
    parts.append(events_panel(view))
    return Group(*parts)


# What gives way on a narrow terminal, first to last: never the id, state, health, age or cost.
# The rate goes before the agent's activity, as in the dashboard's pane (`GIVE_WAY`).
DROP_ORDER = ("sandbox", "gpu", "memory", "cpu", "heartbeat", "rate", "agent")


def fitting_columns(width: int) -> list[Column]:
    """Every column when the width allows; otherwise whole columns go (sandbox and GPU first, as
    they scroll off in the dashboard), never truncated ids or values."""
    columns = list(COLUMNS)
    for key in DROP_ORDER:
        if _table_width(columns) <= width:
            break
        columns = [c for c in columns if c.key != key]
    return columns


def _table_width(columns: list[Column]) -> int:
    return sum((MIN_TASK if c.key == "task" else c.width) + 1 for c in columns)


def containers_table(view: DashboardView, now: datetime, width: int = 120) -> Group:
    """The containers as fixed-width lines, laid out here rather than by a Rich `Table`: widths
    are known, and measuring a thousand rows cell by cell took seconds (bench/tui.py)."""
    columns = fitting_columns(width)
    task_width = max(MIN_TASK, min(TASK_WIDTH, width - _table_width(columns) + MIN_TASK - 1))
    widths = [task_width if col.key == "task" else col.width for col in columns]
    keep = [i for i, col in enumerate(COLUMNS) if col in columns]
    out = Text(no_wrap=True, overflow="crop")
    out.append(f"Containers ({len(view.containers)})\n")
    out.append(_line([col.label for col in columns], columns, widths), style="bold")
    out.append("\n")
    # The dashboard's default order: youngest first.
    for c in sorted(view.containers, key=lambda c: sort_value(c, "age", now)):
        agent = view.agents.get(c.id)
        cells = container_cells(c, now, agent)
        base = row_style(c)
        for col, w, i in zip(columns, widths, keep, strict=True):
            style = cell_style(c, col.key, base, agent) or None
            out.append(_fit(cells[i], w, col.justify), style=style)
            out.append(" ")
        out.append("\n")
    if not view.containers:
        out.append("-\n")
    out.rstrip()
    theirs = foreign_line(view)
    return Group(out, Text(totals_line(view.containers)), *([Text(theirs)] if theirs else []))


def _fit(value: str, width: int, justify: str) -> str:
    if len(value) > width:
        value = value[: width - 1] + "…"
    return value.rjust(width) if justify == "right" else value.ljust(width)


def _line(values: list[str], columns: list[Column], widths: list[int]) -> str:
    return " ".join(
        _fit(v, w, col.justify) for v, col, w in zip(values, columns, widths, strict=True)
    )


def budget_panel(view: DashboardView, now: datetime, width: int) -> Panel:
    inner = min(60, max(20, width - 4))
    return Panel(
        Group(*budget_lines(view.budget, now, inner - 4)),
        title="Budget",
        title_align="left",
        border_style=BUDGET_STYLE.get(view.budget.level, ""),
        width=inner,
    )


def attention_panel(view: DashboardView) -> RenderableType:
    reasons = view.attention()
    if not reasons:
        return Text("All well: nothing needs attention.", style="green")
    body = Text()
    for a in reasons:
        body.append(f"! {a.text}: ", style="yellow")
        body.append(f"{a.command}\n", style=COMMAND_STYLE)
    body.rstrip()
    return Panel(body, title="Attention", title_align="left", border_style="yellow", expand=False)


def events_panel(view: DashboardView) -> RenderableType:
    tail = view.events[-EVENT_TAIL:]
    lines = [event_text(e) for e in tail] or [Text("no events yet", style="dim")]
    return Group(Text(f"Events (last {len(tail)})", style="bold"), *lines)
