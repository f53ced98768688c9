"""`parhelia tui`: the Textual app that composes the panes and runs the control loops as workers.

Data flows one way. Thread workers run the reconciler, the heartbeat poller with the budget guard,
and the database watcher; each change (in this process, or seen on the database file) asks for a
refresh. A refresh collects `ControlPlane.dashboard()` in a thread and hands the plain view to the
widgets on the main thread; refreshes never overlap (a request during one is coalesced into the
next), so input is never blocked and a slow database only makes the view later, never the keys.
Actions go widget -> App action -> worker -> `ControlPlane` -> store -> refresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, Input, Static

from parhelia.app.commands import ActionsProvider
from parhelia.app.gc_schedule import GcSchedule
from parhelia.app.help_texts import HEALTH_HELP, STATE_HELP, TOPICS
from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.state.views import (
    ContainerDetail,
    ContainerView,
    DashboardView,
    plural,
    still_running_note,
)
from parhelia.widgets.budget_pane import BudgetPane
from parhelia.widgets.containers_table import ContainersTable, PreparedRow, prepare_rows
from parhelia.widgets.events_log import EventFilter, EventsLog
from parhelia.widgets.formatting import (
    health_label,
    money,
    reconciler_line,
    stale_banner,
)
from parhelia.widgets.help_pane import HelpPane
from parhelia.widgets.status_bar import StaleBanner, StatusBar
from parhelia.workers.db_watch import can_watch

if TYPE_CHECKING:
    from parhelia.app.config import LoadedSettings
    from parhelia.workers.control import ControlPlane

MIN_WIDTH, MIN_HEIGHT = 80, 20
SIDEBAR_MIN_WIDTH = 120  # narrower, the budget and help sidebar collapses (b brings it back)
FULL_REFRESH_SECONDS = 10.0  # a fallback: the database watcher reports changes within ~200 ms
SWITCH_INTERVAL_SECONDS = 0.001  # the main thread waits at most this for the interpreter
FILTER_HINT = {
    "containers": "filter: text, state:running, health:dead, task:flaky",
    "events": "filter events: text, level:warning, type:orphan",
}
LEVEL_RANK = {"ok": 0, "warning": 1, "critical": 2, "exceeded": 3}
_DASHBOARD_ACTIONS = {
    "terminate",
    "terminate_filtered",
    "new_task",
    "detail",
    "filter",
    "reconcile",
    "toggle_sidebar",
    "attach",
    "logs",
    "help",
    "quit",
}


class ParheliaApp(App):
    """Containers, events, budget and help, live; the reconciler and heartbeats run inside."""

    TITLE = "Parhelia"
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {ActionsProvider}
    AUTO_FOCUS = "#containers"

    # Declared once: the footer, the command palette and the help pane and screen read this list.
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
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter the focused pane"),
        Binding("r", "reconcile", "Reconcile", tooltip="Reconcile with the backend now"),
        Binding(
            "b", "toggle_sidebar", "Sidebar", tooltip="Show or hide the budget and help sidebar"
        ),
        Binding("a", "attach", "Shell", tooltip="Open a shell in the selected container"),
        Binding("l", "logs", "Logs", tooltip="The selected container's agent output, live"),
        Binding(
            "question_mark", "help", "Help", key_display="?", tooltip="Every key and help topic"
        ),
        Binding("tab", "focus_next", "Next pane", show=False, tooltip="Focus the next pane"),
        Binding("q", "quit", "Quit", tooltip="Quit the dashboard"),
    ]

    def __init__(
        self,
        control: ControlPlane,
        *,
        loaded: LoadedSettings | None = None,
        run_loops: bool = True,
        watch_db: bool = True,
        refresh_seconds: float | None = None,
        attach_runner: Callable[[list[str]], int] | None = None,
        demo: bool = False,
    ) -> None:
        super().__init__()
        self.control = control
        self.demo = demo
        self.loaded = loaded
        self.run_loops = run_loops
        self.watch_db = watch_db
        settings = control.settings
        self.refresh_seconds = (
            settings.tui.refresh_seconds if refresh_seconds is None else refresh_seconds
        )
        self.attach_runner = attach_runner or subprocess.call
        self.view: DashboardView | None = None
        self.holder: bool | None = None  # None until the first reconcile says
        self.last_error: ParheliaError | None = None
        self.terminating: set[str] = set()
        self.refreshes = 0
        self._stop = threading.Event()
        self._gc = GcSchedule()
        self._refreshing = False
        self._refresh_pending = False
        self._collected_at = 0.0
        self._too_small = False
        self._budget_level = "ok"
        self._detail: ContainerDetail | None = None
        self._filter_target = "containers"
        self._level_before_filter = "debug"
        self._sidebar: bool | None = None  # None: shown when the terminal is wide enough
        self._select_after_refresh: str | None = None
        if settings.tui.theme:
            self.theme = settings.tui.theme

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The dashboard's keys act on the dashboard only: while a dialog or the detail is on
        top, they are off (and out of that screen's footer), so the footer shows its own keys."""
        return not (action in _DASHBOARD_ACTIONS and len(self.screen_stack) > 1)

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield StaleBanner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder=FILTER_HINT["containers"], id="filter")
                yield Static(id="filter-note")
                yield ContainersTable(id="containers")
                yield EventsLog(
                    id="events", max_events=max(50, self.control.settings.tui.event_rows)
                )
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
        self._check_size()
        self.call_after_refresh(self.query_one(ContainersTable).focus)
        self.watch(self.screen, "focused", lambda _focused: self.update_help(), init=False)
        # The refresh, reconciler and heartbeat threads run Python too; with the default 5 ms
        # switch interval a key press waits up to 5 ms for the interpreter at each step while
        # one of them works (key to screen p95 under a heartbeating fleet; bench/tui.py).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self.request_refresh()
        if self.refresh_seconds > 0:
            self.set_interval(self.refresh_seconds, self.tick, name="tick")
        if self.run_loops:
            self.control_loops()
        if self.watch_db and can_watch(self.control.store.url):
            self.db_watcher()

    def on_unmount(self) -> None:
        self._stop.set()
        if self.run_loops:
            self.control.loops.kick()  # ends the loop's wait at once
        sys.setswitchinterval(self._switch_interval)
        self._gc.stop()

    def on_resize(self, event) -> None:
        self._check_size(event.size)
        self._layout_sidebar()

    def _check_size(self, size=None) -> None:
        size = size or self.size
        small = size.width < MIN_WIDTH or size.height < MIN_HEIGHT
        self._too_small = small
        self.query_one("#too-small").display = small
        for sel in ("#main", "#status", "Footer"):
            self.query_one(sel).display = not small
        if small:
            self.query_one("#banner").display = False
        elif self.focused is None and self.screen is self.screen_stack[0]:
            self.query_one(ContainersTable).focus()  # hiding the panes took the focus away

    # -- refresh: collect in a thread, apply on the main thread, never overlapping ----------------

    def tick(self) -> None:
        """Each second the header's clock moves. The store is read again (and ages and accrued
        costs move) when it changed, which the watcher or an action reports, or as a fallback every
        FULL_REFRESH_SECONDS: reading and formatting 1,000 containers each second would cost the
        idle dashboard about a tenth of a core, over its 5 % budget."""
        watching = self.watch_db and can_watch(self.control.store.url)
        if not watching or time.monotonic() - self._collected_at >= FULL_REFRESH_SECONDS:
            self.request_refresh()
        elif self.view is not None and not self._refreshing:
            with contextlib.suppress(NoMatches):  # on the way out the panes go before the timer
                self._show_header(self.view, self.control.clock())

    def request_refresh(self) -> None:
        if self._refreshing:
            self._refresh_pending = True
            return
        self._refreshing = True
        self._collect()

    @work(thread=True, group="refresh", exit_on_error=False)
    def _collect(self) -> None:
        try:
            view = self.control.dashboard()
            rows = prepare_rows(view.containers, view.generated_at)
            detail = None
            if self._detail is not None:
                detail = self.control.container_detail(self._detail.container.id)
        except Exception as exc:  # shown, never fatal: the last view stays on screen
            self.call_from_thread(self._collected, None, None, exc)
            return
        self.call_from_thread(self._collected, view, detail, None, rows)

    def _collected(
        self,
        view: DashboardView | None,
        detail: ContainerDetail | None,
        error: Exception | None,
        rows: dict[str, PreparedRow] | None = None,
    ) -> None:
        self._refreshing = False
        self._collected_at = time.monotonic()
        if error is not None:
            self.report_error(error, toast=self.view is None)
        elif view is not None:
            with contextlib.suppress(NoMatches):  # collected while the app was closing
                self.apply_view(view, detail, rows)
        if self._refresh_pending:
            self._refresh_pending = False
            self.request_refresh()

    def apply_view(
        self,
        view: DashboardView,
        detail: ContainerDetail | None = None,
        rows: dict[str, PreparedRow] | None = None,
    ) -> None:
        """Hand a view to every pane (with its container rows formatted ahead, when given). Rows
        being terminated show so at once."""
        self.view = view
        self.refreshes += 1
        if self.refreshes == 1:
            self.call_after_refresh(self._gc.start, self)  # once the first frame is drawn
        now = view.generated_at
        containers = view.containers
        if self.terminating:
            done = {c.id for c in containers if c.id in self.terminating and not c.is_active}
            self.terminating -= done
            containers = [
                dataclasses.replace(c, state="terminating") if c.id in self.terminating else c
                for c in containers
            ]
            if rows is not None:
                rows = {k: v for k, v in rows.items() if k not in self.terminating}
        with self.batch_update():
            table = self.query_one(ContainersTable)
            table.show(containers, now, rows)
            if self._select_after_refresh and table.select(self._select_after_refresh):
                self._select_after_refresh = None
            self.query_one(EventsLog).show(view.events, now)
            self.query_one(BudgetPane).show(view.budget, now)
            self._show_header(view)
            self._budget_toast(view)
            self._update_titles(view)
            self.update_help()
        if self.focused is None and len(self.screen_stack) == 1 and not self._too_small:
            table.focus()  # the first focus can be lost while the panes were hidden or laid out
        if detail is not None and self._detail is not None:
            self._detail = detail
            from parhelia.widgets.detail import ContainerDetailScreen

            if isinstance(self.screen, ContainerDetailScreen):
                self.screen.update_detail(detail, now)

    def _show_header(self, view: DashboardView, now: datetime | None = None) -> None:
        now = now or view.generated_at
        short = self.size.width < SIDEBAR_MIN_WIDTH
        if not self.run_loops:
            mode = "read-only" if short else "read-only: loops run elsewhere"
        elif self.holder is False:
            holder = view.reconciler.lease_holder or "another process"
            mode = "read-only" if short else f"read-only: {holder} runs the loops"
        elif self.holder:
            mode = "" if short else "running the loops"
        else:
            mode = "starting"
        b = view.budget
        budget = "" if self.sidebar_shown else f"budget {b.percent:.0f}% of {money(b.ceiling_usd)}"
        self.query_one(StatusBar).show(
            view.backend,
            "" if short else view.database,
            reconciler_line(view.reconciler, now, self.control.holder, short=short),
            mode,
            budget,
            plane=view.plane_id,
        )
        small = self._too_small
        self.query_one(StaleBanner).show(None if small else stale_banner(view))

    @property
    def sidebar_shown(self) -> bool:
        if self._sidebar is not None:
            return self._sidebar
        return self.size.width >= SIDEBAR_MIN_WIDTH

    def action_toggle_sidebar(self) -> None:
        self._sidebar = not self.sidebar_shown
        self._layout_sidebar()

    def _layout_sidebar(self) -> None:
        with contextlib.suppress(NoMatches):
            self.query_one("#right").display = self.sidebar_shown
            if self.view is not None:
                self._show_header(self.view, self.control.clock())

    def _update_titles(self, view: DashboardView) -> None:
        table = self.query_one(ContainersTable)
        active = sum(1 for c in view.containers if c.is_active)
        burn = view.budget.burn_rate_per_hour
        shown = (
            f"filter {table.filter.text!r}: {table.matched} of {len(view.containers)} shown · "
            if table.filter
            else ""
        )
        hidden = (
            f" · {plural(len(table.hidden_columns), 'column')} hidden →"
            if table.hidden_columns
            else ""
        )
        theirs = f" · {len(view.foreign)} of another plane" if view.foreign else ""
        table.border_subtitle = (
            f"{shown}{active} active{theirs} · {money(burn)}/h · sort {table.sort_column}{hidden}"
        )
        table.border_title = f"Containers ({len(view.containers)})"

    def _budget_toast(self, view: DashboardView) -> None:
        level = view.budget.level
        if LEVEL_RANK[level] > LEVEL_RANK[self._budget_level] and self.refreshes > 1:
            self.notify(
                f"Budget {level}: {money(view.budget.spent_usd)} of {money(view.budget.ceiling_usd)} "
                f"({view.budget.percent:.0f}%), policy {view.budget.policy}",
                title="Budget",
                severity="error" if level == "exceeded" else "warning",
                timeout=10,
            )
        self._budget_level = level

    # -- contextual help ---------------------------------------------------------------------

    def pane_keys(self) -> tuple[str, list[tuple[str, str]]]:
        """The focused pane's name and its keys, then the app's (the one BINDINGS list)."""
        focused = self.focused
        pane, own = "Dashboard", []
        if isinstance(focused, ContainersTable):
            pane, own = "Containers", ContainersTable.BINDINGS
        elif isinstance(focused, EventsLog):
            pane, own = "Events", EventsLog.BINDINGS
        elif focused is self.query_one("#filter", Input):
            return "Filter", [("enter", "keep filter"), ("esc", "clear filter")]
        keys = [(self._key(b), b.description) for b in own]
        keys += [(self._key(b), b.description) for b in self.BINDINGS if b.show]
        return pane, keys

    @staticmethod
    def _key(binding: Binding) -> str:
        return binding.key_display or binding.key

    def update_help(self) -> None:
        pane, keys = self.pane_keys()
        about: list[tuple[str, str]] = []
        if self.view is not None:
            about += [("Attention", a.text, a.command) for a in self.view.attention()[:2]]
        selected = self.query_one(ContainersTable).selected
        if selected is not None and pane != "Events":
            about.append((f"{selected.id} {selected.state}", STATE_HELP.get(selected.state, "")))
            if selected.is_active:
                about.append((health_label(selected.health), HEALTH_HELP.get(selected.health, "")))
        last = None
        if self.last_error is not None:
            e = self.last_error
            last = f"{e.code} {CATALOGUE[e.code].title}: {e.message}. Try: {'; '.join(e.suggestions[:2])}"
        self.query_one(HelpPane).show(pane, keys, about, last)

    @on(ContainersTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        # After the frame that moved the cursor: one frame redraws the bounding box of everything
        # changed in it, and the help pane and the cursor together span nearly the whole screen.
        self.call_after_refresh(self.update_help)

    @on(ContainersTable.RowSelected)
    def _row_selected(self) -> None:
        """The table takes enter for itself (select the row): that is the detail key."""
        self.action_detail()

    def report_error(self, exc: Exception, *, toast: bool = True) -> None:
        """The one handler for failures in workers and actions: remembered for the help pane, and
        toasted with the code and the first recovery command. Never fatal."""
        err = (
            exc
            if isinstance(exc, ParheliaError)
            else ParheliaError(
                "E900",
                f"{type(exc).__name__}: {exc}",
                ["parhelia reconciler status", "parhelia db status"],
            )
        )
        self.last_error = err
        if toast:
            self.notify(
                f"{err.message}\nTry: {err.suggestions[0]}",
                title=f"{err.code} {CATALOGUE[err.code].title}",
                severity="error",
                timeout=8,
            )
        self.update_help()

    # -- control loops as workers ---------------------------------------------------------------

    @work(thread=True, group="loops", exit_on_error=False, name="loops")
    def control_loops(self) -> None:
        """The reconciler, heartbeat poller and budget guard by the rules of `workers/loops.py`
        (heartbeat and budget only while this process holds the lease); `r` kicks a cycle now."""
        self.control.loops.run(self._stop, on_cycle=self._loop_done, on_error=self._loop_failed)

    def _loop_done(self, name: str, result: Any) -> None:
        """From the loop thread: after a reconcile say who holds the lease and any listing error;
        after every pass ask for a refresh."""
        self.holder = self.control.loops.holder  # a lost lease shows at once, not next cycle
        if name == "reconcile" and result.error and result.error_code in CATALOGUE:
            err = ParheliaError(
                result.error_code,
                result.error,
                ["parhelia reconciler status", "parhelia help " + result.error_code],
            )
            self.call_from_thread(self.report_error, err, toast=False)
        self.call_from_thread(self.request_refresh)

    def _loop_failed(self, _name: str, exc: Exception) -> None:
        self.call_from_thread(self.report_error, exc)

    @work(thread=True, group="watch", exit_on_error=False, name="db-watch")
    def db_watcher(self) -> None:
        from parhelia.workers.db_watch import watch_store

        watch_store(
            self.control.store.url,
            lambda: self.call_from_thread(self.request_refresh),
            self._stop,
        )

    # -- actions --------------------------------------------------------------------------------

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
                self.terminate([c.id])

        self.push_screen(ConfirmTerminate([c], self._now()), confirmed)

    def action_terminate_filtered(self) -> None:
        from parhelia.widgets.confirm import ConfirmTerminate

        table = self.query_one(ContainersTable)
        targets = [c for c in table.shown_rows if c.is_active]

        def confirmed(ok: bool | None) -> None:
            if ok and targets:
                self.terminate([c.id for c in targets])

        self.push_screen(
            ConfirmTerminate(targets, self._now(), filter_text=table.filter.text or "(no filter)"),
            confirmed,
        )

    def terminate(self, ids: list[str]) -> None:
        """Mark the rows at once, then stop them in a worker."""
        self.terminating |= set(ids)
        if self.view is not None:
            self.apply_view(self.view)
        self._terminate_worker(ids)

    @work(thread=True, group="actions", exit_on_error=False)
    def _terminate_worker(self, ids: list[str]) -> None:
        stopped = []
        for cid in ids:
            try:
                view = self.control.terminate(cid, actor="user:tui", reason="user")
                stopped.append(view)
            except Exception as exc:
                self.call_from_thread(self._terminate_failed, cid, exc)
        if stopped:
            cost = sum(v.cost_accrued_usd for v in stopped)
            what = stopped[0].id if len(stopped) == 1 else f"{len(stopped)} containers"
            self.call_from_thread(
                self.notify, f"Terminated {what} (accrued {money(cost)}).", title="Terminate"
            )
        self.call_from_thread(self.request_refresh)

    def _terminate_failed(self, cid: str, exc: Exception) -> None:
        self.terminating.discard(cid)
        self.report_error(exc)

    def action_new_task(self) -> None:
        from parhelia.widgets.new_task import NewTaskDefaults, NewTaskScreen

        values, sources = self.task_defaults()
        budget = self.view.budget if self.view else None
        screen = NewTaskScreen(
            NewTaskDefaults(values, sources),
            backends=("local", "modal"),
            rates=self.control.rates,
            spent_usd=budget.spent_usd if budget else 0.0,
            ceiling_usd=budget.ceiling_usd if budget else self.control.budget_config().ceiling_usd,
        )
        self.push_screen(screen, self._dispatch_request)

    def task_defaults(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Configuration first, then the last values used, then the built-in defaults."""
        from parhelia.app.preferences import task_defaults_with_sources

        if self.loaded is None:
            d = self.control.settings.defaults
            values = {
                "backend": self.control.default_backend,
                "gpu": d.gpu,
                "cpu": d.cpu,
                "memory_mib": d.memory_mib,
                "timeout_minutes": d.timeout_minutes,
            }
            return values, dict.fromkeys(values, "default")
        both = task_defaults_with_sources(self.loaded, plane=self.control.store.plane_id)
        values = {k: v for k, (v, _) in both.items()}
        if values.get("backend") == "auto":
            values["backend"] = self.control.default_backend
        return values, {k: s for k, (_, s) in both.items()}

    def _dispatch_request(self, request) -> None:
        if request is not None:
            self._dispatch_worker(request)

    @work(thread=True, group="actions", exit_on_error=False)
    def _dispatch_worker(self, request) -> None:
        from parhelia.app.preferences import save_last_used

        try:
            result = self.control.dispatch(request, actor="user:tui")
        except Exception as exc:
            self.call_from_thread(self.report_error, exc)
            return
        save_last_used(
            {
                "backend": request.backend,
                "gpu": request.gpu or "none",
                "cpu": request.cpu,
                "memory_mib": request.memory_mib,
                "timeout_minutes": request.timeout_minutes,
            },
            plane=self.control.store.plane_id,
        )
        self.call_from_thread(
            self.notify,
            f"{result.task_id} running as {result.container_id} on {result.backend} "
            f"(at most {money(result.estimate.cost_usd)})"
            + "".join(f"\n⚠ {w}" for w in result.warnings),
            title="Dispatched",
        )
        self.call_from_thread(self._dispatched, result.container_id)

    def _dispatched(self, container_id: str) -> None:
        """Put the cursor on the new container once the refresh brings its row."""
        self._select_after_refresh = container_id
        self.request_refresh()

    def action_detail(self) -> None:
        c = self._selected()
        if c is not None:
            self._open_detail(c.id)

    @work(thread=True, group="actions", exit_on_error=False)
    def _open_detail(self, container_id: str) -> None:
        try:
            detail = self.control.container_detail(container_id)
        except Exception as exc:
            self.call_from_thread(self.report_error, exc)
            return
        self.call_from_thread(self._push_detail, detail)

    def _push_detail(self, detail: ContainerDetail) -> None:
        from parhelia.widgets.detail import ContainerDetailScreen

        self._detail = detail

        def closed(_result: Any = None) -> None:
            self._detail = None

        self.push_screen(ContainerDetailScreen(detail, self._now()), closed)

    def action_filter(self) -> None:
        """Open the filter bar on the focused pane's filter, to edit it (k9s' `/`)."""
        box = self.query_one("#filter", Input)
        events = isinstance(self.focused, EventsLog) or (
            self.focused is box and self._filter_target == "events"
        )
        self._filter_target = "events" if events else "containers"
        log = self.query_one(EventsLog)
        self._level_before_filter = log.filter.min_level
        box.placeholder = FILTER_HINT[self._filter_target]
        with box.prevent(Input.Changed):
            box.value = log.filter_text if events else self.query_one(ContainersTable).filter.text
        box.display = True
        box.focus()
        self._show_filter_problems(box.value)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_target == "events":
            self.query_one(EventsLog).set_filter(event.value)
        else:
            self.query_one(ContainersTable).set_filter(event.value)
            if self.view is not None:
                self._update_titles(self.view)
        self._show_filter_problems(event.value)

    def _show_filter_problems(self, text: str) -> None:
        """Say what the filter names that does not exist, with the valid values."""
        if self._filter_target == "events":
            problems = EventFilter.problems(text)
        else:
            problems = ContainersTable.filter_problems(text)
        note = self.query_one("#filter-note", Static)
        note.update("⚠ " + "; ".join(problems) if problems else "")
        note.display = bool(problems) and self.query_one("#filter").display

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(box.value)
        self.query_one("#filter-note").display = False
        self._focus_filter_target()  # also when nothing matches: the keys stay the table's

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and self.focused is box:
            box.value = ""  # clears the pane's filter (Input.Changed)
            if self._filter_target == "events":
                self.query_one(EventsLog).set_min_level(self._level_before_filter)
            box.display = False
            self.query_one("#filter-note").display = False
            self._focus_filter_target()
            event.stop()

    @on(ContainersTable.Changed)
    def _table_changed(self) -> None:
        if self.view is not None:
            self._update_titles(self.view)

    @on(ContainersTable.FilterCleared)
    def _table_filter_cleared(self) -> None:
        if self._filter_target == "containers":
            box = self.query_one("#filter", Input)
            with box.prevent(Input.Changed):
                box.value = ""
            box.display = False
        if self.view is not None:
            self._update_titles(self.view)

    def _focus_filter_target(self) -> None:
        if self._filter_target == "events":
            self.query_one(EventsLog).focus()
        else:
            self.query_one(ContainersTable).focus()

    def action_reconcile(self) -> None:
        if not self.run_loops:
            self._reconcile_once_worker()
        else:
            self.control.loops.kick()
        self.notify("Reconciling with the backend now.", title="Reconcile", timeout=3)

    @work(thread=True, group="reconciler-once", exit_on_error=False)
    def _reconcile_once_worker(self) -> None:
        """A read-only dashboard's `r`: one reconcile that releases the lease after it."""
        try:
            self.control.loops.once(passes=False, on_cycle=self._loop_done)
        except Exception as exc:
            self._loop_failed("reconcile", exc)

    def action_attach(self) -> None:
        c = self._selected()
        if c is None:
            return
        try:
            from parhelia.workers.sessions import attach_or_shell_argv

            # its agent's tmux session (issue 19), else a shell as before
            argv = attach_or_shell_argv(self.control, c.id)
        except ParheliaError as exc:
            self.report_error(exc)
            return
        try:
            with self.suspend():
                code = self.attach_runner(argv)
        except Exception as exc:  # no terminal to hand over (headless), or the shell is missing
            self.report_error(
                ParheliaError(
                    "E601",
                    f"could not attach to {c.id}: {exc}",
                    [" ".join(argv), f"parhelia containers show {c.id}"],
                )
            )
            return
        self.notify(f"Shell in {c.id} exited ({code}).", title="Attach", timeout=4)
        self.request_refresh()

    def action_logs(self) -> None:
        from parhelia.widgets.logs_screen import LogsScreen

        c = self._selected()
        if c is not None:
            cid = c.id
            self.push_screen(
                LogsScreen(cid, lambda offset: self.control.container_logs(cid, offset))
            )

    def action_help(self) -> None:
        from parhelia.widgets.help_screen import HelpScreen

        rows = [(self._key(b), b.description, "everywhere") for b in self.BINDINGS]
        rows += [(self._key(b), b.description, "containers") for b in ContainersTable.BINDINGS]
        rows += [(self._key(b), b.description, "events") for b in EventsLog.BINDINGS]
        rows += [("ctrl+p", "Command palette: every action by name", "everywhere")]
        self.push_screen(HelpScreen(rows, TOPICS))

    def _now(self) -> datetime:
        return self.view.generated_at if self.view is not None else self.control.clock()

    async def action_quit(self) -> None:
        """Quit, returning what keeps running so the terminal says it after the app is gone."""
        self.exit(still_running_note(self.view, demo=self.demo))


def run_dashboard(rt, *, demo: bool = False, run_loops: bool = True) -> None:
    """Run the dashboard until quit, a hang-up or SIGTERM. A demo starts its agents here, once a
    hang-up can no longer miss them, and stops them on the way out."""
    from parhelia.app.exit_guard import ExitGuard

    app = ParheliaApp(rt.control, loaded=rt.loaded, run_loops=run_loops, demo=demo)

    def cleanup() -> None:
        app._stop.set()  # the loops, also when the exit is forced and the app never unmounts
        if run_loops:
            rt.control.loops.kick()
        if demo:
            from parhelia.app.demo import stop_fleet

            stop_fleet(rt)

    guard = ExitGuard(app, cleanup)
    guard.install()
    if demo:
        from parhelia.app.demo import start_fleet

        start_fleet(rt)
    try:
        if not guard.hung_up.is_set():  # a hang-up while the fleet started skips to the cleanup
            note = app.run()
            if isinstance(note, str):  # what keeps running (and costing) after the dashboard
                sys.stderr.write(note + "\n")
    finally:
        guard.stop()
