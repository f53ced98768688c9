"""The incident replay against the fake Modal API (tests/fake_modal.py), through the unmodified SDK.

25 sandboxes carry Parhelia's tags in Parhelia's app but the store has no row for any of them (the
dispatcher died), and one sandbox in the same app is someone else's. The reconciler must record the
25 as orphans with a cost rate and an event each, `parhelia containers orphans` must list exactly
them, auto-terminate must stop exactly them on the (fake) cloud, and the foreign one is never
touched. A listing that fails on its second page changes nothing and marks the view stale until a
good cycle.

The SDK's listing does not expose a sandbox's creation time (`ModalBackend` reports
`created_at=None`), so the orphan grace is counted from when this reconciler first saw the sandbox:
the first cycle holds all 25 in grace and the next one, past the grace, records them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from grpclib import Status

from parhelia.state.costs import hourly_rate
from parhelia.state.settings import ModalSettings, Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.control import ControlPlane
from tests.fake_modal import TOKEN_ID, TOKEN_SECRET, FakeModalServer, FakeSandbox

APP = "parhelia-incident"
LOST = 25
GRACE = Settings().reconciler.orphan_grace_seconds  # 120 s unless the defaults change
RATE = hourly_rate(1.0, 2048)  # the orphan rate: [defaults] cpu=1, memory_mib=2048, no gpu
TERMINATED = 3  # api_pb2.GenericResult.GENERIC_STATUS_TERMINATED


class Clock:
    """An explicit clock, an hour in the past so the CLI's real `now` is later than every cycle."""

    def __init__(self) -> None:
        self.now = utcnow() - timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def modal_cli_env(parhelia_env, fake_modal: FakeModalServer, monkeypatch):
    """The `parhelia_env` world with the CLI pointed at the fake: backend modal, app APP, the fake's
    URL and credentials in the environment, and the SDK's cached env client fresh for this test
    (closed at teardown, so no later test reuses a client bound to this module's fake)."""
    from modal.client import _Client

    monkeypatch.setenv("PARHELIA_BACKEND", "modal")
    monkeypatch.setenv("PARHELIA_MODAL_APP", APP)
    monkeypatch.setenv("MODAL_SERVER_URL", fake_modal.url)
    monkeypatch.setenv("MODAL_TOKEN_ID", TOKEN_ID)
    monkeypatch.setenv("MODAL_TOKEN_SECRET", TOKEN_SECRET)
    monkeypatch.setattr(_Client, "_client_from_env", None)
    yield parhelia_env
    if _Client._client_from_env is not None:
        import modal

        modal.Client.from_env().close()


@pytest.fixture
def incident(fake_modal: FakeModalServer, modal_cli_env):
    """The 25 unrecorded sandboxes tagged with this store's control plane, and the foreign one,
    started behind the store's back."""
    plane = modal_cli_env.store().plane_id
    made = fake_modal.state.start_behind_back(APP, tagged=LOST, foreign=1, plane=plane)
    lost, (foreign,) = made[:LOST], made[LOST:]
    assert all(s.tags.get("parhelia") == "1" for s in lost) and "parhelia" not in foreign.tags
    return lost, foreign


def control_plane(store: Store, fake: FakeModalServer, clock: Clock) -> ControlPlane:
    settings = Settings()
    settings.modal.app = APP
    backend = ModalBackend(ModalSettings(app=APP), client=fake.shared_client)
    return ControlPlane(
        store,
        settings,
        default_backend="modal",
        backends={"modal": backend},
        clock=clock,
        holder="incident-test",
    )


def record_orphans(cp: ControlPlane, clock: Clock) -> None:
    """Two cycles: the first sees the 25 and holds them in grace, the next records them."""
    first = cp.refresh_once()
    assert first.acted and first.error is None, first.summary()
    assert (first.listed, first.in_grace, first.orphans) == (LOST, LOST, 0)
    assert cp.store.containers() == []

    clock.advance(GRACE + 1)
    second = cp.refresh_once()
    assert second.error is None, second.summary()
    assert (second.listed, second.orphans, second.in_grace) == (LOST, LOST, 0)
    assert second.orphans_terminated == 0  # policy "flag": shown, not stopped


def by_sandbox(store: Store) -> dict:
    return {c.sandbox_id: c for c in store.containers()}


def assert_foreign_untouched(fake: FakeModalServer, store: Store, foreign: FakeSandbox) -> None:
    assert fake.state.sandboxes[foreign.sandbox_id].running
    assert fake.state.sandboxes[foreign.sandbox_id].tags == {"team": "other"}
    assert foreign.sandbox_id not in by_sandbox(store)
    terminated = {r.sandbox_id for r in fake.state.requests.get("SandboxTerminateV2", [])}
    assert foreign.sandbox_id not in terminated


# -- the replay -------------------------------------------------------------------------------


