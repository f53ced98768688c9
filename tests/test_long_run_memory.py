"""The events pane and the detail view stay bounded however long the dashboard runs (issue 18):
1,000,000 events are written through the store while the dashboard is open with a container's
detail on top, a refresh after each batch, and the process grows by less than a fixed bound while
the pane holds at most its cap of lines.

The bounds, 60 MB in all and 15 MB over the second 500,000 (a leak grows with the events written;
a high-water mark is reached early and stays): the pane keeps at most `max_events` events and lines, and each refresh reads the
newest 200 (`dashboard(event_limit=200)`) and the detail the newest 50 of its container, so what
the dashboard holds does not depend on how many events were written. What may grow is fixed in
size: SQLite's page cache per connection (64 MiB each by default, `state.db.CACHE_SIZE_KIB`; here
2 MiB, so a filling cache cannot pass for a leak, nor hide one), the allocator's high-water mark
from a 20,000-row write (the test's own batches), SQLAlchemy's statement caches. Keeping the events instead would be
~1 KB each as views and rendered lines, about 1 GB for 1,000,000: a leak of even a twentieth of
them fails this test."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta

import psutil
import pytest

from parhelia.state import db
from parhelia.state.event_log import write_events
from parhelia.state.store import Store
from parhelia.widgets.detail import ContainerDetailScreen
from parhelia.widgets.events_log import EventsLog
from tests import dashboard_world as world
from tests.test_dashboard import make_app, refreshed, until

EVENTS = 1_000_000
BATCH = 20_000
BOUND_MB = 60
SECOND_HALF_MB = 15


def _batch(start: int, containers: list[str]) -> list[dict]:
    return [
        {
            "ts": world.NOW - timedelta(seconds=1) + timedelta(microseconds=i),
            "type": "container.state" if i % 7 else "budget",
            "level": ("info", "warning", "error")[i % 3],
            "source": "system",
            "message": f"long-run event {i} " + "x" * 60,
            "container_id": containers[i % len(containers)],
            "task_id": None,
            "details": {"n": i},
            "old_value": None,
            "new_value": None,
            "actor": None,
        }
        for i in range(start, start + BATCH)
    ]


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "CACHE_SIZE_KIB", 2048)  # see the module docstring
    s = Store(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


@pytest.mark.slow
@pytest.mark.timeout(900)  # a million rows on a loaded machine
async def test_a_million_events_keep_the_pane_and_the_detail_bounded(store):
    backend = world.seed(store)
    control = world.control(store, backend)
    containers = [c.id for c in store.containers()]
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        cap = log.max_events
        await asyncio.to_thread(app.open_detail, containers[0])  # as the enter key's worker
        await until(pilot, lambda: isinstance(app.screen, ContainerDetailScreen))
        # warm: one batch through the whole path before the baseline
        with store.write() as s:
            write_events(s, _batch(0, containers))
        done = app.refreshes
        app.request_refresh()
        await until(pilot, lambda: app.refreshes > done)
        before = _rss_mb()
        half = None
        for start in range(BATCH, EVENTS, BATCH):
            if half is None and start >= EVENTS // 2:
                half = _rss_mb()
            with store.write() as s:
                write_events(s, _batch(start, containers))
            done = app.refreshes
            app.request_refresh()
            await until(pilot, lambda d=done: app.refreshes > d)
            assert len(log.lines) <= cap and len(log.shown_events) <= cap
        await pilot.pause()
        grown = _rss_mb() - before
        second = _rss_mb() - half
        print(f"resident memory grew {grown:.1f} MB, {second:.1f} MB over the second half")
        screen = app.screen
        assert isinstance(screen, ContainerDetailScreen)
        shown = app._detail
        newest = f"long-run event {EVENTS - 1} "  # the last batch reached the pane
        assert any(newest in ln.text for ln in log.lines), "the pane missed the last batch"
        assert len(log.lines) <= cap and len(log.shown_events) <= cap
    assert shown is not None and len(shown.events) <= 50, len(shown.events)
    assert second < SECOND_HALF_MB, f"grew {second:.0f} MB over the second half: a leak"
    assert grown < BOUND_MB, f"resident memory grew {grown:.0f} MB over {EVENTS:,} events"
