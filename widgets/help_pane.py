"""The contextual help pane: the keys of the focused pane, what the selected container's state and
health mean with what to do about them, and the catalogue entry of the last error.

The app hands it plain text; the pane only lays it out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from parhelia.widgets.formatting import COMMAND_STYLE


class HelpPane(Static):
    _shown: tuple | None = None  # what is on screen, to skip an unchanged update
    _lines: int = 0  # its wrapped height

    def show(
        self,
        pane: str,
        keys: Sequence[tuple[str, str]],
        about: Sequence[tuple[str, str]] = (),
        last_error: str | None = None,
    ) -> None:
        """`keys`: (key, description) for the focused pane; `about`: (title, text) paragraphs, or
        (title, text, command) where a command deals with it (shown in the command style)."""
        shown = (pane, tuple(keys), tuple(about), last_error)
        if shown == self._shown:
            return  # an update lays out the screen again: only when something changed
        self._shown = shown
        out = Text()
        out.append(f"{pane}\n", style="bold")
        out.append("  ".join(f"{k} {d}" for k, d in keys) + "\n", style="")
        for title, text, *command in about:
            out.append(f"\n{title}: ", style="bold")
            out.append(text + "\n")
            for cmd in command:
                out.append("→ ", style="dim")
                out.append(cmd + "\n", style=COMMAND_STYLE)
        if last_error:
            out.append("\nLast error: ", style="bold red")
            out.append(last_error + "\n")
        out.rstrip()
        # The pane's size is fixed by the layout, so a new text needs no new layout (a layout
        # re-renders the whole screen: ~100 ms a key press, bench/tui.py) unless it is or was too
        # long for the pane, when the scrollbar must be worked out again.
        height = self.scrollable_content_region.height
        lines = len(out.wrap(self.app.console, max(1, self.scrollable_content_region.width)))
        overflow = lines > height or self._lines > height
        self._lines = lines
        self.update(out, layout=overflow)
