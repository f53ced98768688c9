"""The deterministic dashboard for snapshot tests, golden files and the README screenshots.

`utc` fixes the local zone (the dashboard prints local times) and restores it afterwards.
`world` seeds tests/dashboard_world.py into a fresh SQLite file opened by a *relative* URL from a
temporary working directory, so `Store.label` (printed in the status bar and the `--once` header)
reads `sqlite:///parhelia.db` in every run instead of a random temporary path.
`dashboard_app` makes the real `ParheliaApp` over that world with loops, the file watcher, the
refresh timer and animations off: it refreshes exactly once, on mount.

`SCENES` are the screens worth a picture, each a Pilot script that waits on state (the refresh
count, workers, the screen on top), never on time, and ends with every Input's cursor steady.
tests/test_snapshots.py and screenshots/make_screenshots.py both use them, so the README shows
exactly what the snapshots guard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from parhelia.state.store import Store
from parhelia.workers.control import ControlPlane
from tests import dashboard_world
from tests.fakes import MemoryBackend

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from parhelia.app.dashboard import ParheliaApp

DB_NAME = "parhelia.db"
SNAPSHOT_SIZE = (150, 45)
MAX_PAUSES = 200  # a bound on waiting, not a duration: each pause is one trip through the queue


@dataclass
class World:
    store: Store
    backend: MemoryBackend
    control: ControlPlane
    cwd: Path


def build_world(cwd: Path) -> World:
    """Seed the world into `cwd`/parhelia.db; the caller has made `cwd` the working directory."""
    store = Store(f"sqlite:///{DB_NAME}")
    backend = dashboard_world.seed(store)
    return World(store, backend, dashboard_world.control(store, backend), cwd)


def make_app(world: World) -> ParheliaApp:
    from parhelia.app.dashboard import ParheliaApp

    app = ParheliaApp(world.control, run_loops=False, watch_db=False, refresh_seconds=0)
    app.animation_level = "none"
    return app


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def world(utc, tmp_path, monkeypatch) -> Iterator[World]:
    """The dashboard world at its fixed NOW, in a database labelled the same in every run."""
    cwd = tmp_path / "world"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the relative URL resolves here, for every connection and thread
    w = build_world(cwd)
    try:
        yield w
    finally:
        w.store.close()


@pytest.fixture
def dashboard_app(world) -> Callable[[], ParheliaApp]:
    """A factory for the real dashboard over `world`: deterministic, one refresh on mount."""
    return lambda: make_app(world)


# -- Pilot scripts ----------------------------------------------------------------------------------


async def settle(pilot: Pilot) -> None:
    """Let workers finish and the screen process what they posted."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def first_refresh(pilot: Pilot) -> None:
    app = pilot.app
    for _ in range(MAX_PAUSES):
        if app.refreshes >= 1:
            break
        await pilot.pause()
    assert app.refreshes >= 1, "the dashboard never applied its first view"
    await settle(pilot)


async def until_screen(pilot: Pilot, kind: type) -> None:
    for _ in range(MAX_PAUSES):
        if isinstance(pilot.app.screen, kind):
            break
        await pilot.pause()
    assert isinstance(pilot.app.screen, kind), f"{kind.__name__} did not open: {pilot.app.screen}"
    await settle(pilot)


def steady_cursors(pilot: Pilot) -> None:
    """Blink off on every Input of the screen on top: the cursor is drawn, always."""
    from textual.widgets import Input

    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False


async def select(pilot: Pilot, container_id: str) -> None:
    from parhelia.widgets.containers_table import ContainersTable

    table = pilot.app.query_one(ContainersTable)
    assert table.select(container_id), f"{container_id} is not in the table"
    await pilot.pause()
    assert table.selected is not None and table.selected.id == container_id


async def _main(pilot: Pilot) -> None:
    pass


async def _detail(pilot: Pilot) -> None:
    from parhelia.widgets.detail import ContainerDetailScreen

    await select(pilot, "c-0000a001")
    await pilot.press("enter")
    await until_screen(pilot, ContainerDetailScreen)


async def _new_task(pilot: Pilot) -> None:
    from parhelia.widgets.new_task import NewTaskScreen

    await pilot.press("n")
    await until_screen(pilot, NewTaskScreen)


async def _terminate(pilot: Pilot) -> None:
    from parhelia.widgets.confirm import ConfirmTerminate

    await select(pilot, "c-0000a001")
    await pilot.press("t")
    await until_screen(pilot, ConfirmTerminate)


async def _help(pilot: Pilot) -> None:
    from parhelia.widgets.help_screen import HelpScreen

    await pilot.press("question_mark")
    await until_screen(pilot, HelpScreen)


# name -> what to do after the first refresh
SCENES: dict[str, Callable[[Pilot], Awaitable[None]]] = {
    "main": _main,
    "detail": _detail,
    "new-task": _new_task,
    "terminate": _terminate,
    "help": _help,
}


def scene(name: str) -> Callable[[Pilot], Awaitable[None]]:
    """The full script for a scene: first refresh, its steps, cursors steady."""
    steps = SCENES[name]

    async def run(pilot: Pilot) -> None:
        await first_refresh(pilot)
        await steps(pilot)
        steady_cursors(pilot)

    return run
