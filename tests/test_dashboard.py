"""The dashboard driven with Textual's Pilot: every binding, refresh by key, sticky sort and
filter, the stale banner, the database watcher, and terminate on a real local process."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import psutil
import pytest
from textual.widgets import Input

from parhelia.app.dashboard import ParheliaApp
from parhelia.app.main_screen import MainScreen
from parhelia.state.errors import ParheliaError
from parhelia.state.store import Store
from parhelia.widgets.confirm import ConfirmTerminate
from parhelia.widgets.containers_table import ContainersTable
from parhelia.widgets.detail import ContainerDetailScreen
from parhelia.widgets.events_log import EventsLog
from parhelia.widgets.formatting import COLUMN_KEYS
from parhelia.widgets.help_screen import HelpScreen
from parhelia.widgets.new_task import NewTaskScreen
from tests import dashboard_world as world

SIZE = (150, 45)


@pytest.fixture
def fleet(store):
    backend = world.seed(store)
    return world.control(store, backend), backend


def make_app(control, **kw) -> ParheliaApp:
    kw.setdefault("run_loops", False)
    kw.setdefault("watch_db", False)
    kw.setdefault("refresh_seconds", 0)
    return ParheliaApp(control, **kw)


async def until(pilot, predicate, timeout: float = 20.0) -> None:
    """Let the app run until `predicate()` holds: waits on work in threads, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            app = pilot.app
            raise AssertionError(
                f"condition not reached in time: refreshes={app.refreshes} focused={app.focused} "
                f"refreshing={app._refreshing} workers={list(app.workers)} error={app.last_error}"
            )
        await pilot.pause(0.01)


async def refreshed(pilot, app, after: int = 0) -> None:
    """Until a refresh has been applied (and the first focus has landed)."""
    await until(pilot, lambda: app.refreshes > after and app.focused is not None)
    await pilot.pause()


def table(app) -> ContainersTable:
    return app.query_one(ContainersTable)


def shown_ids(app) -> list[str]:
    return [c.id for c in table(app).shown_rows]


