"""The loop runner's rules (workers/loops.py), the lease that follows the living, backend deadlines
and orphans within their grace: against a real store and the in-memory backend of test_reconciler."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import psutil
import pytest

from parhelia.state.process_owner import ProcessOwner, this_process
from parhelia.state.settings import Settings
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.deadline import DeadlineBackend
from parhelia.workers.control import ControlPlane
from tests.loop_driver import run_loops
from tests.test_reconciler import T0, Clock, FakeBackend, make_reconciler


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(store):
    return FakeBackend(plane=store.plane_id)


class Poller:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def run_once(self):
        self.log.append("poll")


class Guard:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def check(self):
        self.log.append("guard")
        return []


def test_a_holder_that_lost_the_lease_runs_no_heartbeat_or_budget_pass(store, fake, clock):
    """The lease is taken by another process right after this one's reconcile (it was slow, or
    its database clock jumped): the passes due after it must not run."""
    rec = make_reconciler(store, fake, clock, holder="A")
    real = rec.run_once
    log: list[str] = []
    stop = threading.Event()
    t = {"now": 0.0}

    def reconcile():
        report = real()
        store.release_lease("A")
        assert store.acquire_lease("B", 3600, now=clock())
        return report

    rec.run_once = reconcile

    def wait(seconds):
        t["now"] += seconds
        clock.advance(seconds)
        if t["now"] >= 50:
            stop.set()

    run_loops(rec, Poller(log), Guard(log), Settings(), stop, monotonic=lambda: t["now"], wait=wait)
    assert log == []
    assert store.get_lease().holder == "B"


def test_the_lease_is_renewed_well_inside_its_length_while_listing_backs_off(store, fake, clock):
    from parhelia.state.errors import ParheliaError

    fake.fail_list = ParheliaError("E502", "unreachable", ["a", "b"])
    rec = make_reconciler(store, fake, clock, holder="A")
    settings = Settings()
    lease_seconds = settings.reconciler.lease_seconds
    stop = threading.Event()
    t = {"now": 0.0}
    margins: list[float] = []

    def wait(seconds):
        lease = store.get_lease()
        assert lease is not None and lease.holder == "A"
        # when this wait ends, at least a third of the lease must still be left
        margins.append((lease.expires_at - clock()).total_seconds() - seconds)
        t["now"] += seconds
        clock.advance(seconds)
        if t["now"] >= 3000:
            stop.set()

    run_loops(rec, Poller([]), Guard([]), settings, stop, monotonic=lambda: t["now"], wait=wait)
    assert rec.failures >= 4  # the backoff grew past the lease's length
    assert min(margins) >= lease_seconds / 3 - 1e-6, min(margins)


def test_a_one_shot_pass_releases_the_lease(store, fake, clock):
    cp = ControlPlane(
        store, Settings(), default_backend="fake", backends={"fake": fake}, clock=clock, holder="A"
    )
    report = cp.refresh_once()
    assert report.acted
    assert store.get_lease() is None  # a cron `tui --once` leaves nothing for the next one


@pytest.fixture
def dead_owner() -> ProcessOwner:
    """A process of this host that ran and is gone, named by pid and start time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    owner = ProcessOwner(this_process().host, proc.pid, psutil.Process(proc.pid).create_time())
    proc.communicate(b"")
    return owner


def test_a_dead_holder_on_this_host_is_taken_over_at_once(store, fake, clock, dead_owner):
    assert store.acquire_lease("gone:1", 180, now=clock(), owner=dead_owner)
    assert store.reconciler_view(60, now=clock()).lease_dead
    report = make_reconciler(store, fake, clock, holder="B").run_once()
    assert report.acted
    assert store.get_lease().holder == "B"


def test_a_live_holder_keeps_its_lease(store, fake, clock):
    assert store.acquire_lease("alive:1", 180, now=clock(), owner=this_process())
    assert not store.reconciler_view(60, now=clock()).lease_dead
    assert not make_reconciler(store, fake, clock, holder="B").run_once().acted


def test_reconciler_status_says_a_dead_holder_is_dead(parhelia_env, dead_owner):
    store = parhelia_env.store()
    assert store.acquire_lease("gone-host:1", 3600, owner=dead_owner)
    out = parhelia_env.run("reconciler", "status").out
    assert "held by gone-host:1 (dead)" in out and "running (" not in out
    assert parhelia_env.ok("reconciler", "status")["running"] is False


def test_a_cycle_running_past_its_interval_reads_stale(store):
    assert store.acquire_lease("d:1", 3600, now=T0, interval_seconds=60, in_cycle=True)
    assert not store.reconciler_view(60, now=T0 + timedelta(seconds=30)).stale
    late = store.reconciler_view(60, now=T0 + timedelta(seconds=90))
    assert late.stale and late.stale_since == T0
    assert "reconcile cycle has run 90 s" in late.last_error
    assert store.acquire_lease("d:1", 3600, now=T0 + timedelta(seconds=91), in_cycle=False)
    assert not store.reconciler_view(60, now=T0 + timedelta(seconds=92)).stale


