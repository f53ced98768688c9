"""The containers pane: one row per container, updated by key on every refresh.

Each refresh diffs the new views against the cells on screen: changed cells are updated in place,
new rows added, gone rows removed, all inside one `batch_update`; the table is never cleared, so
the cursor, the scroll position and every cache survive (k9s' model). Sort and filter are the
table's own state and so stay put across refreshes; the cursor follows its container, not its
row number.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from parhelia.state.views import ContainerView
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.formatting import (
    COLUMN_KEYS,
    COLUMNS,
    TASK_WIDTH,
    cell_style,
    container_cells,
    row_style,
    sort_value,
)

# Columns are laid out with no cell padding: each cell starts with one space and each column is one
# wider than its widest value, so columns never touch and eleven more cells fit than with Textual's
# default padding of one on both sides.
MIN_TASK = 12
CORE_END = "cost"  # the columns up to here must fit; GPU and sandbox may scroll off a narrow screen


class ContainersTable(DataTable):
    """Containers with state, health, task, age, heartbeat, usage and cost."""

    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
    ]

    class Changed(Message):
        """Rows were added, removed or changed by a refresh (the help pane re-reads the selection)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id,
            cursor_type="row",
            zebra_stripes=True,
            cell_padding=0,
            cursor_foreground_priority="renderable",
        )
        self.filter = ContainerFilter()
        self.sort_column = "age"
        self.sort_reverse = False  # youngest first: what was just dispatched is on top
        self.now: datetime | None = None
        self._views: dict[str, ContainerView] = {}
        self._shown: dict[str, tuple[tuple[str, ...], str]] = {}
        self._all: list[ContainerView] = []
        self.matched = 0
        self._cells_changed = False

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(self._label(col.key), key=col.key, width=col.width + 1)

    def on_resize(self) -> None:
        """Give the task column what the others leave, so state, health and cost stay on screen."""
        avail = self.size.width - 1
        core = COLUMN_KEYS[: COLUMN_KEYS.index(CORE_END) + 1]
        others = sum(c.width + 1 for c in COLUMNS if c.key != "task")
        task = avail - others
        if task < MIN_TASK + 4:
            task = avail - sum(c.width + 1 for c in COLUMNS if c.key in core and c.key != "task")
        width = max(MIN_TASK, min(TASK_WIDTH, task - 1)) + 1
        column = self.columns.get(ColumnKey("task"))
        if column is not None and column.width != width:
            column.width = width
            self._require_update_dimensions = True
            self.refresh()

    # -- what is shown ---------------------------------------------------------------------

    @property
    def selected(self) -> ContainerView | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        return self._views.get(key)

    @property
    def visible(self) -> list[ContainerView]:
        """The containers the filter lets through, in the order shown (what `T` would stop)."""
        return [self._views[row.key.value] for row in self.ordered_rows]

    def show(self, views: list[ContainerView], now: datetime) -> None:
        """Bring the table in line with `views`: update changed cells, add and remove rows only."""
        self._all = views
        self.now = now
        wanted = self.filter.apply(views)
        self.matched = len(wanted)
        new = {c.id: c for c in wanted}
        before = self.selected
        resort = False
        with self.app.batch_update():
            for key in [k for k in self._shown if k not in new]:
                self.remove_row(key)
                del self._shown[key]
            for c in wanted:
                if c.id not in self._shown:
                    cells, style = container_cells(c, now), row_style(c)
                    self.add_row(*(_cell(c, i, cells[i], style) for i in _ALL), key=c.id)
                    self._shown[c.id] = (cells, style)
                    resort = True
                else:
                    resort = self._update_row(c, now) or resort
            self._views = new
            if self._cells_changed:
                self._cells_changed = False
                self._update_count += (
                    1  # invalidates DataTable's render caches, as update_cell does
                )
                self.refresh()
            if resort:
                self._apply_sort()
            if before is not None and before.id in new:
                self._move_to(before.id)
        self.post_message(self.Changed())

    def _update_row(self, c: ContainerView, now: datetime) -> bool:
        """Update the cells of one row that changed; True when its sort column changed."""
        cells, style = container_cells(c, now), row_style(c)
        old_cells, old_style = self._shown[c.id]
        if cells == old_cells and style == old_style:
            return False
        row = self._data[c.id]
        for i in _ALL:
            if style != old_style or cells[i] != old_cells[i]:
                # What `update_cell` does, less its per-cell repaint request: a refresh changes
                # thousands of cells, and one request for the table is made in `show` (measured:
                # 3,000 `update_cell` calls took 60 % of a 1,000-row refresh).
                row[COLUMN_KEYS[i]] = _cell(c, i, cells[i], style)
        self._shown[c.id] = (cells, style)
        self._cells_changed = True
        sort_index = COLUMN_KEYS.index(self.sort_column)
        return cells[sort_index] != old_cells[sort_index]

    def set_filter(self, text: str) -> None:
        self.filter = ContainerFilter.parse(text)
        if self.now is not None:
            self.show(self._all, self.now)

    # -- sorting ---------------------------------------------------------------------------

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        if column not in COLUMN_KEYS:
            return
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        for col in COLUMNS:
            self.columns[col.key].label = self._label(col.key)
        self._refresh_header()
        selected = self.selected
        self._apply_sort()
        if selected is not None:
            self._move_to(selected.id)

    def action_cycle_sort(self) -> None:
        i = COLUMN_KEYS.index(self.sort_column)
        self.sort_by(COLUMN_KEYS[(i + 1) % len(COLUMN_KEYS)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def _apply_sort(self) -> None:
        if not self._views or self.now is None:
            return
        now, column, views = self.now, self.sort_column, self._views
        keys = {cid: sort_value(c, column, now) for cid, c in views.items()}
        self.sort("id", key=lambda cell: keys[cell.plain[1:]], reverse=self.sort_reverse)

    def _label(self, key: str) -> Text:
        col = next(c for c in COLUMNS if c.key == key)
        if key != self.sort_column:
            return Text(f" {col.label}", justify=col.justify)
        arrow = "▼" if self.sort_reverse else "▲"
        return Text(f" {col.label}{arrow}", style="bold", justify=col.justify)

    def _refresh_header(self) -> None:
        self._update_count += 1
        self.refresh()

    def _move_to(self, container_id: str) -> None:
        try:
            row = self.get_row_index(container_id)
        except Exception:
            return
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False, scroll=False)

    def select(self, container_id: str) -> bool:
        """Put the cursor on a container (and scroll to it); False if it is not shown."""
        try:
            row = self.get_row_index(container_id)
        except Exception:
            return False
        self.move_cursor(row=row)
        return True


_ALL = range(len(COLUMNS))
_JUSTIFY = [c.justify for c in COLUMNS]


def _cell(c: ContainerView, index: int, value: str, base: str) -> Text:
    """One cell, with the leading space that keeps columns apart (the table has no padding)."""
    return Text(
        " " + value,
        style=cell_style(c, COLUMN_KEYS[index], base),
        justify=_JUSTIFY[index],
        no_wrap=True,
    )
