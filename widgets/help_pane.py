"""The contextual help pane: the keys of the focused pane, what the selected container's state and
health mean with what to do about them, and the catalogue entry of the last error.

Each pane says what its help is with a `PANE_HELP` class attribute (posting's `Helpable`; not
`HELP`, which Textual reserves for the Markdown of its own keys panel): the screen reads it from the
focused widget, or the nearest ancestor that has one, with that widget's own bindings, so no list
of pane types has to be kept in step. The pane only lays the text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.dom import DOMNode
from textual.widgets import Static

from parhelia.widgets.formatting import COMMAND_STYLE


@dataclass(frozen=True)
class PaneHelp:
    """What the help pane says while a pane has the focus."""

    title: str  # the pane's name, the help pane's first line
    # the keys to list instead of the pane's bindings and the dashboard's (an input takes the rest)
    keys: tuple[tuple[str, str], ...] | None = None
    selection: bool = True  # whether the selected container's state and health are explained


def pane_help(node: DOMNode) -> tuple[PaneHelp, DOMNode]:
    """The `PANE_HELP` of `node` or of its nearest ancestor that has one (the screen has one), with the
    node it is on: that node's own bindings are the pane's keys."""
    for n in node.ancestors_with_self:
        help = getattr(n, "PANE_HELP", None)
        if isinstance(help, PaneHelp):
            return help, n
    raise LookupError(f"nothing above {node!r} has a PANE_HELP")


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
