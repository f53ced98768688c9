"""The containers pane: one row per container, updated by key on every refresh.

Each refresh compares the new views with the last by identity (the store hands back the very
same object for a container that did not change, `state/live_views.py`): rows whose container
changed get a new version, new rows come and gone rows go; nothing is cleared, so the cursor and
the scroll position survive (k9s' model). A row's cells are made only when it is drawn, and a row
is drawn only when it changed and is on screen (`LineTable`): 40 rows a refresh, not 10,000. The
order (sort and filter) is made in the refresh thread from the changed rows' keys
(`prepare_rows`). Sort and filter are the table's own state and so stay put across refreshes;
the cursor follows its container, not its row number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

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
    order_key,
    row_style,
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


Settings = tuple[str, bool, str]  # (sort column, reversed, filter text): what an order is for


@dataclass(frozen=True)
class PreparedRows:
    """The pane's order worked out in the refresh thread, so that the main thread only applies
    it: every view by id, each one's key for `settings`' sort column (kept from the last
    refresh for the views that did not change), and the ids shown, filtered and sorted."""

    settings: Settings
    views: dict[str, ContainerView]
    keys: dict[str, tuple]
    order: list[str]
    agents: Mapping[str, AgentState] = field(default_factory=dict)  # `DashboardView.agents`


def prepare_rows(
    views: list[ContainerView],
    settings: Settings,
    changed: set[str] | None = None,
    previous: PreparedRows | None = None,
    agents: Mapping[str, AgentState] | None = None,
) -> PreparedRows:
    """Pure, for the refresh thread: sort keys for the rows in `changed` or whose agent's activity
    changed (all of them when None, or when `previous` was for another sort column), then the
    filtered, sorted order. A row's cells are not made here at all: only when it is drawn
    (`ContainersTable.row_cells`)."""
    column, reverse, text = settings
    agents = agents or {}
    old = previous.keys if previous is not None and previous.settings[0] == column else {}
    same = changed is not None and previous is not None
    if same:
        changed = changed | _agents_changed(previous.agents, agents)
    keys = {}
    moved = not same or len(views) != len(old)  # whether the order must be made again
    for c in views:
        key = old.get(c.id) if same and c.id not in changed else None
        if key is None:
            key = order_key(c, column, agents.get(c.id))
            moved = moved or old.get(c.id) != key
        keys[c.id] = key
    if not moved and previous is not None and previous.settings == settings and not text:
        # the same rows with the same keys (a heartbeat moves no row sorted by age): same order
        return PreparedRows(settings, {c.id: c for c in views}, keys, previous.order, agents)
    wanted = ContainerFilter.parse(text).apply(views) if text else views
    order = sorted_ids([(c.id, keys[c.id]) for c in wanted], reverse=reverse)
    return PreparedRows(settings, {c.id: c for c in views}, keys, order, agents)


def _agents_changed(before: Mapping[str, AgentState], now: Mapping[str, AgentState]) -> set[str]:
    """The containers whose agent's activity is not what it was (the AGENT cell and key move)."""
    return {k for k in before.keys() | now.keys() if before.get(k) != now.get(k)}


