"""`parhelia tui --once`: the dashboard's panes rendered once to stdout, for scripts and cron.

The same view (`ControlPlane.dashboard()`) and the same formatter (`parhelia.widgets.formatting`)
as the live dashboard, laid out with Rich: text (plain when piped), JSON (the `--json` envelope)
or SVG. The exit code says whether anyone needs to look: 0 all well, 1 attention, 2 error.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
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
# Container rows in a text or SVG snapshot unless `--all`: 10,000 lines are no snapshot, and
# rendering them was most of its time; `--format json` always carries every container.
ROW_LIMIT = 1_000
MIN_TASK = 16


def render_once(
    view: DashboardView,
    *,
    fmt: str = "text",
    width: int = 120,
    color: bool = False,
    all_rows: bool = False,
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
    console.print(dashboard_renderable(view, width, None if all_rows else ROW_LIMIT))
    if fmt == "svg":
        return console.export_svg(title="parhelia tui --once")
    text = console.file.getvalue()
    return "\n".join(line.rstrip() for line in text.split("\n"))


def dashboard_renderable(
    view: DashboardView, width: int, limit: int | None = None
) -> RenderableType:
    now = view.generated_at
    parts: list[RenderableType] = [
        status_text(
            view.backend, view.database, reconciler_line(view.reconciler, now), plane=view.plane_id
        )
    ]
    banner = stale_banner(view)
    if banner:
        parts.append(Text(f"⚠ {banner}", style="bold red"))
    parts.append(containers_table(view, now, width, limit))
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


def containers_table(
    view: DashboardView, now: datetime, width: int = 120, limit: int | None = None
) -> Group:
    """The containers as fixed-width lines, laid out here rather than by a Rich `Table`: widths
    are known, and measuring a thousand rows cell by cell took seconds (bench/tui.py). Each line
    goes to the console as its own segments (`StyledLines`): one Rich `Text` of 10,000 lines
    was split, wrapped and cropped by Rich again, most of a 2.5 s snapshot."""
    columns = fitting_columns(width)
    task_width = max(MIN_TASK, min(TASK_WIDTH, width - _table_width(columns) + MIN_TASK - 1))
    widths = [task_width if col.key == "task" else col.width for col in columns]
    keep = [i for i, col in enumerate(COLUMNS) if col in columns]
    lines: list[list[tuple[str, str | None]]] = [
        [(f"Containers ({len(view.containers)})", None)],
        [(_line([col.label for col in columns], columns, widths), "bold")],
    ]
    # The dashboard's default order: youngest first; past `limit` rows a line says how many more.
    rows = sorted(view.containers, key=lambda c: sort_value(c, "age", now))
    more = len(rows) - limit if limit is not None and len(rows) > limit else 0
    for c in rows[: len(rows) - more]:
        agent = view.agents.get(c.id)
        cells = container_cells(c, now, agent)
        base = row_style(c)
        line: list[tuple[str, str | None]] = []
        for col, w, i in zip(columns, widths, keep, strict=True):
            _add(line, _fit(cells[i], w, col.justify), cell_style(c, col.key, base, agent) or None)
            _add(line, " ", None)
        lines.append(line)
    if more:
        lines.append(
            [(f"… {more:,} more (the oldest); every row: parhelia tui --once --all", "dim")]
        )
    if not view.containers:
        lines.append([("-", None)])
    theirs = foreign_line(view)
    return Group(
        StyledLines(lines, width),
        Text(totals_line(view.containers)),
        *([Text(theirs)] if theirs else []),
    )


def _add(line: list[tuple[str, str | None]], text: str, style: str | None) -> None:
    """`text` at the end of `line`, joined to the piece before when their style is the same (a
    console takes a dozen pieces a line much faster than two dozen)."""
    if line and line[-1][1] == style:
        line[-1] = (line[-1][0] + text, style)
    else:
        line.append((text, style))


class StyledLines:
    """Lines of (text, style) pieces already cut to fit, given to the console as they are: no
    wrapping, no measuring. A line's trailing blanks are dropped, as `Text.rstrip` did."""

    def __init__(self, lines: list[list[tuple[str, str | None]]], width: int) -> None:
        self.lines, self.width = lines, width

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Segment]:
        parse = Style.parse
        newline = Segment.line()
        last = len(self.lines) - 1
        for n, line in enumerate(self.lines):
            pieces = line
            if n == last:  # the block's trailing blanks go, as `Text.rstrip` did
                while pieces and not pieces[-1][0].strip():
                    pieces = pieces[:-1]
                if pieces:
                    pieces = [*pieces[:-1], (pieces[-1][0].rstrip(), pieces[-1][1])]
            for text, style in pieces:
                yield Segment(text, parse(style) if style else None)
            yield newline

    def __rich_measure__(self, console: Console, options: Any) -> Measurement:
        return Measurement(self.width, self.width)


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
