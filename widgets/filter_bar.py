"""The filter bar `/` opens over the focused pane: an `Input` that says what its keys do.

While it has the focus it takes every printable key, so the help pane lists only its own two.
"""

from __future__ import annotations

from textual.widgets import Input

from parhelia.widgets.help_pane import PaneHelp


class FilterBar(Input):
    PANE_HELP = PaneHelp("Filter", keys=(("enter", "keep filter"), ("esc", "clear filter")))