def test_incident_replay_records_lists_and_terminates_the_25_never_the_foreign_one(
    modal_cli_env, fake_modal, incident
):
    lost, foreign = incident
    store = modal_cli_env.store()
    clock = Clock()
    cp = control_plane(store, fake_modal, clock)

    record_orphans(cp, clock)
    recorded_at = clock()
    born = recorded_at - timedelta(seconds=GRACE + 1)  # first seen, one cycle earlier

    rows = by_sandbox(store)
    assert set(rows) == {s.sandbox_id for s in lost}
    for sb in lost:
        c = rows[sb.sandbox_id]
        assert c.state == "orphaned" and c.backend == "modal"
        assert c.id == sb.tags["parhelia_container"] and c.task_id == sb.tags["parhelia_task"]
        assert c.cost_rate_per_hour == pytest.approx(RATE)
        assert c.cost_accrued_usd == pytest.approx(RATE * (GRACE + 1) / 3600, rel=1e-6)
        assert (c.cpu_cores, c.memory_mib) == (1.0, 2048)
        assert "estimated from [defaults]" in c.meta["rate_source"]
        assert c.tags == sb.tags
        assert c.started_at.replace(tzinfo=None) == born.replace(tzinfo=None)
        assert store.get_task(c.task_id).status == "running"

    orphaned = store.events(types=["container.orphaned"], limit=1000)
    assert len(orphaned) == LOST
    assert {e.container_id: e.details["sandbox_id"] for e in orphaned} == {
        c.id: sid for sid, c in rows.items()
    }
    assert all(e.actor == "reconciler" and e.level == "warning" for e in orphaned)
    assert all(e.details["rate_per_hour"] == pytest.approx(RATE) for e in orphaned)
    assert cp.dashboard().budget.burn_rate_per_hour == pytest.approx(LOST * RATE)
    assert all(s.running for s in lost)  # "flag" never stops anything
    assert_foreign_untouched(fake_modal, store, foreign)

    # `parhelia containers orphans --json`, in-process, over the same SQLite file.
    listed = modal_cli_env.ok("containers", "orphans")
    assert len(listed) == LOST
    assert {(o["id"], o["sandbox_id"]) for o in listed} == {(c.id, sid) for sid, c in rows.items()}
    assert all(o["cost_rate_per_hour"] == pytest.approx(RATE) for o in listed)
    assert all(o["backend"] == "modal" and o["state"] == "orphaned" for o in listed)

    # Auto-terminate on: the next cycle (the budget guard's pass, as these orphans are not new to
    # the reconciler) stops all 25 on the fake, each with its event.
    cp.settings.policy.orphans = "terminate"
    clock.advance(60)
    report = cp.refresh_once()
    assert report.error is None and report.orphans == 0

    after = by_sandbox(store)
    assert set(after) == set(rows)
    assert {(c.state, c.termination_reason, c.terminated_by) for c in after.values()} == {
        ("terminated", "orphan", "budget-guard")
    }
    for sb in lost:
        state = fake_modal.state.sandboxes[sb.sandbox_id]
        assert not state.running and state.result.status == TERMINATED
    assert fake_modal.state.running(APP) == [fake_modal.state.sandboxes[foreign.sandbox_id]]
    terminate_calls = [r.sandbox_id for r in fake_modal.state.requests["SandboxTerminateV2"]]
    assert sorted(terminate_calls) == sorted(s.sandbox_id for s in lost)  # once each

    ends = store.events(types=["container.state"], limit=1000)
    ends = [e for e in ends if e.new_value == "terminated"]
    assert sorted(e.container_id for e in ends) == sorted(c.id for c in rows.values())
    assert all(e.old_value == "orphaned" and e.actor == "budget-guard" for e in ends)
    assert store.events(types=["container.terminate_failed"]) == []
    assert_foreign_untouched(fake_modal, store, foreign)
    assert modal_cli_env.ok("containers", "orphans") == []

    # And nothing more happens: a later cycle lists only the foreign sandbox, which it ignores.
    clock.advance(60)
    quiet = cp.refresh_once()
    assert (quiet.error, quiet.listed, quiet.orphans, quiet.terminated) == (None, 0, 0, 0)
    assert_foreign_untouched(fake_modal, store, foreign)
    assert fake_modal.state.unimplemented == []


