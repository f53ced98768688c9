"""The filter bar `/` opens over the focused pane: an `Input` that says what its keys do.

While it has the focus it takes every printable key, so the help pane lists only its own two.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widgets import Input

from parhelia.widgets.help_pane import PaneHelp
from parhelia.widgets.own_extent import own_extent


class FilterBar(Input):
    PANE_HELP = PaneHelp("Filter", keys=(("enter", "keep filter"), ("esc", "clear filter")))
    virtual_size = own_extent()  # the text's width: each keystroke moves it

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)