def row_cells(
    c: ContainerView, now: datetime, agent: AgentState | None = None
) -> list[tuple[str, str]]:
    """One container's row as drawn: each cell with its style, starting with the space that keeps
    columns apart. The one place a row is built (a new column goes in `COLUMNS` and
    `container_cells`; `agent` is the view's side map's, `DashboardView.agents`)."""
    cells, base = container_cells(c, now, agent), row_style(c)
    return [
        (" " + value, cell_style(c, key, base, agent))
        for key, value in zip(COLUMN_KEYS, cells, strict=True)
    ]


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
        self._views: dict[str, ContainerView] = {}  # every container of the view, by id
        self._keys: dict[str, tuple] = {}  # each one's key for the sort column
        self._keyed_for = self.sort_column
        self._all: list[ContainerView] = []
        self._drawn: dict[str, tuple[ContainerView, list[tuple[str, str]]]] = {}
        self._agents: Mapping[str, AgentState] = {}  # what each agent does (`DashboardView.agents`)
        self._row_versions: dict[str, int] = {}
        self._next_version = 0
        self.matched = 0
        self._task_width = TASK_WIDTH + 1
        self.hidden_columns: tuple[str, ...] = ()  # given way to a narrow pane

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

    @property
    def any_active_shown(self) -> bool:
        """Whether `T` has anything to stop (stops at the first active row, not a list of all)."""
        return any(self._views[key].is_active for key in self.ordered_keys)

    @property
    def settings(self) -> Settings:
        """What an order is for: the refresh thread prepares the next one for these."""
        return (self.sort_column, self.sort_reverse, self.filter.text)

    def get_cell(self, container_id: str, column: str) -> Text:
        """A shown cell as text with its style (KeyError if the container is not shown)."""
        text, style = self.row_cells(container_id)[COLUMN_KEYS.index(column)]
        return Text(text, style=style)

    def row_cells(self, key: str) -> list[tuple[str, str]]:
        """The row's cells, made when it is drawn and kept while its view and `now` stay."""
        self.row_index(key)  # KeyError when it is not shown
        view = self._views[key]
        drawn = self._drawn.get(key)
        if drawn is None or drawn[0] is not view:
            drawn = (view, row_cells(view, self.now or view.created_at, self._agents.get(key)))
            self._drawn[key] = drawn
        return drawn[1]

    def line_version(self, key: str) -> object:
        return (self._row_versions[key], self.now)

    def row_version(self, key: str) -> int | None:
        """Changes whenever the row's container changed (tests: untouched rows keep theirs)."""
        return self._row_versions.get(key)

    def show(
        self,
        views: list[ContainerView],
        now: datetime,
        prepared: PreparedRows | None = None,
        agents: Mapping[str, AgentState] | None = None,
    ) -> None:
        """Bring the table in line with `views`: the rows whose container (or agent's activity,
        `agents`) changed are drawn again (only those on screen are), rows come and go; nothing
        is cleared, so the cursor and the scroll position stay. `prepared` (from `prepare_rows`
        for these views) brings the order made in the refresh thread; a view that is not the one
        it was prepared from (a row marked as terminating) gets its key here."""
        self._all = views
        if now != self.now:
            self._drawn.clear()  # ages and costs move with `now`
        self.now = now
        agents = agents or {}
        agents_moved = _agents_changed(self._agents, agents)
        self._agents = agents
        old = self._views
        fresh = {c.id: c for c in views}
        ready = prepared if prepared is not None and prepared.settings == self.settings else None
        if ready is not None:
            keys, resort = dict(ready.keys), False
        else:
            keys, resort = self._keys, True
        column = self.sort_column
        for key, c in fresh.items():
            if old.get(key) is not c or key in agents_moved:
                self._next_version += 1
                self._row_versions[key] = self._next_version
                self._drawn.pop(key, None)
                if ready is None:
                    keys[key] = order_key(c, column, agents.get(key))
            if ready is not None and ready.views.get(key) is not c:
                keys[key] = order_key(c, column, agents.get(key))
                resort = True
        for key in [k for k in self._row_versions if k not in fresh]:
            del self._row_versions[key]
            self._drawn.pop(key, None)
        if len(keys) > 2 * len(fresh) + 100:  # keys of rows long gone
            keys = {k: keys[k] for k in fresh if k in keys}
        self._views, self._keys, self._keyed_for = fresh, keys, column
        order = self._sorted() if ready is None or resort else ready.order
        self.matched = len(order)
        if order != self.ordered_keys:
            self.set_order(order)
        else:
            self.refresh()
        self.post_message(self.Changed())

    @staticmethod
    def filter_problems(text: str) -> list[str]:
        return ContainerFilter.parse(text).problems()

    def set_filter(self, text: str) -> None:
        self.filter = ContainerFilter.parse(text)
        if self.now is not None:
            self._reorder()

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
        flipped = column == self.sort_column and reverse != self.sort_reverse
        self.sort_column, self.sort_reverse = column, reverse
        self.set_header(self._header_cells())
        self._reorder(self._flipped() if flipped and self._keyed_for == column else None)

    def _flipped(self) -> list[str]:
        """The order shown, reversed but for the rows without a value (last either way): every
        key ends with the id, so no two are equal and this is the order a sort would make."""
        order, keys = self.ordered_keys, self._keys
        have = len(order)
        while have and keys[order[have - 1]][0]:
            have -= 1
        return order[have - 1 :: -1] + order[have:] if have else list(order)

    def _reorder(self, order: list[str] | None = None) -> None:
        order = self._sorted() if order is None else order
        self.matched = len(order)
        self.set_order(order)
        self.post_message(self.Changed())

    def action_cycle_sort(self) -> None:
        i = COLUMN_KEYS.index(self.sort_column)
        self.sort_by(COLUMN_KEYS[(i + 1) % len(COLUMN_KEYS)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_line_table_header_selected(self, event: LineTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column)

    def _sorted(self) -> list[str]:
        """The filtered ids in the sort column's order; keys are worked out for the column once
        and kept (a key press sorts; only a new column makes each row's key)."""
        column = self.sort_column
        if self._keyed_for != column:
            self._keys, self._keyed_for = {}, column
        keys = self._keys
        wanted = self.filter.apply(self._all) if self.filter else self._all
        for c in wanted:
            if c.id not in keys:
                keys[c.id] = order_key(c, column, self._agents.get(c.id))
        return sorted_ids([(c.id, keys[c.id]) for c in wanted], reverse=self.sort_reverse)

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
