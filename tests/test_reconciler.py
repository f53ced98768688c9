"""The reconciler against a real store and an in-memory backend with programmable faults."""

from __future__ import annotations

import random
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from parhelia.state.bulk import RowChange
from parhelia.state.costs import hourly_rate
from parhelia.state.enums import ContainerState, Health
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.models import Container
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.workers.backends.base import (
    ProbeSample,
    SandboxInfo,
    TerminateResult,
    is_parhelia,
    parhelia_tags,
)
from parhelia.workers.reconciler import Reconciler
from tests.loop_driver import run_loops

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OK_SAMPLE = ProbeSample(10.0, 200.0, 5.0, 20.0, 60.0, True)


class Clock:
    """A mutable fake clock: tests move time, nothing sleeps."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeBackend:
    """The Backend protocol in memory. `fail_list` raises from list(); `pages_then_fail` models a
    listing that returned a page and then failed (the protocol turns it into a raise);
    `probe_fn(sandbox_id)` replaces the probe; `leak_foreign` makes list() return untagged sandboxes
    too, to prove the reconciler filters them itself."""

    name: str = "fake"
    sandboxes: dict[str, SandboxInfo] = field(default_factory=dict)
    fail_list: Exception | None = None
    pages_then_fail: bool = False
    leak_foreign: bool = False
    probe_fn: object = None
    terminated: list[str] = field(default_factory=list)
    list_calls: int = 0
    plane: str | None = None  # the control-plane id `add` tags sandboxes with (the store's)

    def add(
        self, sid, container_id=None, task_id=None, *, created_at=None, running=True, tags=None
    ):
        cid = container_id or f"c-{zlib.crc32(sid.encode()):08x}"
        tags = tags if tags is not None else parhelia_tags(cid, task_id, self.plane)
        self.sandboxes[sid] = SandboxInfo(sid, self.name, tags, created_at, running)
        return self.sandboxes[sid]

    def create(self, spec):  # pragma: no cover - the loops never create
        raise NotImplementedError

    def list(self) -> list[SandboxInfo]:
        self.list_calls += 1
        if self.fail_list is not None:
            raise self.fail_list
        if self.pages_then_fail:
            _first_page = list(self.sandboxes.values())[:1]
            raise ParheliaError("E501", "listing timed out after the first page", ["a", "b"])
        return [s for s in self.sandboxes.values() if self.leak_foreign or is_parhelia(s.tags)]

    def list_all(self) -> list[SandboxInfo]:
        return list(self.sandboxes.values())

    def terminate(self, sandbox_id: str) -> TerminateResult:
        info = self.sandboxes.pop(sandbox_id, None)
        self.terminated.append(sandbox_id)
        return TerminateResult(sandbox_id, 137, already_gone=info is None)

    def probe(self, sandbox_id: str) -> ProbeSample:
        if self.probe_fn is not None:
            return self.probe_fn(sandbox_id)
        return OK_SAMPLE

    def shell_argv(self, sandbox_id: str) -> list[str]:
        return ["sh"]


def make_terminate(store: Store, backends: dict, clock):
    """What ControlPlane.terminate does, minus its task bookkeeping: backend, then the store."""
    calls: list[tuple[str, str, str]] = []

    def terminate(cid: str, actor: str, reason: str):
        calls.append((cid, actor, reason))
        c = store.get_container(cid)
        if c.sandbox_id:
            backends[c.backend].terminate(c.sandbox_id)
        return store.transition(
            cid,
            ContainerState.TERMINATED,
            source="budget" if actor == "budget-guard" else actor,
            actor=actor,
            termination_reason=reason,
            terminated_by=actor,
            now=clock(),
        )

    terminate.calls = calls
    return terminate


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(store):
    return FakeBackend(plane=store.plane_id)


def make_reconciler(store, fake, clock, *, holder="A", settings=None, terminate=None, **kw):
    return Reconciler(
        store,
        {fake.name: fake, **kw.pop("extra", {})},
        settings or Settings(),
        configured_backend=fake.name,
        holder=holder,
        terminate=terminate,
        clock=clock,
        rng=random.Random(7),
    )


def running_row(store, clock, cid, sid, *, backend="fake", **fields):
    values = dict(
        id=cid,
        backend=backend,
        sandbox_id=sid,
        state=ContainerState.RUNNING,
        health=Health.HEALTHY,
        created_at=clock() - timedelta(minutes=1),
        started_at=clock() - timedelta(minutes=1),
        last_heartbeat_at=clock(),
        cost_rate_per_hour=0.19,
        tags=parhelia_tags(cid, None, store.plane_id),
    )
    c = Container(**{**values, **fields})
    return store.add_container(c)


def snapshot(store):
    return {
        c.id: (c.state, c.sandbox_id, c.health, c.termination_reason) for c in store.containers()
    }


# -- the diff ---------------------------------------------------------------------------------


def test_adopts_a_sandbox_whose_row_has_no_sandbox_id(store, fake, clock):
    store.add_container(Container(id="c-00c4a500", backend="fake", created_at=clock()))
    fake.add("sb-1", "c-00c4a500", created_at=clock() - timedelta(seconds=5))

    report = make_reconciler(store, fake, clock).run_once()

    row = store.get_container("c-00c4a500")
    assert (report.adopted, report.orphans, report.error) == (1, 0, None)
    assert (row.sandbox_id, row.state, row.tags["parhelia_container"]) == (
        "sb-1",
        "running",
        "c-00c4a500",
    )
    assert row.started_at == clock() - timedelta(seconds=5)
    kinds = [e.type for e in store.events(container_id="c-00c4a500")]
    assert "container.adopted" in kinds and "container.state" in kinds


def test_orphan_recorded_only_after_grace_with_task_id_and_rate(store, fake, clock):
    fake.add("sb-o", "c-0000105f", "t-lost", created_at=clock() - timedelta(seconds=60))
    fake.add("sb-x", tags={"team": "other"})  # foreign: leaked by a sloppy listing
    fake.leak_foreign = True
    rec = make_reconciler(store, fake, clock)

    first = rec.run_once()
    assert (first.orphans, first.in_grace) == (0, 1)
    assert store.containers() == []

    clock.advance(61)
    second = rec.run_once()
    assert second.orphans == 1
    row = store.get_container("c-0000105f")
    assert (row.state, row.sandbox_id, row.task_id) == ("orphaned", "sb-o", "t-lost")
    assert row.cost_rate_per_hour == pytest.approx(hourly_rate(1.0, 2048))
    assert row.started_at == clock() - timedelta(seconds=121)
    assert row.cost_accrued_usd > 0
    assert store.get_task("t-lost").prompt.startswith("(unknown")
    assert [c.sandbox_id for c in store.containers()] == ["sb-o"]  # the foreign one untouched
    assert store.events(types=["container.orphaned"])[0].level == "warning"

    assert rec.run_once().orphans == 0  # recorded once


def test_orphan_without_created_at_waits_grace_from_first_sight(store, fake, clock):
    fake.add("sb-n", "c-000000aa", created_at=None)
    rec = make_reconciler(store, fake, clock)
    assert rec.run_once().in_grace == 1
    clock.advance(119)
    assert rec.run_once().orphans == 0
    clock.advance(2)
    assert rec.run_once().orphans == 1


def test_orphan_policy_terminate_goes_through_terminate(store, fake, clock):
    settings = Settings()
    settings.policy.orphans = "terminate"
    fake.add("sb-o", "c-000000bb", created_at=clock() - timedelta(hours=2))
    term = make_terminate(store, {"fake": fake}, clock)

    report = make_reconciler(store, fake, clock, settings=settings, terminate=term).run_once()

    assert (report.orphans, report.orphans_terminated) == (1, 1)
    assert term.calls == [("c-000000bb", "reconciler", "orphan")]
    row = store.get_container("c-000000bb")
    assert (row.state, row.termination_reason) == ("terminated", "orphan")
    assert row.cost_accrued_usd == pytest.approx(hourly_rate(1.0, 2048) * 2, rel=1e-3)
    assert fake.terminated == ["sb-o"]


def test_unlisted_row_terminated_external_only_after_a_good_listing(store, fake, clock):
    running_row(store, clock, "c-00000001", "sb-1")
    fake.fail_list = ParheliaError("E502", "unreachable", ["a", "b"])
    rec = make_reconciler(store, fake, clock)

    assert rec.run_once().error_code == "E502"
    assert store.get_container("c-00000001").state == "running"

    fake.fail_list = None
    report = rec.run_once()
    row = store.get_container("c-00000001")
    assert (report.terminated, row.state, row.termination_reason) == (1, "terminated", "external")
    assert row.terminated_at == clock()


def test_drift_corrected_with_old_and_new_values(store, fake, clock):
    store.add_container(
        Container(id="c-0000000d", backend="fake", sandbox_id="sb-d", created_at=clock(), tags={})
    )
    running_row(store, clock, "c-0000000e", "sb-e")
    fake.add("sb-d", "c-0000000d", "t-d", created_at=clock())
    fake.sandboxes["sb-e"] = SandboxInfo(
        "sb-e", "fake", parhelia_tags("c-0000000e", None), clock(), running=False, exit_code=3
    )

    report = make_reconciler(store, fake, clock).run_once()

    assert report.corrections == 2
    d, e = store.get_container("c-0000000d"), store.get_container("c-0000000e")
    assert (d.state, d.tags["parhelia_task"]) == ("running", "t-d")
    assert (e.state, e.exit_code, e.termination_reason) == ("stopped", 3, "exited")
    state_ev = store.events(container_id="c-0000000d", types=["container.state"])[0]
    assert (state_ev.old_value, state_ev.new_value) == ("created", "running")
    drift = store.events(container_id="c-0000000d", types=["container.drift"])[0]
    assert drift.details["old"] == {} and drift.details["new"]["parhelia_task"] == "t-d"
    stop_ev = store.events(container_id="c-0000000e", types=["container.state"])[0]
    assert (stop_ev.old_value, stop_ev.new_value) == ("running", "stopped")


def test_silent_running_container_marked_unhealthy_once(store, fake, clock):
    running_row(store, clock, "c-000000cc", "sb-s")
    fake.add("sb-s", "c-000000cc", created_at=clock())
    rec = make_reconciler(store, fake, clock)
    assert rec.run_once().marked_stale == 0

    clock.advance(301)
    assert rec.run_once().marked_stale == 1
    assert store.get_container("c-000000cc").health == "unhealthy"
    ev = store.events(container_id="c-000000cc", types=["container.health"])
    assert [(e.old_value, e.new_value) for e in ev] == [("healthy", "unhealthy")]
    assert rec.run_once().marked_stale == 0


@pytest.mark.parametrize(
    "fault",
    [
        ParheliaError("E501", "list timed out", ["a", "b"]),
        ParheliaError("E502", "unreachable", ["a", "b"]),
        "pages_then_fail",
        RuntimeError("bug in the SDK"),
    ],
    ids=["timeout", "unavailable", "one-page-then-fail", "unexpected"],
)
def test_failed_listing_changes_nothing_then_recovery_clears_stale(store, fake, clock, fault):
    running_row(store, clock, "c-00000001", "sb-1", last_heartbeat_at=clock() - timedelta(hours=1))
    running_row(store, clock, "c-00000002", "sb-2")
    store.add_container(Container(id="c-00000003", backend="fake", created_at=clock()))
    fake.add("sb-1", "c-00000001", created_at=clock())
    fake.add("sb-2", "c-00000002", created_at=clock())
    fake.add("sb-3", "c-00000003", created_at=clock())
    fake.add("sb-o", "c-000000bb", created_at=clock() - timedelta(hours=1))
    rec = make_reconciler(store, fake, clock)
    before = snapshot(store)
    fake.sandboxes.clear()  # were the failure read as "nothing listed", everything would end
    if fault == "pages_then_fail":
        fake.pages_then_fail = True
    else:
        fake.fail_list = fault

    r1 = rec.run_once()
    clock.advance(30)
    r2 = rec.run_once()

    assert snapshot(store) == before
    assert r1.error and r1.error_code in ("E501", "E502") and r2.error
    assert store.stale_since() == T0
    errors = store.events(types=["reconciler.error"])
    assert len(errors) == 2 and errors[0].level == "error"
    assert 30 <= r1.next_delay_seconds <= 60 < r2.next_delay_seconds <= 120
    assert store.reconciler_view(60).stale_since == T0

    fake.pages_then_fail, fake.fail_list = False, None
    fake.add("sb-1", "c-00000001", created_at=T0)
    clock.advance(30)
    r3 = rec.run_once()
    assert r3.error is None and store.stale_since() is None
    assert r3.next_delay_seconds == 60 and rec.failures == 0
    assert store.get_container("c-00000002").state == "terminated"  # its sandbox really is gone now
    assert (
        store.get_container("c-00000001").health == "unhealthy"
    )  # stale, now that the view is good
    assert store.get_container("c-00000003").state == "created"  # no sandbox ever: nothing to diff


def test_one_failing_backend_leaves_only_its_rows_alone(store, fake, clock):
    other = FakeBackend(name="other", fail_list=ParheliaError("E503", "modal", ["a", "b"]))
    running_row(store, clock, "c-0000000f", "sb-f")
    running_row(store, clock, "c-000000bb", "sb-o", backend="other")
    rec = make_reconciler(store, fake, clock, extra={"other": other})

    report = rec.run_once()

    assert report.backends == ["fake", "other"] and report.error_code == "E503"
    assert store.get_container("c-0000000f").state == "terminated"
    assert store.get_container("c-000000bb").state == "running"


def test_the_stale_banner_names_the_backend_whose_listing_failed(store, fake, clock):
    """A Modal listing failing under a local default says "Modal unreachable", not "Local"."""
    from parhelia.widgets.formatting import stale_banner

    other = FakeBackend(name="modal", fail_list=ParheliaError("E502", "refused", ["a", "b"]))
    running_row(store, clock, "c-000000bb", "sb-o", backend="modal")
    make_reconciler(store, fake, clock, extra={"modal": other}).run_once()

    view = store.dashboard(now=clock(), backend_label="local")
    assert stale_banner(view).startswith("Modal unreachable since")
    assert "modal: refused" in stale_banner(view)


def test_lease_second_holder_is_read_only_until_expiry(store, fake, clock):
    a = make_reconciler(store, fake, clock, holder="A")
    b = make_reconciler(store, fake, clock, holder="B")
    assert a.run_once().acted
    runs = len(store.runs())
    lease = store.get_lease()
    assert lease.holder == "A" and lease.next_run_at == clock() + timedelta(seconds=60)

    report = b.run_once()
    assert report.acted is False and len(store.runs()) == runs and fake.list_calls == 1

    clock.advance(Settings().reconciler.lease_seconds + 1)
    assert b.run_once().acted
    assert store.get_lease().holder == "B"
    assert a.run_once().acted is False


def test_apply_changes_skips_a_row_moved_since_it_was_read(store, clock):
    running_row(store, clock, "c-00000001", "sb-1")
    store.transition(
        "c-00000001", "terminated", source="user", actor="user", termination_reason="user"
    )
    stale_read = RowChange(
        "c-00000001",
        {"state": "stopped"},
        {"state": "running"},
        (make_event("container.state", "would undo the user"),),
    )
    applied = store.apply_changes([stale_read])
    assert applied.changed == frozenset()
    assert store.get_container("c-00000001").state == "terminated"
    assert store.events(types=["container.state"])[0].message != "would undo the user"


# -- the loop runner --------------------------------------------------------------------------


class Calls:
    def __init__(self, log, name, result=None):
        self.log, self.name, self.result = log, name, result

    def __call__(self):
        self.log.append(self.name)
        return self.result


def test_run_loops_schedules_chained_ticks_and_releases_the_lease(store, fake, clock):
    t = {"now": 0.0}
    log: list[str] = []
    stop = threading.Event()
    rec = make_reconciler(store, fake, clock)

    class Poller:
        def run_once(self):
            log.append(f"poll@{t['now']:g}")

    class Guard:
        def check(self):
            log.append(f"guard@{t['now']:g}")
            return []

    real = rec.run_once

    def reconcile():
        log.append(f"reconcile@{t['now']:g}")
        t["now"] += 5  # a cycle takes 5 s: the next is due 60 s after it *ends*
        return real()

    rec.run_once = reconcile

    def wait(seconds):
        t["now"] += seconds
        if t["now"] >= 130:
            stop.set()

    run_loops(rec, Poller(), Guard(), Settings(), stop, monotonic=lambda: t["now"], wait=wait)

    assert log == [
        "reconcile@0",
        "poll@5",
        "guard@5",
        "poll@35",
        "guard@35",
        "reconcile@65",
        "poll@70",
        "guard@70",
        "poll@100",
        "guard@100",
    ]
    assert store.get_lease() is None


def test_run_loops_standby_does_not_poll_and_backs_off_on_errors(store, fake, clock):
    store.acquire_lease("other-process", 3600, now=clock())
    fake.fail_list = ParheliaError("E502", "unreachable", ["a", "b"])
    rec = make_reconciler(store, fake, clock, holder="A")
    stop = threading.Event()
    t = {"now": 0.0}
    waits: list[float] = []
    polled: list[str] = []

    class Poller:
        def run_once(self):
            polled.append("poll")

    def wait(seconds):
        waits.append(seconds)
        t["now"] += seconds
        if len(waits) == 2:
            stop.set()

    run_loops(rec, Poller(), None, Settings(), stop, monotonic=lambda: t["now"], wait=wait)
    assert polled == [] and waits == [60.0, 60.0]  # standby: lease retried each interval
    assert store.get_lease().holder == "other-process"  # not released: it is not ours


# -- the incident, in memory (the fake-Modal replay lives in test_incident_replay.py) ---------


@pytest.mark.parametrize("policy", ["flag", "terminate"])
def test_incident_shape_25_unrecorded_sandboxes_through_the_control_plane(
    store, fake, clock, policy
):
    from parhelia.workers.control import ControlPlane

    for i in range(25):
        fake.add(
            f"sb-{i:02d}",
            f"c-000001{i:02x}",
            f"t-inc{i:02d}",
            created_at=clock() - timedelta(hours=11),
        )
    fake.add("sb-foreign", tags={"owner": "someone-else"}, created_at=clock() - timedelta(hours=11))
    settings = Settings()
    settings.policy.orphans = policy
    cp = ControlPlane(
        store, settings, default_backend="fake", backends={"fake": fake}, clock=clock, holder="A"
    )

    report = cp.refresh_once()

    rate = hourly_rate(1.0, 2048)
    assert (report.listed, report.orphans) == (25, 25)
    rows = store.containers()
    assert len(rows) == 25 and {r.task_id for r in rows} == {f"t-inc{i:02d}" for i in range(25)}
    assert all(r.cost_rate_per_hour == pytest.approx(rate) for r in rows)
    view = cp.dashboard()
    if policy == "flag":
        assert {r.state for r in rows} == {"orphaned"}
        assert view.budget.burn_rate_per_hour == pytest.approx(25 * rate)
        assert view.budget.spent_usd == pytest.approx(25 * 11 * rate, rel=1e-3)
        assert len(fake.sandboxes) == 26
    else:
        assert report.orphans_terminated == 25
        assert {(r.state, r.termination_reason, r.terminated_by) for r in rows} == {
            ("terminated", "orphan", "reconciler")
        }
        assert sum(r.cost_accrued_usd for r in rows) == pytest.approx(25 * 11 * rate, rel=1e-3)
        assert list(fake.sandboxes) == ["sb-foreign"]  # never Parhelia's, never touched
    assert "sb-foreign" in fake.sandboxes
    assert len(store.events(types=["container.orphaned"])) == 25


# -- an orphan's rate (issue 11): real resources when the backend tells them -----------------


def test_orphan_priced_from_the_resources_its_backend_reports(store, fake, clock):
    from parhelia.workers.backends.base import Resources

    info = fake.add("sb-r", "c-0000e5e1", created_at=clock() - timedelta(hours=1))
    fake.sandboxes["sb-r"] = SandboxInfo(
        info.sandbox_id, fake.name, info.tags, info.created_at,
        resources=Resources(4.0, 8192, "a100", None),
    )  # fmt: skip
    make_reconciler(store, fake, clock).run_once()
    row = store.get_container("c-0000e5e1")
    assert (row.cpu_cores, row.memory_mib, row.gpu) == (4.0, 8192, "A100-40GB")
    assert row.cost_rate_per_hour == pytest.approx(hourly_rate(4.0, 8192, "A100-40GB"))
    assert row.meta["rate_source"].startswith("recorded by the backend: cpu=4")

    bad = fake.add(
        "sb-b", "c-0000bad1", created_at=clock() - timedelta(hours=1)
    )  # a garbled record
    fake.sandboxes["sb-b"] = SandboxInfo(
        bad.sandbox_id, fake.name, bad.tags, bad.created_at,
        resources=Resources(2.0, 4096, "V100", None),
    )  # fmt: skip
    make_reconciler(store, fake, clock).run_once()
    assert store.get_container("c-0000bad1").cost_rate_per_hour == pytest.approx(
        hourly_rate(1, 2048)
    )
    views = {v.id: v for v in store.container_views(now=clock())}
    assert not views["c-0000e5e1"].rate_estimated and views["c-0000bad1"].rate_estimated


def test_orphan_without_resources_is_estimated_from_defaults_gpu_included(store, fake, clock):
    from parhelia.widgets.formatting import container_cells, rate_text, totals_line

    settings = Settings()
    settings.defaults.gpu = "h100"  # lower case: once priced at $0
    fake.add("sb-e", "c-0000e571", created_at=clock() - timedelta(hours=1))
    make_reconciler(store, fake, clock, settings=settings).run_once()
    row = store.get_container("c-0000e571")
    assert row.cost_rate_per_hour == pytest.approx(hourly_rate(1.0, 2048, "H100"))
    assert row.cost_rate_per_hour > 3.95
    assert row.gpu == "H100"
    (view,) = store.container_views(now=clock())
    assert view.rate_estimated
    assert view.rate_source.startswith("estimated from [defaults] cpu=1 memory_mib=2048")
    assert any(cell.startswith("~") for cell in container_cells(view, clock()))
    assert "estimated from [defaults]" in totals_line([view])
    assert rate_text(view).startswith("~$") and "estimated from [defaults]" in rate_text(view)
