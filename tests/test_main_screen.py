"""The dashboard's screen and App split, driven with Pilot: keys with nothing to act on are dimmed
in the footer, the help pane follows each pane's own `PANE_HELP`, and a worker that fails is
reported by the App's one handler."""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from parhelia.widgets.confirm import ConfirmTerminate
from parhelia.widgets.events_log import EventsLog
from parhelia.widgets.help_pane import PaneHelp
from tests import dashboard_world as world
from tests.test_dashboard import SIZE, make_app, refreshed, table, text_of, until


@pytest.fixture
def control(store):
    backend = world.seed(store)
    return world.control(store, backend)


def footer(app) -> dict[str, bool]:
    """Each key the footer shows -> whether it is drawn enabled (not dimmed)."""
    return {k.key: not k.has_class("-disabled") for k in app.screen.query(FooterKey)}


async def test_selection_keys_dim_when_the_filter_shows_nothing(control):
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: footer(app).get("t") is True)
        await pilot.press("slash", *"task:no-such-task", "enter")
        await until(pilot, lambda: footer(app).get("t") is False)
        keys = footer(app)
        assert not keys["t"] and not keys["T"] and not keys["a"] and not keys["l"]
        assert keys["n"] and keys["slash"] and keys["r"] and keys["q"]  # these need no row
        await pilot.press("t")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmTerminate)
        app.query_one(EventsLog).focus()  # the table keeps enter for itself; the log does not
        await until(pilot, lambda: "enter" in footer(app))
        assert footer(app)["enter"] is False  # Detail: nothing selected
        await pilot.press("escape")  # clears the events filter, not the containers'
        table(app).set_filter("")
        await until(pilot, lambda: footer(app).get("enter") is True)


async def test_t_dims_on_an_ended_row_and_T_when_no_running_row_is_shown(control):
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        table(app).select("c-0000a007")  # terminated
        await until(pilot, lambda: footer(app).get("t") is False)
        assert footer(app)["T"] and footer(app)["a"]  # others still run; a shell reports why not
        table(app).select("c-0000a001")  # running
        await until(pilot, lambda: footer(app).get("t") is True)
        table(app).set_filter("state:terminated,stopped")
        await until(pilot, lambda: footer(app).get("T") is False)
        await pilot.press("T")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmTerminate)


async def test_the_help_pane_reads_the_focused_panes_own_help(control, monkeypatch):
    monkeypatch.setattr(EventsLog, "PANE_HELP", PaneHelp("Event log", selection=False))
    app = make_app(control)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        app.query_one(EventsLog).focus()
        await until(pilot, lambda: text_of(app.query_one("#help")).startswith("Event log"))
        text = text_of(app.query_one("#help"))
        assert "v Level" in text and "c-0000a001 running" not in text


async def test_a_failing_worker_is_reported_by_the_one_handler(control, monkeypatch):
    """The database watcher had no error path of its own: its failure now reaches the App's
    handler like every other worker's, instead of ending silently."""
    import parhelia.workers.db_watch as db_watch

    def broken(*_args, **_kw):
        raise OSError("inotify watch limit reached")

    monkeypatch.setattr(db_watch, "watch_store", broken)
    app = make_app(control, watch_db=True)
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: app.last_error is not None)
        assert app.last_error.code == "E900" and "inotify" in app.last_error.message
        assert "Last error" in text_of(app.query_one("#help"))
