"""The dashboard's one screen: it composes the panes, hands each view to them, and owns the filter,
the contextual help and the actions on the selection.

The App (`app/dashboard.py`) owns what is app-wide: the view pipeline, the loops, the workers that
call the `ControlPlane`, the one error handler and the size guard. This screen decides what an
action acts on (and asks first), then hands the work to the App; keys that have nothing to act on
are dimmed in the footer (`check_action`).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from parhelia.app.help_texts import HEALTH_HELP, STATE_HELP
from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.state.views import ContainerView, DashboardView
from parhelia.widgets.budget_pane import BudgetPane
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.containers_table import ContainersTable, PreparedRows
from parhelia.widgets.events_log import EventFilter, EventsLog
from parhelia.widgets.filter_bar import FilterBar
from parhelia.widgets.formatting import (
    health_label,
    money,
    reconciler_line,
    stale_banner,
)
from parhelia.widgets.help_pane import HelpPane, PaneHelp, pane_help
from parhelia.widgets.status_bar import StaleBanner, StatusBar

if TYPE_CHECKING:
    from parhelia.app.dashboard import ParheliaApp

MIN_WIDTH, MIN_HEIGHT = 80, 20
SIDEBAR_MIN_WIDTH = 120  # narrower, the budget and help sidebar collapses (b brings it back)
FILTER_HINT = {
    "containers": "filter: text, state:running, health:dead, task:flaky",
    "events": "filter events: text, level:warning, type:orphan",
}
LEVEL_RANK = {"ok": 0, "warning": 1, "critical": 2, "exceeded": 3}


About = tuple[int, list]  # a view's active containers and its attention reasons


def key_of(binding: Binding) -> str:
    return binding.key_display or binding.key


def about_view(view: DashboardView) -> About:
    """The view's active count and attention reasons: each goes over every container (at 10,000
    rows ~10 ms), so the refresh thread works them out with the view (`ParheliaApp._collect`)."""
    return sum(1 for c in view.containers if c.is_active), view.attention()


class MainScreen(Screen[None]):
    """Containers, events, budget and help; the keys that act on them."""

    AUTO_FOCUS = "#containers"
    PANE_HELP = PaneHelp("Dashboard")  # the help pane's words when no pane has the focus

    # Declared once: the footer, the command palette and the help pane and screen read this list
    # (then the App's, for the keys that work everywhere).
    BINDINGS = [
        Binding("t", "terminate", "Terminate", tooltip="Terminate the selected container"),
        Binding(
            "T",
            "terminate_filtered",
            "Term. filtered",
            tooltip="Terminate every container the filter shows",
        ),
        Binding("n", "new_task", "New task", tooltip="Dispatch an agent with guided defaults"),
        Binding("enter", "detail", "Detail", tooltip="The selected container's detail"),
        # priority: taken as the app reads it, so the focus has moved before a letter typed right
        # after it is routed (to the table, which `s` re-sorted); typed in the bar it is text
        Binding(
            "slash",
            "filter",
            "Filter",
            key_display="/",
            tooltip="Filter the focused pane",
            priority=True,
        ),
        Binding("r", "reconcile", "Reconcile", tooltip="Reconcile with the backend now"),
        Binding(
            "b", "toggle_sidebar", "Sidebar", tooltip="Show or hide the budget and help sidebar"
        ),
        Binding("a", "attach", "Attach", tooltip="Attach to the agent's session (or a shell)"),
        Binding("l", "logs", "Logs", tooltip="The selected container's agent output, live"),
        Binding(
            "d",
            "diff",
            "Diff",
            show=False,  # in help and the palette; the footer keeps to the everyday keys
            tooltip="What the selected container's agent changed since its task began "
            "(takes a checkpoint)",
        ),
    ]

    app: ParheliaApp  # type: ignore[assignment]  # this screen runs only in the dashboard

    def __init__(self, *, event_rows: int) -> None:
        super().__init__()
        self.event_rows = event_rows
        self._budget_level = "ok"
        self._filter_target = "containers"
        self._level_before_filter = "debug"
        self._sidebar: bool | None = None  # None: shown when the terminal is wide enough
        self._select_after_refresh: str | None = None
        self._can_act: tuple[bool, ...] = ()  # what check_action said last (footer refreshes)
        self._about_view: tuple[DashboardView, About] | None = None
        self._filter_note = ""  # what the note under the filter bar says

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield StaleBanner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield FilterBar(placeholder=FILTER_HINT["containers"], id="filter")
                yield Static(id="filter-note")
                yield ContainersTable(id="containers")
                yield EventsLog(id="events", max_events=max(50, self.event_rows))
            with Vertical(id="right"):
                yield BudgetPane(id="budget")
                yield HelpPane(id="help")
        yield Static(
            f"The terminal is too small for the dashboard: {MIN_WIDTH}×{MIN_HEIGHT} at least.\n"
            "Enlarge the window, or run `parhelia tui --once` for a snapshot.",
            id="too-small",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#containers").border_title = "Containers"
        self.query_one("#events").border_title = "Events"
        self.query_one("#budget").border_title = "Budget"
        self.query_one("#help").border_title = "Help"
        self.query_one("#filter").display = False
        self.query_one("#filter-note").display = False
        self.query_one("#banner").display = False
        self.app.panes_mounted()
        self.call_after_refresh(self.query_one(ContainersTable).focus)
        self.watch(self, "focused", lambda _focused: self.update_help(), init=False)
        self.watch(self.query_one("#filter", Input), "value", self._filter_typed, init=False)

    def fit(self, small: bool) -> None:
        """The App's size guard: a terminal too small shows why instead of the panes."""
        self.query_one("#too-small").display = small
        for sel in ("#main", "#status", "Footer"):
            self.query_one(sel).display = not small
        if small:
            self.query_one("#banner").display = False
        elif self.focused is None and self.app.screen is self:
            self.query_one(ContainersTable).focus()  # hiding the panes took the focus away

    # -- a view to the panes ------------------------------------------------------------------

    def show_view(
        self,
        view: DashboardView,
        containers: list[ContainerView],
        rows: PreparedRows | None,
        about: About | None = None,
    ) -> None:
        """Hand a view to every pane; `containers` are the view's, with rows being terminated
        marked so by the App; `about` its counts, when worked out ahead (`about_view`)."""
        now = view.generated_at
        if about is not None:
            self._about_view = (view, about)
        with self.app.batch_update():
            table = self.query_one(ContainersTable)
            table.show(containers, now, rows, view.agents, view.samples)
            if self._select_after_refresh and table.select(self._select_after_refresh):
                self._select_after_refresh = None
            self.query_one(EventsLog).show(view.events, now)
            self.query_one(BudgetPane).show(view.budget, now)
            self.show_header(view)
            self._budget_toast(view)
            self._update_titles(view)
            self.update_help()
        if self.focused is None and self.app.screen is self and not self.app.too_small:
            table.focus()  # the first focus can be lost while the panes were hidden or laid out

    def select_after_refresh(self, container_id: str) -> None:
        """Put the cursor on a new container once a refresh brings its row."""
        self._select_after_refresh = container_id

    def show_header(self, view: DashboardView, now: datetime | None = None) -> None:
        now = now or view.generated_at
        app = self.app
        short = self.size.width < SIDEBAR_MIN_WIDTH
        if not app.run_loops:
            mode = "read-only" if short else "read-only: loops run elsewhere"
        elif app.lease_held is False:
            holder = view.reconciler.lease_holder or "another process"
            mode = "read-only" if short else f"read-only: {holder} runs the loops"
        elif app.lease_held:
            mode = "" if short else "running the loops"
        else:
            mode = "starting"
        b = view.budget
        budget = "" if self.sidebar_shown else f"budget {b.percent:.0f}% of {money(b.ceiling_usd)}"
        self.query_one(StatusBar).show(
            view.backend,
            "" if short else view.database,
            reconciler_line(view.reconciler, now, app.control.holder, short=short),
            mode,
            budget,
            plane=view.plane_id,
        )
        small = app.too_small
        self.query_one(StaleBanner).show(None if small else stale_banner(view))

    @property
    def sidebar_shown(self) -> bool:
        if self._sidebar is not None:
            return self._sidebar
        return self.size.width >= SIDEBAR_MIN_WIDTH

    def action_toggle_sidebar(self) -> None:
        self._sidebar = not self.sidebar_shown
        self.layout_sidebar()

    def layout_sidebar(self) -> None:
        with contextlib.suppress(NoMatches):
            self.query_one("#right").display = self.sidebar_shown
            if self.app.view is not None:
                self.show_header(self.app.view, self.app.control.clock())

    def _update_titles(self, view: DashboardView) -> None:
        table = self.query_one(ContainersTable)
        active = self._about(view)[0]
        burn = view.budget.burn_rate_per_hour
        theirs = f" · {len(view.foreign)} of another plane" if view.foreign else ""
        table.summary = f"{active} active{theirs} · {money(burn)}/h"
        table.retitle()

    def _about(self, view: DashboardView) -> About:
        """The view's active count and attention reasons, worked out once per view (ahead, in
        the refresh thread, for a refreshed one): the titles and help are redrawn on each
        refresh and key."""
        if self._about_view is None or self._about_view[0] is not view:
            self._about_view = (view, about_view(view))
        return self._about_view[1]

    def _budget_toast(self, view: DashboardView) -> None:
        level = view.budget.level
        if LEVEL_RANK[level] > LEVEL_RANK[self._budget_level] and self.app.refreshes > 1:
            self.notify(
                f"Budget {level}: {money(view.budget.spent_usd)} of {money(view.budget.ceiling_usd)} "
                f"({view.budget.percent:.0f}%), policy {view.budget.policy}",
                title="Budget",
                severity="error" if level == "exceeded" else "warning",
                timeout=10,
            )
        self._budget_level = level

    # -- contextual help ---------------------------------------------------------------------

    def pane_keys(self) -> tuple[PaneHelp, list[tuple[str, str]]]:
        """The focused pane's help and its keys (its own bindings), then this screen's and the
        App's shown ones (the one BINDINGS list each)."""
        help, node = pane_help(self.focused or self)
        if help.keys is not None:
            return help, list(help.keys)
        own = node.BINDINGS if node is not self else []
        keys = [(key_of(b), b.description) for b in own]
        keys += [(key_of(b), b.description) for b in (*self.BINDINGS, *self.app.BINDINGS) if b.show]
        return help, keys

    def update_help(self) -> None:
        help, keys = self.pane_keys()
        about: list[tuple[str, str]] = []
        view = self.app.view
        if view is not None:
            about += [("Attention", a.text, a.command) for a in self._about(view)[1][:2]]
        selected = self.query_one(ContainersTable).selected
        if selected is not None and help.selection:
            about.append((f"{selected.id} {selected.state}", STATE_HELP.get(selected.state, "")))
            if selected.is_active:
                about.append((health_label(selected.health), HEALTH_HELP.get(selected.health, "")))
        last = None
        if self.app.last_error is not None:
            e = self.app.last_error
            last = f"{e.code} {CATALOGUE[e.code].title}: {e.message}. Try: {'; '.join(e.suggestions[:2])}"
        self.query_one(HelpPane).show(help.title, keys, about, last)
        self._refresh_action_states()

    @on(ContainersTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._refresh_action_states()  # onto an ended row, `t` dims at once, not at the next refresh
        # After the frame that moved the cursor: one frame redraws the bounding box of everything
        # changed in it, and the help pane and the cursor together span nearly the whole screen.
        self.call_after_refresh(self.update_help)

    @on(ContainersTable.RowSelected)
    def _row_selected(self) -> None:
        """The table takes enter for itself (select the row): that is the detail key."""
        self.action_detail()

    # -- which keys can act ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim (None) the keys that act on the selection when there is nothing they can act on:
        no row selected (an empty table, or a filter that matches nothing), an ended row for `t`,
        no running row shown for `T` (k9s marks what cannot apply)."""
        with contextlib.suppress(NoMatches):  # asked before the panes exist
            table = self.query_one(ContainersTable)
            selected = table.selected
            if action == "terminate":
                return True if selected is not None and selected.is_active else None
            if action == "terminate_filtered":
                return True if table.any_active_shown else None
            if action in ("detail", "attach", "logs", "diff"):
                return True if selected is not None else None
        return True

    def _refresh_action_states(self) -> None:
        """Redraw the footer's keys when what they can act on changed (only then: a footer
        redraw composes it again)."""
        states = tuple(
            self.check_action(a, ()) is True
            for a in ("terminate", "terminate_filtered", "detail", "attach", "logs", "diff")
        )
        if states != self._can_act:
            self._can_act = states
            self.refresh_bindings()

    # -- filter -----------------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Open the filter bar on the focused pane's filter, to edit it (k9s' `/`)."""
        box = self.query_one("#filter", Input)
        if self.focused is box:  # a `/` in the filter's own text
            box.insert_text_at_cursor("/")
            return
        events = isinstance(self.focused, EventsLog) or (
            self.focused is box and self._filter_target == "events"
        )
        self._filter_target = "events" if events else "containers"
        log = self.query_one(EventsLog)
        self._level_before_filter = log.filter.min_level
        box.placeholder = FILTER_HINT[self._filter_target]
        table = self.query_one(ContainersTable)
        box.value = log.filter_text if events else table.filter.text  # the pane's: no change
        if not events:
            table.open_search()  # its rows' haystacks made now, for the first word typed
        box.display = True
        # at once, not as `focus()` does after the queued messages: a letter typed right after
        # the `/` is already queued, and must be the filter's, not a key for the table
        self.set_focus(box)
        self._show_filter_problems(box.value)

    def _filter_typed(self, value: str) -> None:
        """The filter bar's text changed: its pane filters now, as the key is handled, so the
        frame that echoes the keystroke shows the rows too (an `Input.Changed` message came
        after that frame, and the rows a frame or two later: bench/tui.py's filter keystroke)."""
        if self._filter_target == "events":
            log = self.query_one(EventsLog)
            if value != log.filter_text:
                log.set_filter(value)
        else:
            table = self.query_one(ContainersTable)
            if ContainerFilter.parse(value).text != table.filter.text:
                table.set_filter(value)
                if self.app.view is not None:
                    self._update_titles(self.app.view)
        self._show_filter_problems(value)

    def _show_filter_problems(self, text: str) -> None:
        """Say what the filter names that does not exist, with the valid values."""
        if self._filter_target == "events":
            problems = EventFilter.problems(text)
        else:
            problems = ContainersTable.filter_problems(text)
        note = self.query_one("#filter-note", Static)
        said = "⚠ " + "; ".join(problems) if problems else ""
        if said != self._filter_note:  # an update lays the whole screen out again
            self._filter_note = said
            note.update(said)
        note.display = bool(problems) and self.query_one("#filter").display

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(box.value)
        self.query_one("#filter-note").display = False
        self.query_one(ContainersTable).close_search()
        self._focus_filter_target()  # also when nothing matches: the keys stay the table's

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and self.focused is box:
            box.value = ""  # clears the pane's filter (`_filter_typed`)
            if self._filter_target == "events":
                self.query_one(EventsLog).set_min_level(self._level_before_filter)
            box.display = False
            self.query_one("#filter-note").display = False
            self.query_one(ContainersTable).close_search()
            self._focus_filter_target()
            event.stop()

    @on(ContainersTable.Changed)
    def _table_changed(self) -> None:
        with contextlib.suppress(NoMatches):  # a table's message can land as the app closes
            if self.app.view is not None:
                self._update_titles(self.app.view)
            self._refresh_action_states()  # rows came, went or ended, or the filter changed

    @on(ContainersTable.FilterCleared)
    def _table_filter_cleared(self) -> None:
        if self._filter_target == "containers":
            box = self.query_one("#filter", Input)
            box.value = ""  # the table's filter is clear already
            box.display = False
        if self.app.view is not None:
            self._update_titles(self.app.view)

    def _focus_filter_target(self) -> None:
        if self._filter_target == "events":
            self.query_one(EventsLog).focus()
        else:
            self.query_one(ContainersTable).focus()

    # -- actions: decide what, ask first, hand the work to the App --------------------------------

    def _selected(self) -> ContainerView | None:
        selected = self.query_one(ContainersTable).selected
        if selected is None:
            self.notify("No container selected.", severity="warning")
        return selected

    def action_terminate(self) -> None:
        from parhelia.widgets.confirm import ConfirmTerminate

        c = self._selected()
        if c is None:
            return
        if not c.is_active:
            self.notify(f"{c.id} is already {c.state}.", severity="information")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.app.terminate([c.id])

        self.app.push_screen(ConfirmTerminate([c], self.app.now()), confirmed)

    def action_terminate_filtered(self) -> None:
        from parhelia.widgets.confirm import ConfirmTerminate

        table = self.query_one(ContainersTable)
        targets = [c for c in table.shown_rows if c.is_active]

        def confirmed(ok: bool | None) -> None:
            if ok and targets:
                self.app.terminate([c.id for c in targets])

        self.app.push_screen(
            ConfirmTerminate(
                targets, self.app.now(), filter_text=table.filter.text or "(no filter)"
            ),
            confirmed,
        )

    def action_new_task(self) -> None:
        from parhelia.widgets.new_task import NewTaskDefaults, NewTaskScreen

        app = self.app
        values, sources = app.task_defaults()
        budget = app.view.budget if app.view else None
        screen = NewTaskScreen(
            NewTaskDefaults(values, sources),
            backends=("local", "modal"),
            rates=app.control.rates,
            spent_usd=budget.spent_usd if budget else 0.0,
            ceiling_usd=budget.ceiling_usd if budget else app.control.budget_config().ceiling_usd,
        )
        app.push_screen(screen, app.dispatch_request)

    def action_detail(self) -> None:
        c = self._selected()
        if c is not None:
            self.app.open_detail(c.id)

    def action_reconcile(self) -> None:
        self.app.reconcile_now()

    def action_attach(self) -> None:
        app = self.app
        c = self._selected()
        if c is None:
            return
        try:
            from parhelia.workers.sessions import attach_or_shell_argv

            # its agent's tmux session (issue 19), else a shell as before
            argv, session_id = attach_or_shell_argv(app.control, c.id)
        except ParheliaError as exc:
            app.report_error(exc)
            return
        try:
            with app.suspend():
                code = app.attach_runner(argv)
        except Exception as exc:  # no terminal to hand over (headless), or the shell is missing
            app.report_error(
                ParheliaError(
                    "E601",
                    f"could not attach to {c.id}: {exc}",
                    [" ".join(argv), f"parhelia containers show {c.id}"],
                )
            )
            return
        self.notify(f"Shell in {c.id} exited ({code}).", title="Attach", timeout=4)
        if session_id is not None and app.control.settings.checkpoint.on_detach:
            self._checkpoint_on_detach(c.id, session_id)  # here or in a Modal sandbox
        app.request_refresh()

    @work(thread=True, group="checkpoint", exit_on_error=False)
    def _checkpoint_on_detach(self, container_id: str, session_id: str) -> None:
        """`[checkpoint] on_detach`: after `a` on an agent's session returns with the agent still
        running, a checkpoint (in a thread: a big workspace takes a while). E600 is shown."""
        from parhelia.workers.checkpoints import checkpoint_on_detach
        from parhelia.workers.sessions import SessionService

        app, control = self.app, self.app.control
        try:
            c = control.store.get_container(container_id)
            live = SessionService(control).of_container(c)
            if not any(s.id == session_id and s.state != "ended" for s in live):
                return  # the agent ended while attached: nothing was detached from
            row = checkpoint_on_detach(control, container_id, session_id)
        except ParheliaError as exc:
            app.call_from_thread(app.report_error, exc)
            return
        if row is not None:
            app.call_from_thread(
                self.notify,
                f"Checkpoint {row.id} of {container_id} taken on detach ({row.files} files).",
                title="Checkpoint",
                timeout=4,
            )

    def action_logs(self) -> None:
        from parhelia.widgets.logs_screen import LogsScreen

        c = self._selected()
        if c is not None:
            cid = c.id
            control = self.app.control
            self.app.push_screen(
                LogsScreen(cid, lambda offset: control.container_logs(cid, offset))
            )

    def action_diff(self) -> None:
        from parhelia.widgets.diff_screen import DiffScreen
        from parhelia.workers.checkpoints import changes_since_start

        c = self._selected()
        if c is not None:
            cid = c.id
            control = self.app.control
            self.app.push_screen(
                DiffScreen(cid, lambda: changes_since_start(control, cid, actor="user"))
            )

    def help_rows(self) -> list[tuple[str, str, str]]:
        """Every key with where it works, for the help screen: this screen's and the App's work
        everywhere, then each pane's own."""
        rows = [
            (key_of(b), b.description, "everywhere") for b in (*self.BINDINGS, *self.app.BINDINGS)
        ]
        for pane in (ContainersTable, EventsLog):
            rows += [
                (key_of(b), b.description, pane.PANE_HELP.title.lower()) for b in pane.BINDINGS
            ]
        return rows
