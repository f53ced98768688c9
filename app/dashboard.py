"""`parhelia tui`: the Textual app that runs the control loops as workers and feeds the panes.

The App keeps what is app-wide: the theme, the keys that work everywhere, the view pipeline, the
loops, the workers that call the `ControlPlane`, the one handler for their failures, the GC
schedule and the size guard. Its one screen (`app/main_screen.py`) composes the panes and owns
the filter, the contextual help and the actions.

Data flows one way. Thread workers run the reconciler, the heartbeat poller with the budget guard,
and the database watcher; each change (in this process, or seen on the database file) asks for a
refresh. A refresh collects `ControlPlane.dashboard()` in a thread and hands the plain view to the
panes on the main thread; refreshes never overlap (a request during one's read has it read
again before it shows; one later is coalesced into the next), so input is never blocked and a
slow database only makes the view later, never the keys.
Actions go screen -> App worker -> `ControlPlane` -> store -> refresh.
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from parhelia.app.commands import ActionsProvider
from parhelia.app.gc_schedule import GcSchedule
from parhelia.app.help_texts import TOPICS
from parhelia.app.key_pause import KeyPause
from parhelia.app.main_screen import MIN_HEIGHT, MIN_WIDTH, About, MainScreen, about_view
from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.state.live_views import LiveContainers
from parhelia.state.views import (
    ContainerDetail,
    DashboardView,
    still_running_note,
)
from parhelia.widgets import strip_cycles
from parhelia.widgets.containers_table import (
    FIRST_ORDER,
    ContainersTable,
    PreparedRows,
    Settings,
    prepare_rows,
)
from parhelia.widgets.formatting import money

if TYPE_CHECKING:
    from parhelia.app.config import LoadedSettings
    from parhelia.workers.control import ControlPlane

FULL_REFRESH_SECONDS = 10.0  # a fallback: the database watcher reports changes within ~200 ms
SWITCH_INTERVAL_SECONDS = 0.001  # the main thread waits at most this for the interpreter
# The writer's page cache while the dashboard runs the loops itself: a heartbeat cycle of 10,000
# containers touches ~40 MB of index pages, which a 64 MiB cache keeps resident for good (the
# resident-memory target is 150 MB); a daemon keeps the large one for ingest speed.
DASHBOARD_WRITE_CACHE_KIB = 8_192
_APP_ACTIONS = {"help", "quit"}  # the App's own keys that belong to the dashboard screen


class ParheliaApp(App):
    """Containers, events, budget and help, live; the reconciler and heartbeats run inside."""

    TITLE = "Parhelia"
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {ActionsProvider}

    # The keys that work everywhere; the screen's come before them in the footer and the help.
    BINDINGS = [
        Binding(
            "question_mark", "help", "Help", key_display="?", tooltip="Every key and help topic"
        ),
        Binding("tab", "focus_next", "Next pane", show=False, tooltip="Focus the next pane"),
        Binding("q", "quit", "Quit", tooltip="Quit the dashboard"),
    ]

    main_screen: MainScreen  # made by get_default_screen

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
        strip_cycles.install()  # drawn lines freed with their frame, not by a collection
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
        self.lease_held: bool | None = (
            None  # whether this process runs the loops; None: not known yet
        )
        self.last_error: ParheliaError | None = None
        self.terminating: set[str] = set()
        self.refreshes = 0
        self.too_small = False
        self._stop = threading.Event()
        self._gc = GcSchedule(last_key=lambda: self._keys.last_key)
        self._refreshing = False
        self._refresh_pending = False
        self._collected_at = 0.0
        self._detail: ContainerDetail | None = None  # the detail on screen, refreshed with the view
        self._live = LiveContainers()  # the containers between refreshes: only changes are built
        self._keys = KeyPause(self)  # the refresh thread gives way to a key until its frame
        self._live.pause = self._keys.wait
        self._prepared: PreparedRows | None = None  # the containers pane's last order
        if settings.tui.theme:
            self.theme = settings.tui.theme

    def get_default_screen(self) -> MainScreen:
        self.main_screen = MainScreen(event_rows=self.control.settings.tui.event_rows)
        return self.main_screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The dashboard's keys act on the dashboard only: while a dialog or the detail is on
        top, they are off (and out of that screen's footer), so the footer shows its own keys."""
        return not (action in _APP_ACTIONS and len(self.screen_stack) > 1)

    # -- start, stop, size -------------------------------------------------------------------

    def on_mount(self) -> None:
        # The refresh, reconciler and heartbeat threads run Python too; with the default 5 ms
        # switch interval a key press waits up to 5 ms for the interpreter at each step while
        # one of them works (key to screen p95 under a heartbeating fleet; bench/tui.py).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    def panes_mounted(self) -> None:
        """The screen's panes exist (after the App's mount): size them, then start the feeds."""
        self._check_size()
        self.request_refresh()
        if self.refresh_seconds > 0:
            self.set_interval(self.refresh_seconds, self.tick, name="tick")
        if self.run_loops:
            self.control_loops()
        if self.watch_db and self.control.can_watch_changes:
            self.db_watcher()

    def on_unmount(self) -> None:
        self._stop.set()
        if self.run_loops:
            self.control.loops.kick()  # ends the loop's wait at once
        sys.setswitchinterval(self._switch_interval)
        self._gc.stop()

    def on_resize(self, event) -> None:
        self._check_size(event.size)
        self.main_screen.layout_sidebar()

    def _check_size(self, size=None) -> None:
        size = size or self.size
        self.too_small = size.width < MIN_WIDTH or size.height < MIN_HEIGHT
        with contextlib.suppress(NoMatches):  # a resize before the panes exist
            self.main_screen.fit(self.too_small)

    # -- refresh: collect in a thread, apply on the main thread, never overlapping ----------------

    def tick(self) -> None:
        """Each second the header's clock moves. The store is read again (and ages and accrued
        costs move) when it changed, which the watcher or an action reports, or as a fallback every
        FULL_REFRESH_SECONDS: reading and formatting 1,000 containers each second would cost the
        idle dashboard about a tenth of a core, over its 5 % budget."""
        watching = self.watch_db and self.control.can_watch_changes
        if not watching or time.monotonic() - self._collected_at >= FULL_REFRESH_SECONDS:
            self.request_refresh()
        elif self.view is not None and not self._refreshing:
            with contextlib.suppress(NoMatches):  # on the way out the panes go before the timer
                self.main_screen.show_header(self.view, self.control.clock())

    async def on_event(self, event: events.Event) -> None:
        if not isinstance(event, events.Key) or event.is_forwarded:
            await super().on_event(event)
            return
        self._keys.key_arrived()
        await super().on_event(event)  # forwards the key to the focused widget's queue
        self._keys.key_forwarded(self.focused or self.screen)

    def _display(self, screen, renderable) -> None:
        """Textual's: a frame written out, which may be the one a key press waits for
        (`app/key_pause.py`)."""
        super()._display(screen, renderable)
        if renderable is not None:
            self._keys.frame_written()

    def request_refresh(self) -> None:
        if self._refreshing:
            self._refresh_pending = True
            return
        self._refreshing = True
        table = None
        with contextlib.suppress(NoMatches):  # before the panes exist: the default order
            table = self.main_screen.query_one(ContainersTable)
        self._collect(table)

    def _order_wanted(self, table: ContainersTable | None) -> tuple[Settings, bool]:
        """The sort and filter the containers pane asks for now, read by the refresh thread once
        the store is read: a key pressed meanwhile gets its order made with the refresh's rows
        (read at the refresh's start, a sort key's order, made for the older rows, was stale on
        arrival under a heartbeating fleet and made again by a worker: bench/tui.py). A read
        torn by a key in between only leaves the pane to make its own order, as before. Before
        the panes exist: the pane's first order."""
        if table is None:
            return FIRST_ORDER, False
        return table.settings, table.searching

    @work(thread=True, group="refresh", exit_on_error=False)
    def _collect(self, table: ContainersTable | None) -> None:
        """A failure ends here and reaches `_worker_failed`: shown, never fatal, the last view
        stays on screen. The containers pane's order is made here too, for its sort and filter
        as they are asked for once the store is read, from the rows that changed."""
        previous, self._prepared = self._prepared, None  # a failed read leaves no half state
        live = self._live
        self._keys.start_refresh()
        self._keys.wait()
        view = self.control.dashboard(live=live)
        changed, reread, retexted = live.changed, live.reread, live.retexted
        if self._refresh_pending:
            # A change came while the store was read (the watcher's signal): read again now and
            # show that, rather than show this read and then queue a whole refresh behind it.
            # Once: a fleet that writes all the time still sees each read shown.
            self._refresh_pending = False
            view = self.control.dashboard(live=live)
            changed, reread = _union(changed, live.changed), _union(reread, live.reread)
            retexted = _union(retexted, live.retexted)
        self._keys.wait()
        order_for, searching = self._order_wanted(table)
        rows = prepare_rows(
            view.containers,
            order_for,
            changed,
            previous,
            view.agents,
            reread=reread,
            retexted=retexted,
            samples=view.samples,
            searching=searching,
            pause=self._keys.wait,
        )
        self._prepared = rows
        about = about_view(view)
        detail = None
        if self._detail is not None:
            detail = self.control.container_detail(self._detail.container.id)
        self.call_from_thread(self._collected, view, detail, None, rows, about)

    def _collected(
        self,
        view: DashboardView | None,
        detail: ContainerDetail | None,
        error: BaseException | None,
        rows: PreparedRows | None = None,
        about: About | None = None,
    ) -> None:
        if self._keys.hold(partial(self._collected, view, detail, error, rows, about)):
            return  # a key's frame first, then this
        self._refreshing = False
        self._collected_at = time.monotonic()
        if error is not None:
            self.report_error(error, toast=self.view is None)
        elif view is not None:
            with contextlib.suppress(NoMatches):  # collected while the app was closing
                self.apply_view(view, detail, rows, about)
        if self._refresh_pending:
            self._refresh_pending = False
            self.request_refresh()

    def apply_view(
        self,
        view: DashboardView,
        detail: ContainerDetail | None = None,
        rows: PreparedRows | None = None,
        about: About | None = None,
    ) -> None:
        """Hand a view to every pane (with its container rows' order and its counts made ahead,
        when given). Rows being terminated show so at once."""
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
        self.main_screen.show_view(view, containers, rows, about)
        if detail is not None and self._detail is not None:
            self._detail = detail
            from parhelia.widgets.detail import ContainerDetailScreen

            if isinstance(self.screen, ContainerDetailScreen):
                self.screen.update_detail(detail, now)

    def now(self) -> datetime:
        return self.view.generated_at if self.view is not None else self.control.clock()

    # -- errors: one handler ------------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """Every worker's failure ends here (harlequin's `_handle_worker_error`), none in a
        try/except of its own: a failed refresh keeps the last view (toasted only when there is
        none yet), any other failure is reported. Never fatal."""
        if event.state != WorkerState.ERROR or event.worker.error is None:
            return
        if event.worker.group == "refresh":
            self._collected(None, None, event.worker.error)
        else:
            self.report_error(event.worker.error)

    def report_error(self, exc: BaseException, *, toast: bool = True) -> None:
        """Failures in workers and actions: remembered for the help pane, and toasted with the
        code and the first recovery command. Never fatal."""
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
        self.main_screen.update_help()

    # -- control loops as workers ---------------------------------------------------------------

    @work(thread=True, group="loops", exit_on_error=False, name="loops")
    def control_loops(self) -> None:
        """The reconciler, heartbeat poller and budget guard by the rules of `workers/loops.py`
        (heartbeat and budget only while this process holds the lease); `r` kicks a cycle now.
        A failed pass is reported and the loop goes on."""
        self.control.loops.run(self._stop, on_cycle=self._loop_done, on_error=self._loop_failed)

    def _loop_done(self, name: str, result: Any) -> None:
        """From the loop thread: after a reconcile say who holds the lease and any listing error;
        after every pass ask for a refresh."""
        self.lease_held = self.control.loops.has_lease  # a lost lease shows at once, not next cycle
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
        self.control.watch_changes(lambda: self.call_from_thread(self.request_refresh), self._stop)

    def reconcile_now(self) -> None:
        if not self.run_loops:
            self._reconcile_once_worker()
        else:
            self.control.loops.kick()
        self.notify("Reconciling with the backend now.", title="Reconcile", timeout=3)

    @work(thread=True, group="reconciler-once", exit_on_error=False)
    def _reconcile_once_worker(self) -> None:
        """A read-only dashboard's `r`: one reconcile that releases the lease after it."""
        self.control.loops.once(passes=False, on_cycle=self._loop_done)

    # -- the screen's actions, in workers -------------------------------------------------------

    def terminate(self, ids: list[str]) -> None:
        """Mark the rows at once, then stop them in a worker."""
        self.terminating |= set(ids)
        if self.view is not None:
            self.apply_view(self.view)
        self._terminate_worker(ids)

    @work(thread=True, group="actions", exit_on_error=False)
    def _terminate_worker(self, ids: list[str]) -> None:
        """Each container on its own: one that fails is reported and unmarked, the rest go on."""
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
        both = task_defaults_with_sources(self.loaded, plane=self.control.plane_id)
        values = {k: v for k, (v, _) in both.items()}
        if values.get("backend") == "auto":
            values["backend"] = self.control.default_backend
        return values, {k: s for k, (_, s) in both.items()}

    def dispatch_request(self, request) -> None:
        """The new-task prompt's answer (None: cancelled)."""
        if request is not None:
            self._dispatch_worker(request)

    @work(thread=True, group="actions", exit_on_error=False)
    def _dispatch_worker(self, request) -> None:
        from parhelia.app.preferences import save_last_used

        result = self.control.dispatch(request, actor="user:tui")
        save_last_used(
            {
                "backend": request.backend,
                "gpu": request.gpu or "none",
                "cpu": request.cpu,
                "memory_mib": request.memory_mib,
                "timeout_minutes": request.timeout_minutes,
            },
            plane=self.control.plane_id,
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
        self.main_screen.select_after_refresh(container_id)
        self.request_refresh()

    @work(thread=True, group="actions", exit_on_error=False)
    def open_detail(self, container_id: str) -> None:
        detail = self.control.container_detail(container_id)
        self.call_from_thread(self._push_detail, detail)

    def _push_detail(self, detail: ContainerDetail) -> None:
        from parhelia.widgets.detail import ContainerDetailScreen

        self._detail = detail

        def closed(_result: Any = None) -> None:
            self._detail = None

        self.push_screen(ContainerDetailScreen(detail, self.now()), closed)

    # -- the keys that work everywhere --------------------------------------------------------------

    def action_help(self) -> None:
        from parhelia.widgets.help_screen import HelpScreen

        rows = self.main_screen.help_rows()
        rows += [("ctrl+p", "Command palette: every action by name", "everywhere")]
        self.push_screen(HelpScreen(rows, TOPICS))

    async def action_quit(self) -> None:
        """Quit, returning what keeps running so the terminal says it after the app is gone."""
        self.exit(still_running_note(self.view, demo=self.demo))


def _union(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    """The rows changed over two reads (None, every row, if either says so)."""
    return None if a is None or b is None else a | b


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