def text_of(widget) -> str:
    """What a Static shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, no_color=True)
    console.print(widget.content)
    return console.file.getvalue()


def screen_text(screen) -> str:
    return " ".join(text_of(w) for w in screen.query("Static"))


def cell(app, container_id: str, column: str) -> str:
    return table(app).get_cell(container_id, column).plain.strip()


# -- panes -----------------------------------------------------------------------------------


async def test_main_screen_shows_every_pane(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        ids = shown_ids(app)
        assert set(ids) == {c[0] for c in world.FLEET} - {"c-0000a006"} or len(ids) >= 6
        # health is a symbol and a word, never colour alone
        assert cell(app, "c-0000a003", "health") == "✖ dead"
        assert cell(app, "c-0000a002", "health") == "◐ degraded"
        assert cell(app, "c-0000a004", "gpu") == "A10G"
        assert cell(app, "c-0000a001", "cost").startswith("$")
        budget = text_of(app.query_one("#budget"))
        assert "of $7.50 this day" in budget and "burn" in budget
        assert "WARNING" in budget and app.query_one("#budget").has_class("-warning")
        assert "policy warn" in budget
        events = app.query_one(EventsLog)
        assert any("orphan" in line.text for line in events.lines)
        status = text_of(app.query_one("#status"))
        assert "backend local" in status and "reconciler never run" in status
        assert not app.query_one("#banner").display
        help_text = text_of(app.query_one("#help"))
        assert "Containers" in help_text and "t Terminate" in help_text
        assert "orphaned container" in help_text  # attention first


async def test_orphans_and_unhealthy_rows_stand_out(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        orphan = t.get_cell("c-0000a005", "id")
        dead = t.get_cell("c-0000a003", "id")
        healthy = t.get_cell("c-0000a001", "id")
        assert "magenta" in str(orphan.style)
        assert "red" in str(dead.style)
        assert str(healthy.style) == ""


async def test_refresh_updates_cells_by_key_and_keeps_the_cursor(fleet, store):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        assert t.select("c-0000a002")
        versions_before = {k: t.row_version(k) for k in t.ordered_keys}
        view = app.view
        # a new container appears (youngest: sorts to the top) and one changes health
        newest = replace(
            view.containers[0],
            id="c-0000ffff",
            created_at=view.generated_at,
            started_at=view.generated_at,
        )
        changed = [
            replace(c, health="unhealthy") if c.id == "c-0000a002" else c for c in view.containers
        ]
        app.apply_view(replace(view, containers=[*changed, newest]))
        await pilot.pause()
        assert shown_ids(app)[0] == "c-0000ffff"
        assert cell(app, "c-0000a002", "health") == "▲ unhealthy"
        assert t.selected.id == "c-0000a002"  # the cursor followed its container
        # untouched rows kept their cells: nothing was cleared and re-added
        changed = {k for k, v in versions_before.items() if t.row_version(k) != v}
        assert changed == {"c-0000a002"}
        # and a removed container's row goes
        app.apply_view(
            replace(view, containers=[c for c in view.containers if c.id != "c-0000a004"])
        )
        await pilot.pause()
        assert "c-0000a004" not in shown_ids(app)
        assert "c-0000ffff" not in shown_ids(app)


async def test_sort_and_filter_stay_put_across_refreshes(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        t.sort_by("cost", reverse=True)
        await pilot.pause()
        costs = [c.cost_accrued_usd for c in t.shown_rows]
        assert costs == sorted(costs, reverse=True)
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        await pilot.press(*"state:running")
        await pilot.press("enter")
        assert {c.state for c in t.shown_rows} == {"running"}
        n = app.refreshes
        app.request_refresh()
        await refreshed(pilot, app, n)
        assert {c.state for c in t.shown_rows} == {"running"}
        costs = [c.cost_accrued_usd for c in t.shown_rows]
        assert costs == sorted(costs, reverse=True)
        assert t.sort_column == "cost"
        assert "shown" in t.border_subtitle
        # escape in the filter box clears it
        await pilot.press("slash", "escape")
        assert len(t.shown_rows) > 4


@pytest.mark.one_database
async def test_a_header_click_sorts_by_its_column_and_a_second_reverses(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        x = sum(c.width for c in t.columns[: COLUMN_KEYS.index("cost")])
        await pilot.click(ContainersTable, offset=(x + 3, 1))  # border, then the header line
        assert (t.sort_column, t.sort_reverse) == ("cost", False)
        costs = [c.cost_accrued_usd for c in t.shown_rows]
        assert costs == sorted(costs)
        await pilot.click(ContainersTable, offset=(x + 3, 1))
        assert (t.sort_column, t.sort_reverse) == ("cost", True)


@pytest.mark.one_database
async def test_s_cycles_the_sort_column_and_S_reverses(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        first = t.sort_column
        await pilot.press("s")
        assert t.sort_column != first
        reverse = t.sort_reverse
        await pilot.press("S")
        assert t.sort_reverse is not reverse


async def test_filter_terms(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        t = table(app)
        for text, expected in [
            ("health:dead", {"c-0000a003"}),
            ("state:orphaned", {"c-0000a005"}),
            ("task:flaky", {"c-0000a001"}),
            ("a10g", {"c-0000a004"}),
        ]:
            t.set_filter(text)
            assert {c.id for c in t.shown_rows} == expected, text


async def test_events_filter_by_level_and_follow_pauses_on_scroll_up(fleet, store):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=(150, 30)) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        log.focus()
        await pilot.pause()
        await pilot.press("v", "v")  # debug -> info -> warning
        assert log.filter.min_level == "warning"
        assert all(("INFO" not in line.text) for line in log.lines)
        await pilot.press("v")
        assert log.filter.min_level == "error"
        await pilot.press("v")  # wraps to debug
        for i in range(40):
            store.add_event("note", f"note {i}", ts=world.NOW)
        n = app.refreshes
        app.request_refresh()
        await refreshed(pilot, app, n)
        await pilot.pause()
        assert log.following and log.is_vertical_scroll_end
        await pilot.press("home")  # the user scrolls up: only that pauses
        await pilot.pause()
        assert not log.following
        assert "paused" in log.border_subtitle
        store.add_event("note", "while paused", ts=world.NOW)
        n = app.refreshes
        app.request_refresh()
        await refreshed(pilot, app, n)
        await pilot.pause()
        assert log.scroll_y == 0  # did not jump to the end
        await pilot.press("end")
        await pilot.pause()
        assert log.following and "following" in log.border_subtitle


# -- terminate -----------------------------------------------------------------------------------


async def test_t_confirms_with_cancel_focused_and_terminates(fleet, store):
    control, backend = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        table(app).select("c-0000a001")
        await pilot.press("t")
        assert isinstance(app.screen, ConfirmTerminate)
        await pilot.press("enter")  # Cancel has the focus: enter does not terminate
        assert not isinstance(app.screen, ConfirmTerminate)
        assert store.get_container("c-0000a001").state == "running"
        await pilot.press("t")
        await pilot.press("tab", "enter")
        assert cell(app, "c-0000a001", "state") in ("terminating", "terminated")
        await until(pilot, lambda: store.get_container("c-0000a001").state == "terminated")
        await until(pilot, lambda: cell(app, "c-0000a001", "state") == "terminated")
        assert "sb-w001" in backend.terminated
        ev = store.events(container_id="c-0000a001", limit=1)[0]
        assert ev.actor == "user:tui"


async def test_T_terminates_what_the_filter_shows_after_a_preview(fleet, store):
    control, backend = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        table(app).set_filter("health:degraded,dead")
        await pilot.press("T")
        screen = app.screen
        assert isinstance(screen, ConfirmTerminate)
        preview = (
            screen_text(screen)
            + " ".join(
                str(screen.query_one("DataTable").get_row_at(i))
                for i in range(screen.query_one("DataTable").row_count)
            )
            if screen.query("DataTable")
            else screen_text(screen)
        )
        assert "c-0000a002" in preview and "c-0000a003" in preview
        assert "c-0000a001" not in preview
        await pilot.press("tab", "enter")
        await until(
            pilot,
            lambda: (
                {store.get_container(c).state for c in ("c-0000a002", "c-0000a003")}
                == {"terminated"}
            ),
        )
        assert store.get_container("c-0000a001").state == "running"
        assert sorted(backend.terminated) == ["sb-w002", "sb-w003"]


async def test_terminate_kills_a_real_local_process(parhelia_env):
    """The whole path on the local backend: a real agent process, `t`, confirm, and it is gone."""
    from parhelia.workers.backends.local import LocalBackend

    env = parhelia_env
    created = env.ok("task", "create", "watch me stop", "--cpu", "1")
    cid = created["container_id"]
    control = env.control()
    local = LocalBackend(env.sandbox_root, terminate_grace=2.0)
    pid = local._load(created["sandbox_id"]).pid
    assert psutil.pid_exists(pid)
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        assert table(app).select(cid)
        await pilot.press("t", "tab", "enter")
        await until(pilot, lambda: cell(app, cid, "state") == "terminated", timeout=15)
    proc_gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert proc_gone
    c = env.store().get_container(cid)
    assert c.state == "terminated" and c.terminated_by == "user:tui"


# -- new task, detail, help, attach, reconcile ----------------------------------------------------


async def test_n_offers_remembered_defaults_and_dispatches(fleet, store, isolated_user_dirs):
    from parhelia.app.config import load_settings
    from parhelia.app.preferences import load_last_used, save_last_used

    control, backend = fleet
    last = {"cpu": 3.0, "memory_mib": 6144, "timeout_minutes": 45, "gpu": "none"}
    save_last_used({**last, "backend": "local"}, plane=store.plane_id)  # kept per store
    app = make_app(control, loaded=load_settings(flags={}))
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewTaskScreen))
        screen = app.screen
        assert screen.query_one("#cpu", Input).value in ("3", "3.0")
        assert screen.query_one("#memory", Input).value == "6144"
        assert screen.query_one("#timeout", Input).value == "45"
        await pilot.press(*"write the release notes")
        await pilot.press("enter")
        await until(pilot, lambda: len(backend.specs) == 1)
        spec = next(iter(backend.specs.values()))
        assert spec.argv == ["echo", "write the release notes"]
        await until(
            pilot,
            lambda: any("release notes" in (c.task_prompt or "") for c in table(app).shown_rows),
        )
        assert load_last_used(plane=store.plane_id)["cpu"] == 3.0


async def test_dispatch_failure_is_shown_with_its_code(fleet):
    control, backend = fleet
    backend.fail_create = ParheliaError(
        "E503", "Modal said no", ["parhelia help modal", "modal token new"]
    )
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        app.dispatch_request(
            __import__("parhelia.state.requests", fromlist=["TaskRequest"]).TaskRequest(prompt="x")
        )
        await until(pilot, lambda: app.last_error is not None)
        assert app.last_error.code in ("E503", "E602")
        assert "Last error" in text_of(app.query_one("#help"))


async def test_enter_opens_the_detail_with_sparklines(fleet):
    from textual.widgets import Sparkline

    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        table(app).select("c-0000a001")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ContainerDetailScreen))
        spark = app.screen.query_one("#cpu-spark", Sparkline)
        assert len(list(spark.data)) == 24
        await pilot.press("escape")
        assert not isinstance(app.screen, ContainerDetailScreen)
        assert app._detail is None


@pytest.mark.one_database
async def test_question_mark_lists_every_binding(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app.screen)
        for b in [
            *MainScreen.BINDINGS,
            *ParheliaApp.BINDINGS,
            *ContainersTable.BINDINGS,
            *EventsLog.BINDINGS,
        ]:
            assert b.description in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_attaches_a_shell_and_resumes(fleet):
    control, _ = fleet
    ran = []
    app = make_app(control, attach_runner=lambda argv: ran.append(argv) or 0)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        app.suspend = contextlib.nullcontext  # the headless driver cannot hand over a terminal
        table(app).select("c-0000a001")
        await pilot.press("a")
        assert ran == [["sh"]]
        table(app).select("c-0000a007")  # terminated: nothing to attach to
        await pilot.press("a")
        assert app.last_error.code == "E601"
        assert len(ran) == 1


async def test_r_reconciles_now(fleet, store):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        assert store.runs() == []
        await pilot.press("r")
        await until(pilot, lambda: len(store.runs()) == 1)
        await until(pilot, lambda: "reconciler last" in text_of(app.query_one("#status")))


@pytest.mark.one_database
async def test_command_palette_lists_the_actions(fleet):
    from parhelia.app.commands import ActionsProvider

    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        provider = ActionsProvider(app.screen)
        names = [name for name, _help, _run in provider._actions()]
        for b in [*MainScreen.BINDINGS, *ParheliaApp.BINDINGS]:
            if not b.action.startswith("focus_"):
                assert b.description in names
        await pilot.press("ctrl+p")
        await pilot.press(*"new task")
        await pilot.pause(0.3)
        from textual.command import CommandPalette

        assert isinstance(app.screen, CommandPalette)
        await until(
            pilot,
            lambda: (
                "New task" in str(app.screen.query_one("CommandList").get_option_at_index(0).prompt)
            ),
        )


# -- staleness, other processes, small terminals, money ---------------------------------------------


async def test_stale_banner_appears_when_the_backend_fails_and_goes_when_it_recovers(fleet, store):
    control, backend = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        banner = app.query_one("#banner")
        backend.fail_list = ParheliaError(
            "E502", "connection refused", ["parhelia reconciler status", "parhelia help E502"]
        )
        await pilot.press("r")
        await until(pilot, lambda: banner.display)
        assert "Local unreachable since" in text_of(banner)
        assert "showing last known state" in text_of(banner)
        # nothing was lost: every container is still shown as it was
        assert store.get_container("c-0000a001").state == "running"
        assert app.is_running
        backend.fail_list = None
        await pilot.press("r")
        await until(pilot, lambda: not banner.display)


async def test_changes_from_another_process_appear_through_the_database_watcher(
    fleet, store, tmp_path
):
    control, _ = fleet
    app = make_app(control, watch_db=True)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.pause(0.3)  # let the watcher start
        other = Store(store.url)  # as a CLI in another process would
        started = time.monotonic()
        other.add_event("note", "written elsewhere", ts=world.NOW)
        log = app.query_one(EventsLog)
        await until(pilot, lambda: any("written elsewhere" in line.text for line in log.lines), 5)
        latency = time.monotonic() - started
        other.close()
        assert latency < 2.0  # the target (500 ms) is measured in bench/tui.py


async def test_a_change_signalled_during_a_read_is_read_at_once_and_shown_in_one_apply(
    fleet, store
):
    """The watcher's signal while the store is read: the refresh reads again before it shows
    (one apply with the change), instead of showing the read that missed it and queueing a
    whole refresh behind it (change to screen at 10,000 containers, bench/tui.py)."""
    import threading

    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        real, read_done, go_on = control.dashboard, threading.Event(), threading.Event()

        def held_once(**kw):
            view = real(**kw)
            if not read_done.is_set():
                read_done.set()
                go_on.wait(20)  # this read has missed the change
            return view

        control.dashboard = held_once
        before = app.refreshes
        app.request_refresh()
        await until(pilot, read_done.is_set)
        Store(store.url).add_event("note", "written during the read", ts=world.NOW)
        app.request_refresh()  # as the watcher does
        go_on.set()
        await until(pilot, lambda: app.refreshes > before)
        assert any(e.message == "written during the read" for e in app.view.events)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.refreshes == before + 1  # one apply: no refresh queued behind it


@pytest.mark.one_database
async def test_a_terminal_too_small_shows_a_message(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=(60, 15)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        assert app.query_one("#too-small").display
        assert not app.query_one("#main").display
        assert "too small" in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(150, 45)
        await pilot.pause()
        assert not app.query_one("#too-small").display
        assert app.query_one("#main").display
        assert isinstance(app.focused, ContainersTable)


async def test_budget_threshold_crossing_toasts(fleet, store):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        assert app.view.budget.level == "warning"
        view = app.view
        app.apply_view(replace(view, budget=replace(view.budget, spent_usd=8.5, level="critical")))
        await pilot.pause()
        assert any("Budget critical" in n.message for n in app._notifications)
        assert app.query_one("#budget").has_class("-critical")


async def test_read_only_when_another_process_holds_the_lease(fleet, store):
    control, _ = fleet
    assert store.acquire_lease("daemon:42", 300, now=world.NOW)
    app = make_app(control, run_loops=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.lease_held is False)
        n = app.refreshes
        app.request_refresh()
        await refreshed(pilot, app, n)
        status = text_of(app.query_one("#status"))
        assert "read-only" in status and "daemon:42" in status
    assert store.runs() == []  # it never reconciled


def test_sort_keys_follow_the_columns(fleet):
    """One key per column, in column order, so a header sorts by what it shows."""
    from parhelia.widgets.formatting import sort_keys

    control, _ = fleet
    for c in control.dashboard().containers:
        by = dict(zip(COLUMN_KEYS, sort_keys(c, world.NOW), strict=True))
        assert by["id"] == (False, c.id, c.id)
        assert by["cost"] == (False, c.cost_accrued_usd, c.id)
        live = c.is_active
        assert by["rate"] == ((False, c.cost_rate_per_hour, c.id) if live else (True, 0, c.id))
        assert by["sandbox"] == (c.sandbox_id is None, c.sandbox_id or 0, c.id)
        has_cpu = live and c.cpu_percent is not None
        assert by["cpu"] == ((False, c.cpu_percent, c.id) if has_cpu else (True, 0, c.id))


async def test_garbage_is_collected_on_the_dashboards_schedule(fleet, monkeypatch):
    """After the first frame: what it loaded is frozen, automatic collection is off and the
    dashboard's own timers collect (they run without error); all restored when the app ends."""
    import gc

    from parhelia.app import gc_schedule

    monkeypatch.setattr(gc_schedule, "YOUNG_SECONDS", 0.05)
    monkeypatch.setattr(gc_schedule, "FULL_SECONDS", 0.1)
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: not gc.isenabled())
        assert gc.get_freeze_count() > 0
        await pilot.pause(0.3)  # both timers have fired
    assert gc.isenabled() and gc.get_freeze_count() == 0


