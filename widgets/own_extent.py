"""A scrolling widget's extent that moves without laying out the whole screen.

Textual's `virtual_size` is a layout reactive: every change lays out and paints every pane
again. The filter bar's grows with each keystroke (an `Input` scrolls its text) and the
containers table's with each row count a filter keystroke makes, and at 10,000 rows that layout
was most of the keystroke's frame (bench/tui.py). Neither widget's own size follows its extent,
so it is enough to update the scroll bounds and repaint the widget; a scrollbar that comes or
goes still lays the screen out (its own reactive does).
"""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.widget import Widget


def own_extent() -> Reactive[Size]:
    """`virtual_size` as a repaint-only reactive, for a class whose extent always moves in place
    (one per class: a reactive knows its owner); its `watch_virtual_size` calls
    `_scroll_update`."""
    return Reactive(Size(0, 0), layout=False)


def resize_in_place(widget: ScrollView, size: Size) -> None:
    """`widget.virtual_size = size` without the layout, for a widget already laid out."""
    if size == widget.virtual_size:
        return
    widget.set_reactive(Widget.virtual_size, size)
    widget._scroll_update(size)
    widget.refresh()
