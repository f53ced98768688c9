"""A Modal workspace whose listing never answers, through the unmodified SDK and the CLI: every
command answers within the deadline, records E501, shows the view stale, and the daemon stops on
SIGTERM whatever the listing is doing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.fake_modal import FakeModalServer
from tests.test_incident_modal import modal_cli_env  # noqa: F401 - the fixture

DEADLINE = 1.0
HANG = 120.0  # far past the deadline and the daemon's stop grace
MARGIN = 8.0  # SDK start-up, the store and the interpreter, on a busy 2-core machine


@pytest.fixture
def hung_listing(modal_cli_env, fake_modal: FakeModalServer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PARHELIA_MODAL_TIMEOUT_SECONDS", str(DEADLINE))
    fake_modal.state.hang("SandboxListV2", HANG)
    yield modal_cli_env
    fake_modal.state.reset()  # ends the hung call on the fake's side


def test_reconciler_run_and_tui_once_answer_within_the_deadline_and_go_stale(hung_listing):
    env = hung_listing
    t0 = time.monotonic()
    r = env.run("reconciler", "run")
    assert time.monotonic() - t0 < DEADLINE + MARGIN
    assert r.code != 0 and "E501" in r.out + r.err

    events = env.store().events(types=["reconciler.error"], limit=10)
    assert events and events[0].details["code"] == "E501"

    t0 = time.monotonic()
    once = env.run("tui", "--once", "--no-refresh")
    assert time.monotonic() - t0 < MARGIN
    assert once.code == 1, once.out
    assert "unreachable since" in once.out and "did not answer within" in once.out

    t0 = time.monotonic()
    fresh = env.run("tui", "--once")  # with its own reconcile, which hits the deadline too
    assert time.monotonic() - t0 < DEADLINE + MARGIN
    assert fresh.code == 1 and "unreachable since" in fresh.out
    assert env.store().get_lease() is None  # one-shot commands leave no lease behind


def test_the_daemon_stops_on_sigterm_while_a_listing_hangs(hung_listing, monkeypatch):
    env = hung_listing
    monkeypatch.setenv("PARHELIA_MODAL_TIMEOUT_SECONDS", str(HANG))  # the call itself never ends
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "reconciler", "start", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = env.store()
        deadline = time.monotonic() + 30
        while (lease := store.get_lease()) is None or lease.cycle_started_at is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the daemon never started a cycle"
            time.sleep(0.05)
        time.sleep(0.5)  # let the listing reach the fake and hang there
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    from parhelia.workers.daemon import STOP_GRACE_SECONDS

    assert proc.returncode == 0, err
    assert stopped_in < STOP_GRACE_SECONDS + MARGIN, stopped_in
    doc = json.loads(out)
    assert doc["data"]["stopped"] is True and doc["data"]["clean"] is False
    assert store.get_lease() is None