# -- the events pane follows until the user scrolls up -----------------------------------------


def _newest_on_screen(log: EventsLog, marker: str) -> bool:
    top = round(log.scroll_y)
    visible = log.lines[top : top + log.scrollable_content_region.height]
    return any(marker in strip.text for strip in visible)


async def _add_events_and_refresh(pilot, app, store, n: int, tag: str) -> None:
    for i in range(n):
        store.add_event("note", f"{tag} {i}", ts=world.NOW)
    before = app.refreshes
    app.request_refresh()
    await refreshed(pilot, app, before)
    await pilot.pause()


@pytest.mark.parametrize("interruption", ["filter", "resize", "terminate", "refresh"])
async def test_events_keep_following_through_everything_but_a_scroll(fleet, store, interruption):
    """Opening the containers filter, resizing to 80×24, `t` and refreshes never stop following,
    and the newest event stays on screen; the footer says so truthfully."""
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        await _add_events_and_refresh(pilot, app, store, 60, "first")
        assert log.following and _newest_on_screen(log, "first 59")
        if interruption == "filter":  # events arrive while the filter bar is open
            await pilot.press("slash", "r", "u", "n")
            await pilot.pause()
        elif interruption == "resize":
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            await pilot.pause()
        elif interruption == "terminate":  # events arrive while the confirmation is open
            table(app).select("c-0000a001")
            await pilot.press("t")
            await pilot.pause()
        await _add_events_and_refresh(pilot, app, store, 5, "second")
        if interruption in ("filter", "terminate"):
            await pilot.press("escape")
        await pilot.pause()
        await _add_events_and_refresh(pilot, app, store, 1, "third")
        assert log.following, log.border_subtitle
        assert "following" in log.border_subtitle and "paused" not in log.border_subtitle
        assert _newest_on_screen(log, "third 0"), [s.text for s in log.lines[-5:]]


