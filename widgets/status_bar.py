"""The header line (backend, database, reconciler, lease) and the stale banner under it.

The header changes every second (the reconciler's last and next run), so it repaints itself
without asking for a new layout: a `Static.update` would lay out the whole screen each time.
The banner is the dashboard saying plainly that what it shows is the last known state and since
when; it is hidden whenever the backend answers.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from parhelia.widgets.formatting import status_text


class StatusBar(Widget):
    """Backend · database · reconciler last/next run · who holds the lease · read-only or not."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()
        self._narrow: Text | None = None  # the same header without the plane id

    @property
    def content(self) -> Text:
        return self._text

    def render(self) -> Text:
        """The header fitted to its width: the plane id gives way first (the least needed at a
        glance), then the line ends in an ellipsis rather than running off the edge."""
        width = self.size.width
        text = self._text
        if width and text.cell_len > width and self._narrow is not None:
            text = self._narrow
        if width and text.cell_len > width:
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        return text

    def show(
        self,
        backend: str,
        database: str,
        reconciler: str,
        mode: str,
        budget: str = "",
        *,
        plane: str = "",
    ) -> None:
        text = status_text(backend, database, reconciler, mode, budget, plane)
        if text.plain != self._text.plain:
            self._text = text
            self._narrow = status_text(backend, database, reconciler, mode, budget, "")
            self.refresh()


class StaleBanner(Static):
    """Shown only while the backend cannot be listed."""

    def show(self, text: str | None) -> None:
        if text:
            banner = f"⚠ {text}"
            if str(self.content) != banner:
                self.update(Text(banner, style="bold"))
        self.display = bool(text)
