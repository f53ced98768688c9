"""The header line (backend, database, reconciler, lease) and the stale banner under it.

The banner is the dashboard saying plainly that what it shows is the last known state and since
when; it is hidden whenever the backend answers.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from parhelia.widgets.formatting import status_text


class StatusBar(Static):
    """Backend · database · reconciler last/next run · who holds the lease · read-only or not."""

    def show(self, backend: str, database: str, reconciler: str, mode: str) -> None:
        self.update(status_text(backend, database, reconciler, mode))


class StaleBanner(Static):
    """Shown only while the backend cannot be listed."""

    def show(self, text: str | None) -> None:
        self.display = bool(text)
        if text:
            self.update(Text(f"⚠ {text}", style="bold"))
