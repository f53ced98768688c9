"""SPEC-20's aggregation in the dashboard's events pane (Pilot): heartbeat-derived events at most
one per 10 s per container, the newest of a window shown when it ends with what it stands for;
state changes, errors and completions always, at once."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from parhelia.widgets.events_log import EventsLog
from tests import dashboard_world as world
from tests.test_dashboard import make_app, refreshed

CONTAINERS = ("c-0000a001", "c-0000a002")
SAMPLES = 30  # every 2 s from 59 s before NOW to 1 s before


def _write_chatter(store) -> list[int]:
    """Heartbeat-derived info events for two containers, and the events that must never wait:
    a state change and a warning from the heartbeat poller, an error, a completion."""
    t0 = world.NOW - timedelta(seconds=59)
    for i in range(SAMPLES):
        for cid in CONTAINERS:
            store.add_event(
                "container.heartbeat",
                f"hb {cid} {i}",
                source="heartbeat",
                container_id=cid,
                ts=t0 + timedelta(seconds=2 * i),
            )
    keep = [
        store.add_event(
            "container.state",
            "c-0000a001 running → stopped",
            source="heartbeat",
            container_id=CONTAINERS[0],
            old_value="running",
            new_value="stopped",
            ts=t0 + timedelta(seconds=3),
        ),
        store.add_event(
            "container.health",
            "missed heartbeats",
            level="warning",
            source="heartbeat",
            container_id=CONTAINERS[1],
            ts=t0 + timedelta(seconds=5),
        ),
        store.add_event(
            "heartbeat.failed",
            "exec failed",
            level="error",
            source="heartbeat",
            container_id=CONTAINERS[1],
            ts=t0 + timedelta(seconds=7),
        ),
        store.add_event("task.completed", "task done", task_id="t-0000b001", ts=t0),
    ]
    return [e.id for e in keep]


async def test_heartbeat_chatter_is_folded_per_container_and_nothing_else_waits(store):
    backend = world.seed(store)
    clock = [world.NOW]
    control = world.control(store, backend)
    control.clock = lambda: clock[0]
    keep = _write_chatter(store)
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        log = app.query_one(EventsLog)
        shown = log.shown_events
        assert set(keep) <= {e.id for e in shown}  # at once, never held back
        for cid in CONTAINERS:
            beats = [e for e in shown if e.message.startswith(f"hb {cid} ")]
            assert [e.message.split()[-1] for e in beats] == ["0", "5", "10", "15", "20", "25"]
            gaps = [(b.ts - a.ts).total_seconds() for a, b in pairwise(beats)]
            assert min(gaps) >= 10
        assert sum("(+4 folded)" in line.text for line in log.lines) == 2 * 5

        # the window of the last one shown ends: its newest event comes, standing for the rest
        clock[0] = world.NOW + timedelta(seconds=5)
        n = app.refreshes
        app.request_refresh()
        await refreshed(pilot, app, n)
        shown = log.shown_events
        for cid in CONTAINERS:
            beats = [e for e in shown if e.message.startswith(f"hb {cid} ")]
            assert beats[-1].message == f"hb {cid} {SAMPLES - 1}"
            folded = sum(log.folded(e.id) for e in beats)
            assert len(beats) + folded == SAMPLES  # every sample shown or counted, none lost
        assert sum("(+3 folded)" in line.text for line in log.lines) == 2