def test_once_and_status_show_an_overrunning_cycle_as_stale(parhelia_env):
    store = parhelia_env.store()
    began = utcnow() - timedelta(seconds=200)
    assert store.acquire_lease("busy:1", 3600, now=began, interval_seconds=60, in_cycle=True)
    r = parhelia_env.run("tui", "--once", "--no-refresh")
    assert r.code == 1, r.out
    assert "unreachable since" in r.out and "reconcile cycle has run" in r.out
    assert parhelia_env.ok("reconciler", "status")["stale"] is True


# -- orphans within their grace -------------------------------------------------------------


def _cycles_until_orphaned(rec, clock, limit: int = 20):
    for _ in range(limit):
        report = rec.run_once()
        if report.orphans:
            return clock()
        clock.advance(rec.next_delay())
    raise AssertionError("never recorded")


def test_an_orphan_without_creation_time_is_recorded_within_the_grace_of_its_appearance(
    store, fake, clock
):
    """Modal's listing has no creation time: the sandbox appeared after the previous listing, so
    the grace counts from that listing's start, and the next cycle is due when the grace ends."""
    rec = make_reconciler(store, fake, clock)
    rec.run_once()  # the listing that does not show it yet
    clock.advance(1)
    appeared = clock()
    fake.add("sb-new", "c-0000ae01")
    clock.advance(rec.next_delay() - 1)
    recorded = _cycles_until_orphaned(rec, clock)
    grace = Settings().reconciler.orphan_grace_seconds
    assert (recorded - appeared).total_seconds() <= grace


def test_an_orphan_with_creation_time_is_recorded_as_its_grace_ends(store, fake, clock):
    rec = make_reconciler(store, fake, clock)
    rec.run_once()
    clock.advance(30)
    fake.add("sb-new", "c-0000ae01", created_at=clock())
    born = clock()
    clock.advance(rec.next_delay() - 30)
    recorded = _cycles_until_orphaned(rec, clock)
    grace = Settings().reconciler.orphan_grace_seconds
    assert (recorded - born).total_seconds() <= grace + 1.0  # MIN_DELAY_SECONDS at most


def test_a_first_sighting_with_no_earlier_listing_still_waits_the_whole_grace(store, fake, clock):
    fake.add("sb-new", "c-0000ae01")
    rec = make_reconciler(store, fake, clock)
    assert rec.run_once().in_grace == 1
    clock.advance(Settings().reconciler.orphan_grace_seconds - 1)
    assert rec.run_once().orphans == 0


# -- deadlines ------------------------------------------------------------------------------


class HangingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def list(self):
        self.release.wait(30)
        return super().list()


def test_a_hung_listing_is_e501_an_event_and_a_stale_view(store, clock):
    hung = HangingBackend()
    backend = DeadlineBackend(hung, timeout=0.2)
    rec = make_reconciler(store, backend, clock)
    try:
        t0 = time.monotonic()
        report = rec.run_once()
        assert time.monotonic() - t0 < 5
        assert report.error_code == "E501" and "did not answer within 0.2 s" in report.error
        # the same listing is still hanging: the next cycle does not start another
        again = rec.run_once()
        assert again.error_code == "E501" and "previous call" in again.error
    finally:
        hung.release.set()
    (event,) = store.events(types=["reconciler.error"], limit=1)
    assert event.details["code"] == "E501"
    assert store.reconciler_view(60, now=clock()).stale
    assert store.get_lease().cycle_started_at is None  # the cycle ended, even though it failed


def test_heartbeat_and_budget_passes_go_on_while_the_listing_hangs(store):
    """Real time: the listing never answers, yet the passes run after one deadline, not after it."""
    from parhelia.workers.loops import LoopRunner

    hung = HangingBackend()
    rec = make_reconciler(store, DeadlineBackend(hung, timeout=0.2), utcnow)
    polled, guarded = threading.Event(), threading.Event()

    class SignallingPoller:
        def run_once(self):
            polled.set()

    class SignallingGuard:
        def check(self):
            guarded.set()
            return []

    runner = LoopRunner(rec, SignallingPoller(), SignallingGuard(), Settings())
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    try:
        thread.start()
        assert polled.wait(10) and guarded.wait(10)
        assert not hung.release.is_set()  # the listing was still hanging all along
    finally:
        stop.set()
        runner.kick()
        thread.join(10)
        hung.release.set()
    assert not thread.is_alive()
    assert store.get_lease() is None
