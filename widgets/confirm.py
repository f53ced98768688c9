"""Confirm before terminating one container or every container a filter matches.

Terminating stops work and spending, so the dialog shows exactly what stops and what it costs,
opens with Cancel focused (a stray Enter cancels), and only activating Terminate confirms.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from parhelia.state.views import ContainerView
from parhelia.widgets.formatting import (
    age,
    excerpt,
    health_text,
    money,
    state_text,
)


def _runtime(c: ContainerView, now: datetime) -> str:
    end = c.terminated_at if c.terminated_at is not None else now
    return age(c.started_at or c.created_at, end)


def _burn(containers: Sequence[ContainerView]) -> float:
    """Only active containers are burning money, so only theirs stops."""
    return sum(c.cost_rate_per_hour for c in containers if c.is_active)


class ConfirmTerminate(ModalScreen[bool]):
    """Dismisses True only when Terminate is activated; Cancel, Close and escape give False."""

    CSS_PATH = "confirm.tcss"
    AUTO_FOCUS = "#cancel"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("left,right", "switch_button", "Switch button", show=False),
    ]

    def __init__(
        self,
        containers: Sequence[ContainerView],
        now: datetime,
        *,
        filter_text: str | None = None,
    ) -> None:
        super().__init__()
        self.containers = list(containers)
        self.now = now
        self.filter_text = filter_text

    # -- composition -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Footer()  # this screen's own keys
        with Vertical(id="dialog"):
            yield Static(self._title(), id="title")
            if not self.containers:
                yield Static(self._nothing_text(), id="summary")
            elif len(self.containers) == 1 and not self.filter_text:
                yield Static(self._single_text(self.containers[0]), id="summary")
            else:
                with VerticalScroll(id="preview"):
                    yield Static(self._preview_table(), id="preview-table")
                yield Static(self._totals_text(), id="summary")
            with Horizontal(id="buttons"):
                if self.containers:
                    yield Button("Cancel", id="cancel")
                    yield Button("Terminate", id="terminate", variant="error")
                else:
                    yield Button("Close", id="cancel")

    def _title(self) -> str:
        n = len(self.containers)
        where = f" matching '{self.filter_text}'" if self.filter_text else ""
        if n == 0:
            return f"Nothing to terminate{where}"
        if n == 1 and not self.filter_text:
            return f"Terminate container {self.containers[0].id}?"
        noun = "container" if n == 1 else "containers"
        return f"Terminate {n} {noun}{where}?"

    def _nothing_text(self) -> str:
        where = f" '{self.filter_text}'" if self.filter_text else " the selection"
        return f"Nothing matches{where}: there is nothing to terminate."

    def _single_text(self, c: ContainerView) -> Text:
        rows: list[tuple[str, str | Text]] = [
            ("Container", c.id),
            ("Backend", c.backend),
            ("Sandbox", c.sandbox_id or "-"),
            ("Task", excerpt(c.task_prompt or c.task_id, 60)),
            ("State", Text.assemble(state_text(c.state), " · ", health_text(c.health))),
            ("Runtime", _runtime(c, self.now)),
            ("Accrued", money(c.cost_accrued_usd)),
            ("Rate", f"{money(c.cost_rate_per_hour)}/h"),
        ]
        out = Text()
        for label, value in rows:
            out.append(f"{label:<10}", style="bold")
            out.append(value)
            out.append("\n")
        stops = _burn([c])
        out.append("\n")
        out.append(
            f"Stops {money(stops)}/h of spending. The sandbox and its work are lost."
            if stops
            else "It is not running; terminating only records the end."
        )
        return out

    def _preview_table(self) -> Table:
        table = Table(box=None, expand=True, pad_edge=False, header_style="bold")
        for name, justify in (
            ("ID", "left"),
            ("STATE", "left"),
            ("HEALTH", "left"),
            ("TASK", "left"),
            ("RUNTIME", "right"),
            ("COST", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=True)
        for c in self.containers:
            table.add_row(
                c.id,
                state_text(c.state),
                health_text(c.health),
                excerpt(c.task_prompt or c.task_id, 36),
                _runtime(c, self.now),
                money(c.cost_accrued_usd),
            )
        return table

    def _totals_text(self) -> Text:
        total = sum(c.cost_accrued_usd for c in self.containers)
        out = Text()
        out.append(f"{len(self.containers)} containers · ", style="bold")
        out.append(f"accrued {money(total)} · stops burning {money(_burn(self.containers))}/h")
        return out

    # -- actions -----------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "terminate" and bool(self.containers))

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_switch_button(self) -> None:
        """Arrow keys move between the buttons, as in most dialogs; they never press one."""
        buttons = list(self.query(Button))
        if len(buttons) < 2:
            return
        focused = self.focused
        i = buttons.index(focused) if focused in buttons else -1
        buttons[(i + 1) % len(buttons)].focus()
