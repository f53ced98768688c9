"""One container in full: identity, resources, lifecycle, money, recent load and its events.

The app refreshes the open screen through `update_detail`, which rewrites each section in place
so scroll position and focus survive every tick.
"""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Sparkline, Static

from parhelia.state.exit_codes import exit_text
from parhelia.state.views import ContainerDetail
from parhelia.widgets.formatting import (
    age,
    clock,
    event_text,
    excerpt,
    health_text,
    memory,
    money,
    percent,
    rate_text,
    state_text,
)

# Two columns of label/value sections, so the whole card fits a 40-row terminal.
COLUMNS = (("identity", "resources", "cost"), ("lifecycle", "tags"))


def _fields(rows: list[tuple[str, str | Text]]) -> Table:
    """A two-column label/value grid: labels line up whatever the values' widths."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        table.add_row(label, value)
    return table


def _section_title(name: str) -> Text:
    return Text(name.upper(), style="bold underline")


class ContainerDetailScreen(ModalScreen[None]):
    """Read-only: dismisses None on escape or q."""

    CSS_PATH = "detail.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, detail: ContainerDetail, now: datetime) -> None:
        super().__init__()
        self.detail = detail
        self.now = now

    def compose(self) -> ComposeResult:
        yield Footer()  # this screen's own keys
        with Vertical(id="dialog"):
            yield Static(id="title")
            with VerticalScroll(id="body"):
                with Horizontal(id="columns"):
                    for column in COLUMNS:
                        with Vertical(classes="column"):
                            for name in column:
                                yield Static(_section_title(name), classes="section-title")
                                yield Static(id=name, classes="section")
                yield Static(_section_title("load"), classes="section-title")
                yield Static(id="cpu-label", classes="spark-label")
                yield Sparkline([], id="cpu-spark")
                yield Static(id="mem-label", classes="spark-label")
                yield Sparkline([], id="mem-spark")
                yield Static(_section_title("events"), classes="section-title")
                yield Static(id="events", classes="section")
            yield Static("escape / q close", id="hint")

    def on_mount(self) -> None:
        self._render_detail()

    def update_detail(self, detail: ContainerDetail, now: datetime) -> None:
        """Show a newer snapshot without recomposing (keeps scroll position)."""
        self.detail = detail
        self.now = now
        if self.is_mounted:
            self._render_detail()

    def action_close(self) -> None:
        self.dismiss(None)

    # -- rendering ---------------------------------------------------------------------------

    def _render_detail(self) -> None:
        d, c, now = self.detail, self.detail.container, self.now
        self.query_one("#title", Static).update(
            Text.assemble(
                ("Container ", "bold"),
                (c.id, "bold cyan"),
                "  ",
                state_text(c.state),
                "  ",
                health_text(c.health),
            )
        )
        self.query_one("#identity", Static).update(
            _fields(
                [
                    ("id", c.id),
                    ("backend", c.backend),
                    ("sandbox", c.sandbox_id or "-"),
                    ("task", c.task_id or "-"),
                    ("prompt", excerpt(c.task_prompt, 200)),
                    ("task status", d.task_status or "-"),
                ]
            )
        )
        tags = c.tags or {}
        self.query_one("#tags", Static).update(
            _fields([(str(k), str(v)) for k, v in sorted(tags.items())])
            if tags
            else Text("no tags", style="dim")
        )
        used = memory(c.memory_used_mib)
        if c.memory_percent is not None:
            used += f" ({percent(c.memory_percent)})"
        self.query_one("#resources", Static).update(
            _fields(
                [
                    ("cpu", f"{c.cpu_cores:g} cores · using {percent(c.cpu_percent)}"),
                    ("memory", f"{memory(c.memory_mib)} · using {used}"),
                    ("gpu", c.gpu or "none"),
                    ("region", c.region or "any"),
                ]
            )
        )
        ended = c.terminated_at is not None
        self.query_one("#lifecycle", Static).update(
            _fields(
                [
                    ("state", state_text(c.state)),
                    ("health", health_text(c.health)),
                    ("created", f"{clock(c.created_at)} ({age(c.created_at, now)} ago)"),
                    (
                        "started",
                        f"{clock(c.started_at)} ({age(c.started_at, now)} ago)"
                        if c.started_at
                        else "-",
                    ),
                    (
                        "terminated",
                        f"{clock(c.terminated_at)} ({age(c.terminated_at, now)} ago)"
                        if ended
                        else "-",
                    ),
                    (
                        "last heartbeat",
                        f"{age(c.last_heartbeat_at, now)} ago" if c.last_heartbeat_at else "never",
                    ),
                    ("missed heartbeats", str(c.missed_heartbeats)),
                    ("agent", self._agent(c.agent_alive)),
                    ("exit code", exit_text(c.exit_code) or "-"),
                    ("reason", c.termination_reason or "-"),
                ]
            )
        )
        runtime = age(c.started_at or c.created_at, c.terminated_at or now)
        self.query_one("#cost", Static).update(
            _fields(
                [
                    (
                        "rate",
                        Text(rate_text(c)) if c.is_active else "- (ended)",
                    ),  # literal: [defaults]
                    (
                        "accrued",
                        f"{'~' if c.rate_estimated else ''}{money(c.cost_accrued_usd)} over {runtime}",
                    ),
                ]
            )
        )
        self._render_load()
        self._render_events()

    @staticmethod
    def _agent(alive: bool | None) -> str:
        if alive is None:
            return "-"
        return "alive" if alive else "not running"

    def _render_load(self) -> None:
        """Plot oldest to newest; samples without a reading are skipped, not drawn as zero."""
        beats = sorted(self.detail.heartbeats, key=lambda h: h.ts)
        cpu = [h.cpu_percent for h in beats if h.cpu_percent is not None]
        mem = [h.memory_mib for h in beats if h.memory_mib is not None]
        self.query_one("#cpu-spark", Sparkline).data = cpu
        self.query_one("#mem-spark", Sparkline).data = mem
        span = f" over {age(beats[0].ts, beats[-1].ts)}" if len(beats) > 1 else ""
        self.query_one("#cpu-label", Static).update(
            f"CPU % · {len(cpu)} samples{span} · latest {percent(cpu[-1])} · peak {percent(max(cpu))}"
            if cpu
            else "CPU % · no heartbeats yet"
        )
        self.query_one("#mem-label", Static).update(
            f"Memory · {len(mem)} samples{span} · latest {memory(mem[-1])} · peak {memory(max(mem))}"
            if mem
            else "Memory · no heartbeats yet"
        )

    def _render_events(self) -> None:
        events = sorted(self.detail.events, key=lambda e: (e.ts, e.id))
        out = Text()
        for i, e in enumerate(events):
            if i:
                out.append("\n")
            out.append_text(event_text(e))
        self.query_one("#events", Static).update(out if events else Text("no events", style="dim"))