async def test_events_pause_on_a_wheel_scroll_up_and_resume_at_the_end(fleet, store):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        await _add_events_and_refresh(pilot, app, store, 60, "note")
        from textual.events import MouseScrollUp

        log.post_message(MouseScrollUp(log, 2, 2, 0, -1, 0, False, False, False))
        await pilot.pause()
        await pilot.pause()
        assert not log.following and "paused" in log.border_subtitle
        top = log.scroll_y
        await _add_events_and_refresh(pilot, app, store, 3, "later")
        assert log.scroll_y == top and not log.following  # paused means paused
        log.focus()
        await pilot.press("end")
        await pilot.pause()
        assert log.following and _newest_on_screen(log, "later 2")


def test_event_type_terms_match_words_anywhere_in_the_type():
    from parhelia.widgets.events_log import EventFilter

    def ev(type_: str):
        from parhelia.state.views import EventView

        return EventView(1, world.NOW, type_, "warning", "reconciler", "m")

    f = EventFilter.parse("type:orphan")
    assert f.matches(ev("container.orphaned"))  # the README's example
    assert not f.matches(ev("container.state"))
    assert EventFilter.parse("type:container.st").matches(ev("container.state"))
    assert EventFilter.parse("type:failed").matches(ev("container.terminate_failed"))
    assert EventFilter.parse("type:budget").matches(ev("budget.warning"))


