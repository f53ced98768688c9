"""The containers pane: one row per container, updated by key on every refresh.

Each refresh diffs the new views against the cells on screen: only rows whose cells changed are
replaced, new rows added and gone rows dropped; nothing is cleared, so the cursor and the scroll
position survive (k9s' model), and a row is redrawn only when it changed and is on screen
(`LineTable`). Sort and filter are the table's own state and so stay put across refreshes; the
cursor follows its container, not its row number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from parhelia.state.agent_activity import AgentState
from parhelia.state.views import ContainerView
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.formatting import (
    COLUMN_KEYS,
    COLUMNS,
    TASK_WIDTH,
    cell_style,
    container_cells,
    row_style,
    sort_keys,
    sorted_ids,
)
from parhelia.widgets.help_pane import PaneHelp
from parhelia.widgets.line_table import LineTable, TableColumn

# Columns are laid out with no padding: each cell starts with one space and each column is one
# wider than its widest value, so columns never touch.
MIN_TASK = 12
# Which columns give way first when the pane is narrow: the task shrinks to MIN_TASK, then the
# columns are hidden from the last of this list backwards, so ID, state, health, age and cost stay
# on screen down to an 80-column terminal (the pane's subtitle names what is hidden).
GIVE_WAY = ("sandbox", "gpu", "heartbeat", "memory", "cpu", "rate", "agent", "task")


@dataclass(frozen=True)
class PreparedRow:
    """A container's row worked out ahead: its plain cells and row style (compared to find what
    changed), the styled cells shown, and its sort key for every column."""

    cells: tuple[str, ...]
    style: str
    shown: list[tuple[str, str]]
    sort_keys: tuple


def prepare_rows(
    views: list[ContainerView], now: datetime, agents: Mapping[str, AgentState] | None = None
) -> dict[str, PreparedRow]:
    """Every row's content, pure: the dashboard runs it in its refresh thread, so formatting 1,000
    rows (~20 ms) never holds up a key press on the main thread. `agents` is the view's side map
    of what each agent does (`DashboardView.agents`), merged into the AGENT cell."""
    agents = agents or {}
    out = {}
    for c in views:
        agent = agents.get(c.id)
        cells, style = container_cells(c, now, agent), row_style(c)
        out[c.id] = PreparedRow(
            cells, style, _row(c, cells, style, agent), sort_keys(c, now, agent)
        )
    return out


class ContainersTable(LineTable):
    """Containers with state, health, task, age, heartbeat, usage and cost."""

    PANE_HELP = PaneHelp("Containers")
    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding(
            "escape",
            "clear_filter",
            "Clear filter",
            key_display="esc",
            show=False,
            tooltip="Clear the filter",
        ),
    ]

    class FilterCleared(Message):
        """Esc on the table cleared its filter (the app hides the filter bar)."""

    class Changed(Message):
        """Rows were added, removed or changed by a refresh (the help pane re-reads the selection)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.filter = ContainerFilter()
        self.sort_column = "age"
        self.sort_reverse = False  # youngest first: what was just dispatched is on top
        self.now: datetime | None = None
        self._views: dict[str, ContainerView] = {}
        self._shown: dict[str, tuple[tuple[str, ...], str]] = {}
        self._all: list[ContainerView] = []
        self.matched = 0
        self._task_width = TASK_WIDTH + 1
        self.hidden_columns: tuple[str, ...] = ()  # given way to a narrow pane
        self._prepared: dict[str, PreparedRow] = {}
        self._agents: Mapping[str, AgentState] = {}

    def on_mount(self) -> None:
        self._set_columns()

    def _set_columns(self) -> None:
        columns = [
            TableColumn(
                c.key,
                c.label,
                0 if c.key in self.hidden_columns else self._width(c),
                c.justify,
            )
            for c in COLUMNS
        ]
        self.set_columns(columns, self._header_cells())

    def _width(self, c) -> int:
        return self._task_width if c.key == "task" else c.width + 1

    def on_resize(self) -> None:
        """Fit the columns to the pane: the task gives up its width first, then whole columns
        give way (GIVE_WAY), so state, health, age and cost stay on screen."""
        task, hidden = fit_columns(self.scrollable_content_region.width)
        if (task, hidden) != (self._task_width, self.hidden_columns):
            self._task_width, self.hidden_columns = task, hidden
            self._set_columns()
            self.post_message(self.Changed())

    # -- what is shown ---------------------------------------------------------------------

    @property
    def selected(self) -> ContainerView | None:
        key = self.cursor_key
        return None if key is None else self._views.get(key)

    @property
    def shown_rows(self) -> list[ContainerView]:
        """The containers the filter lets through, in the order shown (what `T` would stop)."""
        return [self._views[key] for key in self.ordered_keys]

    def get_cell(self, container_id: str, column: str) -> Text:
        """A shown cell as text with its style (KeyError if the container is not shown)."""
        text, style = self.row_cells(container_id)[COLUMN_KEYS.index(column)]
        return Text(text, style=style)

    def show(
        self,
        views: list[ContainerView],
        now: datetime,
        prepared: dict[str, PreparedRow] | None = None,
        agents: Mapping[str, AgentState] | None = None,
    ) -> None:
        """Bring the table in line with `views`: replace changed rows, add and drop rows only.
        `prepared` (from `prepare_rows` for these views, `now` and `agents`) saves formatting
        them here; `agents` (`DashboardView.agents`) fills the AGENT column of rows not prepared."""
        self._all = views
        self.now = now
        self._prepared = prepared or {}
        self._agents = agents or {}
        wanted = self.filter.apply(views)
        self.matched = len(wanted)
        sort_index = COLUMN_KEYS.index(self.sort_column)
        resort = len(wanted) != len(self._shown)
        shown = self._shown
        fresh: dict[str, tuple[tuple[str, ...], str]] = {}
        for c in wanted:
            ready = self._prepared.get(c.id)
            agent = self._agents.get(c.id)
            if ready is None:
                cells, style = container_cells(c, now, agent), row_style(c)
            else:
                cells, style = ready.cells, ready.style
            old = shown.get(c.id)
            fresh[c.id] = (cells, style)
            if old is None or old[0] != cells or old[1] != style:
                self.put_row(
                    c.id, ready.shown if ready is not None else _row(c, cells, style, agent)
                )
                if old is None or old[0][sort_index] != cells[sort_index]:
                    resort = True
        self._shown = fresh
        self._views = {c.id: c for c in wanted}
        if resort or any(k not in fresh for k in self.ordered_keys):
            self.set_order(self._sorted())
        else:
            self.refresh()
        self.post_message(self.Changed())

    @staticmethod
    def filter_problems(text: str) -> list[str]:
        return ContainerFilter.parse(text).problems()

    def set_filter(self, text: str) -> None:
        self.filter = ContainerFilter.parse(text)
        if self.now is not None:
            self.show(self._all, self.now, self._prepared, self._agents)

    def action_clear_filter(self) -> None:
        if self.filter:
            self.set_filter("")
            self.post_message(self.FilterCleared())

    # -- sorting ---------------------------------------------------------------------------

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        if column not in COLUMN_KEYS:
            return
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self.set_header(self._header_cells())
        self.set_order(self._sorted())

    def action_cycle_sort(self) -> None:
        i = COLUMN_KEYS.index(self.sort_column)
        self.sort_by(COLUMN_KEYS[(i + 1) % len(COLUMN_KEYS)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_line_table_header_selected(self, event: LineTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column)

    def _sorted(self) -> list[str]:
        if self.now is None:
            return list(self._views)
        now, prepared, agents = self.now, self._prepared, self._agents
        column = COLUMN_KEYS.index(self.sort_column)

        def key(c: ContainerView) -> Any:
            ready = prepared.get(c.id)
            if ready is not None:
                return ready.sort_keys[column]
            return sort_keys(c, now, agents.get(c.id))[column]

        keyed = [(c.id, key(c)) for c in self._views.values()]
        return sorted_ids(keyed, reverse=self.sort_reverse)

    def _header_cells(self) -> list[tuple[str, str]]:
        arrow = "▼" if self.sort_reverse else "▲"
        return [
            (f" {c.label}{arrow}", "bold") if c.key == self.sort_column else (f" {c.label}", "")
            for c in COLUMNS
        ]

    def select(self, container_id: str) -> bool:
        """Put the cursor on a container (and scroll to it); False if it is not shown."""
        try:
            row = self.row_index(container_id)
        except KeyError:
            return False
        self.move_cursor(row)
        return True


def fit_columns(avail: int) -> tuple[int, tuple[str, ...]]:
    """The task column's width and the columns hidden, for a pane `avail` cells wide."""
    natural = {c.key: c.width + 1 for c in COLUMNS}
    natural["task"] = TASK_WIDTH + 1
    hidden: list[str] = []

    def total(task: int) -> int:
        return sum(w for k, w in natural.items() if k not in hidden and k != "task") + (
            0 if "task" in hidden else task
        )

    for key in GIVE_WAY:
        if total(MIN_TASK + 1) <= avail:
            break
        hidden.append(key)
    task = max(MIN_TASK + 1, min(TASK_WIDTH + 1, avail - total(0)))
    return task, tuple(hidden)


def _row(
    c: ContainerView, cells: tuple[str, ...], base: str, agent: AgentState | None = None
) -> list[tuple[str, str]]:
    """The row's cells with their styles; each starts with the space that keeps columns apart."""
    return [
        (" " + value, cell_style(c, key, base, agent))
        for key, value in zip(COLUMN_KEYS, cells, strict=True)
    ]
