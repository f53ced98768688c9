"""`parhelia status` while a reconciler is watching (issue 16's start-up): the live holder's view
is what a one-shot pass would show (the pass could not take the lease), so status reads it
without SQLAlchemy; with no live, fresh, healthy holder it runs the pass itself."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from parhelia.state.views import ReconcilerView

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def view(**given) -> ReconcilerView:
    fields = {
        "last_run_at": NOW - timedelta(seconds=10),
        "next_run_at": NOW + timedelta(seconds=20),
        "interval_seconds": 30.0,
        "lease_holder": "host:123",
        "lease_expires_at": NOW + timedelta(seconds=170),
        "last_error": None,
        "stale_since": None,
        "last_counts": {"duration_ms": 4000.0},
    }
    return ReconcilerView(**{**fields, **given})


@pytest.mark.parametrize(
    ("given", "watched"),
    [
        ({}, True),
        # its interval, the pass's own 4 s and a second: then it is late
        ({"last_run_at": NOW - timedelta(seconds=35)}, True),
        ({"last_run_at": NOW - timedelta(seconds=35.5)}, False),
        ({"last_run_at": None}, False),  # never ran
        ({"lease_holder": None, "lease_expires_at": None}, False),  # nobody watches
        ({"lease_expires_at": NOW}, False),  # expired
        ({"lease_dead": True}, False),  # its process is gone from this host
        ({"stale_since": NOW - timedelta(seconds=50), "last_error": "listing failed"}, False),
    ],
)
def test_a_view_is_watched_only_by_a_live_fresh_healthy_holder(given, watched):
    assert view(**given).watched(NOW) is watched


PROBE = """
import sys
from parhelia.app.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print('SQLALCHEMY' if 'sqlalchemy' in sys.modules else 'BARE', code, file=sys.stderr)
"""


def status(env, *args: str) -> tuple[bool, str]:
    """Whether `parhelia status ARGS` imported SQLAlchemy (a pass, or the full store), and its
    output."""
    r = subprocess.run(
        [sys.executable, "-c", PROBE, "status", *args],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    word, code = r.stderr.strip().splitlines()[-1].split()
    assert code in ("0", "1"), r.stderr
    return word == "SQLALCHEMY", r.stdout


def runs(env) -> int:
    """Reconcile passes recorded: a pass that could not take the lease records none."""
    with sqlite3.connect(env.db_path) as db:
        return db.execute("SELECT count(*) FROM reconciler_runs").fetchone()[0]


def test_status_reads_a_live_reconcilers_view_and_refreshes_without_one(parhelia_env):
    env = parhelia_env
    alone, _ = status(env)
    assert alone and runs(env) == 1  # nobody watches: status ran the pass itself
    daemon = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "reconciler", "start", "--json"],
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while runs(env) < 2:
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the daemon never ran a pass"
            time.sleep(0.1)
        imported, out = status(env)
        assert not imported, "a watched view is a read: no pass, no SQLAlchemy"
        assert f":{daemon.pid}" in out and "last " in out  # whose view, and how old
        doc = json.loads(status(env, "--json")[1])
        assert doc["data"]["dashboard"]["reconciler"]["lease_holder"].endswith(f":{daemon.pid}")
        forced, _ = status(env, "--refresh")
        assert forced  # asked for, the pass is tried (the lease is the daemon's)
        assert runs(env) == 2  # neither status reconciled: the daemon holds the lease
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    # the lease released, its last pass still young: nobody watches now, so status reconciles
    imported, out = status(env)
    assert imported and runs(env) == 3
    assert "lease free" in out
