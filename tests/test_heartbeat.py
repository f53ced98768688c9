"""The heartbeat poller: health from missed heartbeats, one batch per cycle, bounded probing."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from parhelia.state.errors import ParheliaError
from parhelia.state.models import Container, Heartbeat
from parhelia.state.settings import Settings
from parhelia.workers.heartbeat import HeartbeatPoller
from tests.test_reconciler import OK_SAMPLE, Clock, FakeBackend, running_row


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake():
    return FakeBackend()


def poller(store, fake, clock, **heartbeat):
    settings = Settings()
    settings.heartbeat = replace(settings.heartbeat, **heartbeat)
    return HeartbeatPoller(store, {fake.name: fake}, settings, clock=clock)


def failing(_sid):
    raise ParheliaError("E502", "probe failed", ["a", "b"])


def test_health_follows_missed_counts_with_events_only_on_change(store, fake, clock):
    running_row(store, clock, "c-1", "sb-1", health="unknown")
    p = poller(store, fake, clock)
    assert p.run_once().ok == 1
    assert store.get_container("c-1").health == "healthy"
    assert store.events(types=["container.health"]) == []  # unknown → healthy is not news

    fake.probe_fn = failing
    seen = []
    for _ in range(10):
        clock.advance(30)
        report = p.run_once()
        seen.append((store.get_container("c-1").health, report.health_changes))
    assert [h for h, _ in seen] == ["healthy"] + ["degraded"] * 3 + ["unhealthy"] * 5 + ["dead"]
    assert [n for _, n in seen] == [0, 1, 0, 0, 1, 0, 0, 0, 0, 1]
    events = store.events(types=["container.health"], oldest_first=True)
    assert [(e.old_value, e.new_value, e.level) for e in events] == [
        ("healthy", "degraded", "warning"),
        ("degraded", "unhealthy", "warning"),
        ("unhealthy", "dead", "error"),
    ]
    assert store.get_container("c-1").missed_heartbeats == 10

    fake.probe_fn = None
    clock.advance(30)
    p.run_once()
    row = store.get_container("c-1")
    assert (row.health, row.missed_heartbeats, row.last_heartbeat_at) == ("healthy", 0, clock())
    assert store.events(types=["container.health"])[0].old_value == "dead"


def test_thresholds_are_configurable(store, fake, clock):
    running_row(store, clock, "c-1", "sb-1")
    fake.probe_fn = failing
    p = poller(store, fake, clock, degraded_missed=1, unhealthy_missed=2, dead_missed=3)
    healths = []
    for _ in range(3):
        p.run_once()
        healths.append(store.get_container("c-1").health)
    assert healths == ["degraded", "unhealthy", "dead"]


def test_agent_gone_counts_as_missed_but_the_reading_is_kept(store, fake, clock):
    running_row(store, clock, "c-1", "sb-1", last_heartbeat_at=clock() - timedelta(seconds=30))
    fake.probe_fn = lambda _sid: replace(OK_SAMPLE, agent_alive=False)
    report = poller(store, fake, clock).run_once()
    row = store.get_container("c-1")
    assert (report.ok, row.missed_heartbeats) == (1, 1)
    assert row.last_heartbeat_at == clock() - timedelta(seconds=30)
    [hb] = store.heartbeat_history("c-1")
    assert hb.agent_alive is False and hb.cpu_percent == OK_SAMPLE.cpu_percent


def test_one_batch_of_samples_only_for_running_containers(store, fake, clock):
    for i in range(5):
        running_row(store, clock, f"c-{i}", f"sb-{i}")
    store.add_container(Container(id="c-new", backend="fake"))  # created: nothing to probe yet
    report = poller(store, fake, clock).run_once()
    assert (report.probed, report.ok, report.failed) == (5, 5, 0)
    store.merge_heartbeats()  # on SQLite a cycle's samples wait in heartbeats_staged
    with store.read() as s:
        assert len(list(s.scalars(select(Heartbeat)))) == 5


def test_prunes_heartbeats_older_than_retention(store, fake, clock):
    running_row(store, clock, "c-1", "sb-1")
    old = {"container_id": "c-1", "ts": clock() - timedelta(hours=25), "agent_alive": True}
    recent = {**old, "ts": clock() - timedelta(hours=23)}
    store.record_heartbeats([old, recent])
    report = poller(store, fake, clock).run_once()
    assert report.pruned == 1
    assert len(store.heartbeat_history("c-1")) == 2  # the recent one and this cycle's


def test_concurrency_is_bounded(store, fake, clock):
    for i in range(10):
        running_row(store, clock, f"c-{i}", f"sb-{i}")
    cond = threading.Condition()
    state = {"now": 0, "max": 0}

    def probe(_sid):
        with cond:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            cond.notify_all()
            # hold until the pool is full (or a short deadline when fewer remain)
            cond.wait_for(lambda: state["now"] >= 3, timeout=0.1)
            state["now"] -= 1
        return OK_SAMPLE

    fake.probe_fn = probe
    report = poller(store, fake, clock, concurrency=3).run_once()
    assert report.ok == 10 and state["max"] == 3


def test_the_pool_is_handed_at_most_concurrency_probes_at_a_time(store, fake, clock, monkeypatch):
    """Probes are handed out as others finish, not all queued at once: with every row queued,
    each wait and each expiry check went over all of them (10,000 rows: minutes of CPU)."""
    from parhelia.workers import heartbeat

    for i in range(40):
        running_row(store, clock, f"c-{i}", f"sb-{i}")
    outstanding = {"now": 0, "max": 0}
    lock = threading.Lock()

    class CountingPool(heartbeat.ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            def counted():
                try:
                    return fn(*args, **kwargs)
                finally:
                    with lock:
                        outstanding["now"] -= 1

            with lock:
                outstanding["now"] += 1
                outstanding["max"] = max(outstanding["max"], outstanding["now"])
            return super().submit(counted)

    monkeypatch.setattr(heartbeat, "ThreadPoolExecutor", CountingPool)
    report = poller(store, fake, clock, concurrency=4).run_once()
    assert report.ok == 40 and outstanding["max"] <= 4


def test_rows_not_yet_probed_when_the_cycle_ends_count_as_missed(store, fake, clock):
    """Every probe hangs: the first wave times out, the rows behind it are never probed, and the
    cycle still ends by its deadline with each row counted as missed."""
    for i in range(6):
        running_row(store, clock, f"c-{i}", f"sb-{i}")
    release = threading.Event()
    fake.probe_fn = lambda _sid: (release.wait(5), OK_SAMPLE)[1]
    try:
        report = poller(store, fake, clock, concurrency=2, probe_timeout_seconds=0.05).run_once()
    finally:
        release.set()
    assert (report.probed, report.ok, report.timed_out) == (6, 0, 6)
    assert report.duration_ms < 3000
    assert {store.get_container(f"c-{i}").missed_heartbeats for i in range(6)} == {1}


def test_a_probe_that_hangs_times_out_and_counts_as_missed(store, fake, clock):
    running_row(store, clock, "c-hang", "sb-hang")
    running_row(store, clock, "c-ok", "sb-ok")
    release = threading.Event()

    def probe(sid):
        if sid == "sb-hang":
            release.wait(5)
        return OK_SAMPLE

    fake.probe_fn = probe
    try:
        report = poller(store, fake, clock, probe_timeout_seconds=0.05).run_once()
    finally:
        release.set()
    assert (report.ok, report.failed, report.timed_out) == (1, 1, 1)
    assert report.duration_ms < 2000
    hang, ok = store.get_container("c-hang"), store.get_container("c-ok")
    assert (hang.missed_heartbeats, hang.state) == (1, "running")
    assert ok.missed_heartbeats == 0


def test_prunes_events_and_reconciler_runs_by_their_retention(store, fake, clock):
    from parhelia.state.models import Event, ReconcilerRun

    now = clock()
    store.add_events(
        [Event(ts=now - timedelta(days=d), type="note") for d in (31, 29)]  # default: 30 days
    )
    for d in (8, 6):  # default: 7 days
        store.record_run(ReconcilerRun(started_at=now - timedelta(days=d), holder="h"))
    report = poller(store, fake, clock).run_once()
    assert (report.pruned_events, report.pruned_runs) == (1, 1)
    assert [e.ts for e in store.events(types=["note"])] == [now - timedelta(days=29)]
    assert [r.started_at for r in store.runs()] == [now - timedelta(days=6)]

    settings = Settings()
    settings.retention = replace(settings.retention, events_days=1, runs_days=1)
    again = HeartbeatPoller(store, {fake.name: fake}, settings, clock=clock).run_once()
    assert (again.pruned_events, again.pruned_runs) == (1, 1)


def test_history_is_pruned_once_a_minute_and_each_cycle_while_a_backlog_drains(
    store, fake, clock, monkeypatch
):
    """History ages out in hours and days: pruning it each cycle was a write transaction a second
    of its own (and a signal to every dashboard). A poller prunes on its first cycle, then once
    PRUNE_SECONDS have passed, or on every cycle while a full batch says a backlog is left."""
    from parhelia.state.models import Event
    from parhelia.workers import heartbeat

    monkeypatch.setattr(heartbeat, "PRUNE_BATCH", 3)
    running_row(store, clock, "c-1", "sb-1")
    old = lambda n: [Event(ts=clock() - timedelta(days=31), type="note") for _ in range(n)]  # noqa: E731
    store.add_events(old(1))
    p = poller(store, fake, clock)
    assert p.run_once().pruned_events == 1  # its first cycle
    store.add_events(old(1))
    clock.advance(30)
    assert p.run_once().pruned_events == 0  # within the minute: left for later
    clock.advance(30)
    assert p.run_once().pruned_events == 1  # a minute on
    store.add_events(old(7))
    clock.advance(60)
    drained = [p.run_once().pruned_events for _ in range(4)]  # no time passes between them
    assert drained == [3, 3, 1, 0]  # a full batch: the next cycle prunes again, until one is not
    assert store.events(types=["note"]) == []


def test_a_pass_given_seconds_probes_the_longest_unheard_first_and_leaves_the_rest(
    store, fake, clock
):
    """A one-shot view (`tui --once`, `status`) gives its probes a few seconds: the sandboxes
    heard from longest ago go first, and those not answered by then are left as they were (not
    counted as missed: nothing was learned of them), for the loops' next full pass."""
    for i in range(6):
        running_row(store, clock, f"c-{i}", f"sb-{i}")
        # c-0 never heard from; then the lower the number the longer ago
        heard = clock() - timedelta(minutes=10 - i) if i else None
        store.update_container(f"c-{i}", last_heartbeat_at=heard)
    store.update_container("c-5", missed_heartbeats=3)
    order: list[str] = []
    release = threading.Event()

    def probe(sid):
        order.append(sid)
        if sid in ("sb-2", "sb-3", "sb-4", "sb-5"):  # these never answer in time
            release.wait(5)
        return OK_SAMPLE

    fake.probe_fn = probe
    try:
        report = poller(store, fake, clock, concurrency=1).run_once(within=0.3)
    finally:
        release.set()
    assert order[:3] == ["sb-0", "sb-1", "sb-2"]
    assert (report.probed, report.ok, report.skipped, report.timed_out) == (2, 2, 4, 0)
    assert report.duration_ms < 3000
    assert store.get_container("c-0").last_heartbeat_at == clock()
    assert store.get_container("c-5").missed_heartbeats == 3  # left as it was
    assert {store.get_container(f"c-{i}").missed_heartbeats for i in (2, 3, 4)} == {0}
    # a pass without a bound probes them all
    full = poller(store, fake, clock, concurrency=6).run_once()
    assert (full.probed, full.ok, full.skipped) == (6, 6, 0)
