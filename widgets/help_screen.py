"""Every key binding, grouped by where it works, then the help topics, in one scrollable page.

The app hands in the bindings it actually declares, so this page can never list a key that
does nothing or miss one that exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "x"


def bindings_table(rows: Sequence[tuple[str, str]]) -> Table:
    """Keys and what they do, keys aligned in their own column."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, description in rows:
        table.add_row(key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """Read-only: escape, q or ? closes it."""

    CSS_PATH = "help_screen.tcss"
    AUTO_FOCUS = "#help-body"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, bindings: Sequence[tuple[str, str, str]], topics: Mapping[str, str]) -> None:
        super().__init__()
        self.key_bindings = list(bindings)
        self.topics = dict(topics)

    def groups(self) -> dict[str, list[tuple[str, str]]]:
        """Bindings by where they work, in order of first appearance (the app's own order)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for key, description, where in self.key_bindings:
            out.setdefault(where, []).append((key, description))
        return out

    def compose(self) -> ComposeResult:
        yield Footer()  # this screen's own keys
        with Vertical(id="dialog"):
            yield Static("Help", id="title")
            with VerticalScroll(id="help-body"):
                yield Static(Text("KEYS", style="bold underline"), classes="heading")
                for where, rows in self.groups().items():
                    yield Static(Text(where.capitalize(), style="bold"), classes="group-title")
                    yield Static(bindings_table(rows), id=f"keys-{_slug(where)}", classes="keys")
                for i, (title, body) in enumerate(self.topics.items()):
                    yield Static(Text(title, style="bold underline"), classes="heading")
                    yield Static(Text(body), id=f"topic-{i}", classes="topic")
            yield Static("escape / q / ? close · ↑↓ PgUp PgDn scroll", id="hint")

    def action_close(self) -> None:
        self.dismiss(None)
