"""The budget pane: spent against the ceiling, burn rate, when the ceiling is reached, GPUs, policy.

Its CSS class follows the budget level (`-warning`, `-critical`, `-exceeded`) so the border and
title change with it; the words and the bar say the same for anyone who cannot see colour.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group
from textual.widgets import Static

from parhelia.state.views import BudgetView
from parhelia.widgets.formatting import budget_lines

LEVEL_CLASSES = ("-warning", "-critical", "-exceeded")


class BudgetPane(Static):
    """Money, always visible."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("budget: waiting for the first refresh", id=id)
        self.budget: BudgetView | None = None
        self.now: datetime | None = None

    def show(self, budget: BudgetView, now: datetime) -> None:
        self.budget, self.now = budget, now
        for cls in LEVEL_CLASSES:
            self.set_class(cls == f"-{budget.level}", cls)
        self._render_lines()

    def on_resize(self) -> None:
        if self.budget is not None:
            self._render_lines()

    def _render_lines(self) -> None:
        assert self.budget is not None and self.now is not None
        width = max(10, self.content_size.width or 40)
        lines = budget_lines(self.budget, self.now, width)
        key = (*(line.plain for line in lines), self.budget.level)
        if key != getattr(self, "_shown", None):  # an update lays out the screen again
            self._shown = key
            self.update(Group(*lines))
