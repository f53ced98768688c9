"""A keyed table drawn line by line, for panes that change many times a second.

Textual's DataTable keys its render caches on one table-wide counter, so changing a single cell,
sorting or moving the cursor re-renders every visible cell through Rich (50-100 ms at 150x45 with
1,000 rows; bench/tui.py). Here each row is a tuple of plain cells with a version: a row is drawn
only when it is on screen and its version, position or the cursor changed, and drawing one is
cutting plain strings to width, not a Rich render. The cursor and zebra stripes are styles laid
under the cells, and the header stays put while the rows scroll (the line API of Textual's docs,
"Line API" / ScrollView).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from parhelia.widgets.own_extent import resize_in_place

Cell = tuple[str, str]  # (text, rich style string)


@dataclass(frozen=True)
class TableColumn:
    key: str
    label: str
    width: int  # cells on screen, the separating space included
    justify: str = "left"  # left | right


class LineTable(ScrollView, can_focus=True):
    """Rows by key with a fixed header, a row cursor that follows its key, and zebra stripes."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select_cursor", "Select", show=False),
    ]

    COMPONENT_CLASSES = {"line-table--header", "line-table--cursor", "line-table--even-row"}

    DEFAULT_CSS = """
    LineTable {
        background: $surface;
        color: $foreground;
        &:focus {
            & > .line-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        &:dark > .line-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .line-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .line-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .line-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor moved to another row (or another key came under it)."""

        def __init__(self, table: LineTable, key: str | None) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> LineTable:
            return self.table

    class RowSelected(Message):
        """Enter, or a click on the row under the cursor."""

        def __init__(self, table: LineTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> LineTable:
            return self.table

    class HeaderSelected(Message):
        """A click on a column's header."""

        def __init__(self, table: LineTable, column: str) -> None:
            super().__init__()
            self.table, self.column = table, column

        @property
        def control(self) -> LineTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._columns: list[TableColumn] = []
        self._header: list[Cell] = []
        self._order: list[str] = []
        self._index: dict[str, int] | None = {}
        self._cells: dict[str, Sequence[Cell]] = {}
        self._versions: dict[str, int] = {}
        self._version = 0
        self._lines: dict[int, tuple[tuple, Strip]] = {}
        self._header_line: tuple[tuple, Strip] | None = None
        self._styles: dict[str, Style] = {}
        self._highlighted: str | None = None
        self.cursor_row = 0
        self._frame = (0, 0, 0)  # scroll x, scroll y and width while a frame is drawn

    # -- content ---------------------------------------------------------------------------

    def set_columns(self, columns: Sequence[TableColumn], header: Sequence[Cell]) -> None:
        """The columns and their header cells (every row is redrawn)."""
        self._columns = list(columns)
        self._header = list(header)
        self._lines.clear()
        self._header_line = None
        self._resize_virtual()
        self.refresh()

    def set_header(self, header: Sequence[Cell]) -> None:
        self._header = list(header)
        self._header_line = None
        self.refresh_lines(self.scroll_offset.y)  # the header is the first line on screen

    def put_row(self, key: str, cells: Sequence[Cell]) -> None:
        """Add or replace one row's cells; it is redrawn when next on screen."""
        self._cells[key] = cells
        self._version += 1
        self._versions[key] = self._version

    def set_order(self, order: list[str]) -> None:
        """The rows shown, top to bottom. Rows not in `order` are forgotten; the cursor stays on
        its key when that key is still shown."""
        keep = set(order)
        for key in [k for k in self._cells if k not in keep]:
            del self._cells[key]
            self._versions.pop(key, None)
        self._order = order
        self._index = None
        if self._highlighted is not None and self._highlighted in keep:
            self.cursor_row = self.row_index(self._highlighted)
        self.cursor_row = max(0, min(self.cursor_row, len(order) - 1))
        self._resize_virtual()
        self.refresh()
        self._note_highlight()

    def row_version(self, key: str) -> int | None:
        """Changes whenever the row's cells are replaced (tests: untouched rows keep theirs)."""
        return self._versions.get(key)

    def row_cells(self, key: str) -> Sequence[Cell]:
        """A row's cells (KeyError when it is not shown). A subclass may make them only when a
        row is drawn (`ContainersTable`: the rows on screen, not all 10,000)."""
        return self._cells[key]

    def line_version(self, key: str) -> object:
        """What a drawn line of the row is cached by: it is drawn again when this changes."""
        return self._versions[key]

    @property
    def columns(self) -> list[TableColumn]:
        return self._columns

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def ordered_keys(self) -> list[str]:
        return self._order

    def row_index(self, key: str) -> int:
        """The row's position (KeyError when it is not shown)."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._order)}
        return self._index[key]

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor_row < len(self._order):
            return self._order[self.cursor_row]
        return None

    # -- cursor ----------------------------------------------------------------------------

    def move_cursor(self, row: int, *, scroll: bool = True) -> None:
        row = max(0, min(row, len(self._order) - 1))
        if row != self.cursor_row:
            old, self.cursor_row = self.cursor_row, row
            self.refresh_lines(old + 1)
            self.refresh_lines(row + 1)
        if scroll:
            self.scroll_to_cursor()
        self._note_highlight()

    def scroll_to_cursor(self) -> None:
        rows_on_screen = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + rows_on_screen:
            self.scroll_to(y=self.cursor_row - rows_on_screen + 1, animate=False, immediate=True)

    def _note_highlight(self) -> None:
        key = self.cursor_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, key))

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - max(1, self.scrollable_content_region.height - 2))

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + max(1, self.scrollable_content_region.height - 2))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def action_select_cursor(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        event.stop()
        scroll_x, scroll_y = self.scroll_offset
        if offset.y == 0:
            x = offset.x + scroll_x
            for column in self._columns:
                if x < column.width:
                    self.post_message(self.HeaderSelected(self, column.key))
                    return
                x -= column.width
            return
        row = scroll_y + offset.y - 1
        if row >= len(self._order):
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row, scroll=False)

    # -- drawing ---------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._lines.clear()
        self._header_line = None

    def _on_focus(self, event: events.Focus) -> None:
        self.notify_style_update()  # the cursor's style depends on focus
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        self.notify_style_update()
        self.refresh()

    def _style(self, component: str = "") -> Style:
        """The widget's style (`""`), or it with a component's on top; cached, as each lookup
        walks the ancestors' styles."""
        style = self._styles.get(component)
        if style is None:
            style = self.rich_style
            if component:
                style += self.get_component_styles(component).rich_style
            self._styles[component] = style
        return style

    def _resize_virtual(self) -> None:
        size = Size(sum(c.width for c in self._columns), len(self._order) + 1)
        if self.size and self.virtual_size.height > 1:
            resize_in_place(self, size)  # a new row count of a table on screen: no layout
        else:
            self.virtual_size = size  # its first rows: laid out with the rest of the screen

    def render_lines(self, crop: Region) -> list[Strip]:
        # the geometry once per frame, not per line (each lookup walks Textual's reactives)
        self._frame = (*self.scroll_offset, self.scrollable_content_region.width)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y, width = self._frame
        if y == 0:
            sig = (scroll_x, width)
            if self._header_line is None or self._header_line[0] != sig:
                base = self._style("line-table--header")
                self._header_line = (sig, self._draw(self._header, base, scroll_x, width))
            return self._header_line[1]
        row = scroll_y + y - 1
        if row >= len(self._order):
            return Strip.blank(width, self._style())
        key = self._order[row]
        cursor = row == self.cursor_row
        sig = (key, self.line_version(key), cursor, row % 2, scroll_x, width)
        cached = self._lines.get(y)
        if cached is not None and cached[0] == sig:
            return cached[1]
        if cursor:
            base = self._style("line-table--cursor")
        elif row % 2 == 0:
            base = self._style("line-table--even-row")
        else:
            base = self._style()
        strip = self._draw(self.row_cells(key), base, scroll_x, width)
        self._lines[y] = (sig, strip)  # by screen line: a screenful of strips, not one per row
        return strip

    def _draw(self, cells: Iterable[Cell], base: Style, scroll_x: int, width: int) -> Strip:
        """Cells cut or padded to their columns over `base`, then the window [scroll_x, +width)."""
        segments = []
        for column, (text, style) in zip(self._columns, cells, strict=False):
            segments.append(
                Segment(_fit(text, column.width, column.justify), base + Style.parse(style))
            )
        total = sum(c.width for c in self._columns)
        if total < scroll_x + width:
            segments.append(Segment(" " * (scroll_x + width - total), base))
            total = scroll_x + width
        strip = Strip(segments, total)
        return strip.crop(scroll_x, scroll_x + width) if scroll_x or total > width else strip


def _fit(text: str, width: int, justify: str) -> str:
    """`text` in exactly `width` cells: padded on the side away from `justify`, or cut with '…'."""
    length = cell_len(text)
    if length == width:
        return text
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - length)
    return pad + text if justify == "right" else text + pad