def test_listing_that_fails_on_page_two_changes_nothing_and_goes_stale_until_a_good_cycle(
    modal_cli_env, fake_modal, incident
):
    lost, foreign = incident
    store = modal_cli_env.store()
    clock = Clock()
    cp = control_plane(store, fake_modal, clock)
    record_orphans(cp, clock)
    before = {c.id: (c.state, c.terminated_at) for c in store.containers()}
    last_event_id = store.events(limit=1)[0].id
    assert store.stale_since() is None

    # 25 tagged sandboxes are 5 pages of 5: page one is served, every later call fails.
    pages_before = len(fake_modal.state.requests["SandboxListV2"])
    fault = fake_modal.state.fail("SandboxListV2", Status.UNAVAILABLE, after=1)
    failed_at = clock.advance(60)
    report = cp.refresh_once()

    assert fault.fired >= 1 and fault.seen > 1  # page one went through, page two failed
    assert len(fake_modal.state.requests["SandboxListV2"]) - pages_before > 1
    assert report.acted and report.error_code == "E502", report.summary()
    assert (report.terminated, report.orphans, report.corrections) == (0, 0, 0)
    assert {c.id: (c.state, c.terminated_at) for c in store.containers()} == before
    new_events = store.events(after_id=last_event_id, limit=1000)
    assert [e.type for e in new_events] == ["reconciler.error"]
    (err,) = new_events
    assert err.level == "error" and err.details == {"backend": "modal", "code": "E502"}
    assert "no container was changed" in err.message
    assert store.stale_since().replace(tzinfo=None) == failed_at.replace(tzinfo=None)
    assert all(s.running for s in lost)

    # Still failing: still nothing changed, and stale since the first failure.
    clock.advance(60)
    again = cp.refresh_once()
    assert again.error_code == "E502"
    assert {c.id: (c.state, c.terminated_at) for c in store.containers()} == before
    assert store.stale_since().replace(tzinfo=None) == failed_at.replace(tzinfo=None)
    assert len(store.events(types=["reconciler.error"])) == 2

    # The fault clears: a normal cycle, the same 25 orphans, and the view is fresh again.
    fake_modal.state.clear_faults()
    clock.advance(60)
    good = cp.refresh_once()
    assert good.error is None, good.summary()
    assert (good.listed, good.orphans, good.terminated, good.in_grace) == (LOST, 0, 0, 0)
    assert store.stale_since() is None
    assert {c.id: (c.state, c.terminated_at) for c in store.containers()} == before
    assert len(store.events(types=["container.orphaned"], limit=1000)) == LOST
    assert_foreign_untouched(fake_modal, store, foreign)


# -- the same through the CLI -------------------------------------------------------------------


def test_cli_reconciler_run_reaches_the_fake_and_terminates_new_orphans_by_policy(
    modal_cli_env, fake_modal, incident, monkeypatch
):
    """`parhelia reconciler run` builds its own ModalBackend from the environment. Each CLI process
    is a new reconciler that has never seen the sandboxes, so with the default grace it would only
    hold them in grace; the grace is set to 0 here to record them in one run."""
    lost, foreign = incident
    monkeypatch.setenv("PARHELIA_RECONCILER_ORPHAN_GRACE_SECONDS", "0")
    monkeypatch.setenv("PARHELIA_POLICY_ORPHANS", "terminate")

    report = modal_cli_env.ok("reconciler", "run")
    assert report["backends"] == ["modal"] and report["error"] is None
    assert (report["listed"], report["orphans"], report["orphans_terminated"]) == (LOST, LOST, LOST)

    store = modal_cli_env.store()
    rows = by_sandbox(store)
    assert set(rows) == {s.sandbox_id for s in lost}
    assert {(c.state, c.termination_reason, c.terminated_by) for c in rows.values()} == {
        ("terminated", "orphan", "reconciler")
    }
    assert all(c.cost_rate_per_hour == pytest.approx(RATE) for c in rows.values())
    assert len(store.events(types=["container.orphaned"], limit=1000)) == LOST
    ends = [
        e
        for e in store.events(types=["container.state"], limit=1000)
        if e.new_value == "terminated"
    ]
    assert sorted(e.container_id for e in ends) == sorted(c.id for c in rows.values())
    assert all(not s.running for s in lost)
    assert_foreign_untouched(fake_modal, store, foreign)
    assert modal_cli_env.ok("containers", "orphans") == []


@pytest.mark.usefixtures("incident")
def test_a_fresh_process_records_modal_orphans_older_than_the_grace(fake_modal, modal_cli_env):
    store = modal_cli_env.store()
    clock = Clock()
    control_plane(store, fake_modal, clock).refresh_once()  # one process: first sight
    clock.advance(3600)  # an hour later, another process, as each CLI invocation is
    report = control_plane(store, fake_modal, clock).refresh_once()
    assert report.orphans == LOST


def test_cli_reconciler_run_with_terminate_policy_stops_already_recorded_orphans(
    modal_cli_env, fake_modal, incident, monkeypatch
):
    lost, _ = incident
    monkeypatch.setenv("PARHELIA_RECONCILER_ORPHAN_GRACE_SECONDS", "0")
    assert modal_cli_env.ok("reconciler", "run")["orphans"] == LOST
    assert len(modal_cli_env.ok("containers", "orphans")) == LOST

    monkeypatch.setenv("PARHELIA_POLICY_ORPHANS", "terminate")
    modal_cli_env.ok("reconciler", "run")
    assert modal_cli_env.ok("containers", "orphans") == []
    assert all(not s.running for s in lost)
