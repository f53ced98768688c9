"""The line-API table under the containers pane: cursor, scrolling, clicks and per-row redraw."""

from __future__ import annotations

from textual.app import App, ComposeResult

from parhelia.widgets.line_table import LineTable, TableColumn, _fit

COLUMNS = [TableColumn("name", "NAME", 8), TableColumn("n", "N", 5, "right")]


class TableApp(App):
    def __init__(self, rows: int = 100) -> None:
        super().__init__()
        self.rows = rows
        self.messages: list[LineTable.RowHighlighted | LineTable.RowSelected] = []
        self.headers: list[str] = []

    def compose(self) -> ComposeResult:
        yield LineTable(id="t")

    def on_mount(self) -> None:
        t = self.query_one(LineTable)
        t.set_columns(COLUMNS, [(" NAME", "bold"), (" N", "bold")])
        for i in range(self.rows):
            t.put_row(f"k{i}", [(f" row{i}", ""), (f" {i}", "red" if i % 7 == 0 else "")])
        t.set_order([f"k{i}" for i in range(self.rows)])
        t.focus()

    def on_line_table_row_highlighted(self, event: LineTable.RowHighlighted) -> None:
        self.messages.append(event)

    def on_line_table_row_selected(self, event: LineTable.RowSelected) -> None:
        self.messages.append(event)

    def on_line_table_header_selected(self, event: LineTable.HeaderSelected) -> None:
        self.headers.append(event.column)


def line_text(t: LineTable, y: int) -> str:
    return "".join(seg.text for seg in t.render_line(y))


async def test_keys_move_the_cursor_and_the_view_follows_it():
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one(LineTable)
        assert t.cursor_key == "k0"
        await pilot.press("down", "down")
        assert t.cursor_key == "k2"
        await pilot.press("end")
        assert t.cursor_key == "k99"
        rows_on_screen = t.scrollable_content_region.height - 1
        assert t.scroll_offset.y == 100 - rows_on_screen  # the last row is on screen
        assert "row99" in line_text(t, rows_on_screen)
        assert "NAME" in line_text(t, 0)  # the header stays put
        await pilot.press("home", "pagedown")
        assert t.cursor_row == rows_on_screen - 1
        await pilot.press("up")
        assert t.cursor_row == rows_on_screen - 2
        highlighted = [m.key for m in app.messages if isinstance(m, LineTable.RowHighlighted)]
        assert highlighted[:3] == ["k0", "k1", "k2"]


async def test_enter_and_a_second_click_select_the_row_a_header_click_names_its_column():
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one(LineTable)
        await pilot.press("enter")
        assert [m.key for m in app.messages if isinstance(m, LineTable.RowSelected)] == ["k0"]
        await pilot.click(LineTable, offset=(2, 3))  # the third row: highlighted, not selected
        assert t.cursor_key == "k2"
        await pilot.click(LineTable, offset=(2, 3))
        assert [m.key for m in app.messages if isinstance(m, LineTable.RowSelected)] == [
            "k0",
            "k2",
        ]
        await pilot.click(LineTable, offset=(10, 0))
        await pilot.click(LineTable, offset=(1, 0))
        assert app.headers == ["n", "name"]


async def test_a_changed_row_is_redrawn_and_the_others_keep_their_lines():
    app = TableApp(rows=5)
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one(LineTable)
        before = [t.render_line(y) for y in range(1, 6)]
        v1 = t.row_version("k1")
        t.put_row("k3", [(" changed", "bold"), (" 3", "")])
        t.refresh()
        await pilot.pause()
        after = [t.render_line(y) for y in range(1, 6)]
        assert t.row_version("k1") == v1
        assert [a is b for a, b in zip(before, after, strict=True)] == [
            True,
            True,
            True,
            False,
            True,
        ]
        assert "changed" in line_text(t, 4)


async def test_reordering_keeps_the_cursor_on_its_key_and_dropped_rows_go():
    app = TableApp(rows=10)
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one(LineTable)
        await pilot.press("down", "down", "down")
        assert t.cursor_key == "k3"
        t.set_order([f"k{i}" for i in reversed(range(10)) if i != 5])
        await pilot.pause()
        assert t.cursor_key == "k3" and t.cursor_row == 5
        assert t.row_count == 9 and t.row_version("k5") is None
        t.set_order(["k0"])  # the cursor's row went: it stays within the rows
        assert t.cursor_key == "k0"


def test_cells_are_cut_with_an_ellipsis_and_padded_by_their_justification():
    assert _fit(" abcdef", 5, "left") == " abc…"
    assert _fit(" ab", 5, "left") == " ab  "
    assert _fit(" ab", 5, "right") == "   ab"
    assert _fit(" 漢字漢字", 5, "left") == " 漢 …"  # wide characters take two cells