# -- filters behave like k9s's -------------------------------------------------------------------


@pytest.mark.one_database
async def test_slash_reopens_the_filter_to_edit_and_esc_clears_it(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        box = app.query_one("#filter", Input)
        await pilot.press("slash", *"state:running", "enter")
        assert isinstance(app.focused, ContainersTable)
        assert table(app).filter.text == "state:running"
        subtitle = str(table(app).border_subtitle)
        assert "state:running" in subtitle  # the active filter stays visible
        await pilot.press("slash")
        assert app.focused is box and box.value == "state:running"  # reopened to edit
        await pilot.press("escape")
        assert not table(app).filter and not box.display
        assert isinstance(app.focused, ContainersTable)


@pytest.mark.one_database
async def test_esc_on_the_table_clears_its_filter(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.press("slash", *"health:dead", "enter")
        assert shown_ids(app) == ["c-0000a003"]
        await pilot.press("escape")
        assert len(shown_ids(app)) == 7
        assert not app.query_one("#filter", Input).display


@pytest.mark.one_database
async def test_a_filter_matching_nothing_keeps_the_keys_on_the_table(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.press("slash", *"nothing-matches-this", "enter")
        assert shown_ids(app) == []
        assert isinstance(app.focused, ContainersTable)
        await pilot.press("escape")
        assert len(shown_ids(app)) == 7


@pytest.mark.one_database
async def test_unknown_filter_fields_and_values_say_so_with_the_valid_ones(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await pilot.press("slash", *"state:bogus")
        note = app.query_one("#filter-note")
        assert note.display
        said = text_of(note)
        assert "bogus" in said and "running" in said and "orphaned" in said
        await pilot.press(*["backspace"] * 11, *"colour:red")
        assert "unknown field 'colour'" in text_of(note) and "health" in text_of(note)
        await pilot.press(*["backspace"] * 10, *"state:run")
        assert not note.display  # a prefix of a valid value is fine


@pytest.mark.one_database
async def test_esc_in_the_events_filter_clears_it_and_restores_the_level(fleet):
    control, _ = fleet
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        log.focus()
        await pilot.press("v", "v")  # warning
        await pilot.press("slash", *"level:error type:orphan")
        assert log.filter.min_level == "error" and log.filter.types == ("orphan",)
        await pilot.press("escape")
        assert log.filter.min_level == "warning" and not log.filter.types
        assert app.focused is log
        await pilot.press("escape")  # Esc on the pane clears what is left
        assert log.filter.min_level == "debug"
