"""What a container's agent changed since its task began (claude-squad's diff tab): the files
added, removed and changed with sizes, then the unified diff of the text files, coloured.

It renders the plain `WorkspaceChanges` the `load` function the app hands in returns (the
ControlPlane side: `workers.checkpoints.changes_since_start`, which takes a checkpoint), called
on a thread, so the widget itself touches no backend or database."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, RichLog, Static

from parhelia.state.checkpoints import WorkspaceChanges, size_text
from parhelia.state.errors import ParheliaError

MARKS = {"added": ("A", "green"), "removed": ("D", "red"), "changed": ("M", "yellow")}


def patch_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("@@"):
        return "cyan"
    return ""


def change_lines(changes: WorkspaceChanges) -> list[Text]:
    """The file list and the patch as styled lines (what the screen shows, testable alone)."""
    out = []
    for c in changes.diff.all:
        mark, style = MARKS[c.kind]
        sizes = (
            size_text(c.new_size)
            if c.kind == "added"
            else size_text(c.old_size)
            if c.kind == "removed"
            else f"{size_text(c.old_size)} -> {size_text(c.new_size)}"
        )
        out.append(Text(f"{mark}  {c.path}  ({sizes})", style=style))
    if changes.patch:
        out.append(Text(""))
        out += [Text(line, style=patch_style(line)) for line in changes.patch.splitlines()]
    return out


class DiffScreen(ModalScreen[None]):
    """The diff key on a container. Escape closes."""

    DEFAULT_CSS = """
    DiffScreen { align: center middle; }
    DiffScreen > #diff-dialog { width: 100%; height: 100%; border: round $accent; }
    DiffScreen #diff-title { text-style: bold; padding: 0 1; }
    DiffScreen #diff-summary { color: $text-muted; padding: 0 1; }
    DiffScreen RichLog { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "back", "Close")]

    def __init__(self, container_id: str, load: Callable[[], WorkspaceChanges]) -> None:
        super().__init__()
        self.container_id = container_id
        self.load = load
        self.changes: WorkspaceChanges | None = None
        self.error: ParheliaError | None = None

    def compose(self) -> ComposeResult:
        yield Footer()
        with Vertical(id="diff-dialog"):
            yield Static(f"Changes in {self.container_id}", id="diff-title")
            yield Static("Taking a checkpoint of the workspace…", id="diff-summary")
            yield RichLog(id="diff-body", wrap=False, highlight=False, markup=False)

    def on_mount(self) -> None:
        self.query_one(RichLog).focus()
        self.fetch()

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def fetch(self) -> None:
        try:
            changes = self.load()
        except ParheliaError as exc:
            self.app.call_from_thread(self.show_error, exc)
            return
        self.app.call_from_thread(self.show, changes)

    def show(self, changes: WorkspaceChanges) -> None:
        self.changes = changes
        self.query_one("#diff-title", Static).update(changes.title)
        summary = "nothing changed" if changes.diff.empty else changes.diff.stat_line()
        self.query_one("#diff-summary", Static).update(summary)
        log = self.query_one(RichLog)
        for line in change_lines(changes):
            log.write(line)

    def show_error(self, exc: ParheliaError) -> None:
        self.error = exc
        tries = "; ".join(exc.suggestions[:2])
        self.query_one("#diff-summary", Static).update(
            Text(f"{exc.code} {exc.message}. Try: {tries}", style="red")
        )

    def action_back(self) -> None:
        self.dismiss()
