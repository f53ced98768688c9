"""A container's agent output, live: follows the newest line, `/` searches (only matching lines
shown), Esc clears the search or closes. It reads through the `read` function the app hands in
(the ControlPlane's `container_logs`), on a thread, so the widget itself touches no backend."""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Log, Static

from parhelia.state.enums import ACTIVE_STATES
from parhelia.state.errors import ParheliaError

POLL_SECONDS = 0.5
MAX_LINES = 20_000  # the oldest lines go first; `parhelia containers logs ID` has them all


class LogsScreen(ModalScreen[None]):
    """`l` on a container. Escape clears a search, then closes."""

    DEFAULT_CSS = """
    LogsScreen { align: center middle; }
    LogsScreen > #logs-dialog { width: 100%; height: 100%; border: round $accent; }
    LogsScreen #logs-title { text-style: bold; padding: 0 1; }
    LogsScreen #logs-status { color: $text-muted; padding: 0 1; }
    LogsScreen #logs-search { display: none; }
    LogsScreen #logs-search.open { display: block; }
    LogsScreen Log { height: 1fr; }
    """
    BINDINGS = [
        Binding("escape", "back", "Close"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("end", "follow", "Follow", tooltip="Jump to the newest line and follow"),
    ]

    def __init__(
        self,
        container_id: str,
        read: Callable[[int], tuple[object, object]],
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__()
        self.container_id = container_id
        self.read = read
        self.poll_seconds = poll_seconds
        self.lines: list[str] = []
        self._partial = ""
        self.search = ""
        self.ended = False
        self.error: ParheliaError | None = None
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Footer()  # this screen's own keys
        with Vertical(id="logs-dialog"):
            yield Static(f"Agent output of {self.container_id}", id="logs-title")
            yield Log(id="logs-body", max_lines=MAX_LINES, auto_scroll=True)
            yield Input(
                placeholder="search the output; Enter keeps it, Esc clears", id="logs-search"
            )
            yield Static(id="logs-status")

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self._update_status()
        self.poll()

    def on_unmount(self) -> None:
        self._stop.set()

    # -- reading ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="logs", exit_on_error=False)
    def poll(self) -> None:
        offset = 0
        while not self._stop.is_set():
            try:
                row, chunk = self.read(offset)
            except ParheliaError as exc:
                self.app.call_from_thread(self._failed, exc)
                return
            if chunk.text:
                self.app.call_from_thread(self.add_text, chunk.text)
            offset = chunk.next_offset
            if chunk.next_offset > chunk.offset:
                continue
            if chunk.ended or getattr(row, "state", None) not in ACTIVE_STATES:
                self.app.call_from_thread(self._ended)
                return
            self._stop.wait(self.poll_seconds)

    def add_text(self, text: str) -> None:
        """New output: whole lines are shown (the search applied); a trailing part waits."""
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(parts)
        del self.lines[:-MAX_LINES]
        shown = [line for line in parts if self._matches(line)]
        if shown:
            self.query_one(Log).write_lines(shown)
        self._update_status()

    def _ended(self) -> None:
        if self._partial:
            self.add_text("\n")
        self.ended = True
        self._update_status()

    def _failed(self, exc: ParheliaError) -> None:
        self.error = exc
        self._update_status()

    # -- search and follow -------------------------------------------------------------------

    def _matches(self, line: str) -> bool:
        return not self.search or self.search.lower() in line.lower()

    def shown_lines(self) -> list[str]:
        return [line for line in self.lines if self._matches(line)]

    def set_search(self, text: str) -> None:
        self.search = text.strip()
        log = self.query_one(Log)
        log.clear()
        log.write_lines(self.shown_lines())
        self._update_status()

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.value = self.search
        box.add_class("open")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(Log).focus()

    def action_follow(self) -> None:
        log = self.query_one(Log)
        log.auto_scroll = True
        log.scroll_end(animate=False)

    def action_back(self) -> None:
        box = self.query_one("#logs-search", Input)
        if self.search or box.has_focus:
            box.value = ""
            box.remove_class("open")
            self.set_search("")
            self.query_one(Log).focus()
            return
        self.dismiss()

    def _update_status(self) -> None:
        parts = [f"{len(self.lines)} lines"]
        if self.search:
            parts.append(f"{len(self.shown_lines())} match {self.search!r}")
        if self.error is not None:
            parts.append(f"{self.error.code}: {self.error.message}")
        elif self.ended:
            parts.append("the container has ended; this is all of it")
        else:
            parts.append("following · / search · End follows")
        self.query_one("#logs-status", Static).update(" · ".join(parts))
