"""Small things a user notices (issue 16): reserved codes say so, `reconciler run` behind another
process's lease fails naming it, `db status` counts rows, `events list -n -5` is E101 and an empty
result says nothing matched, the local backend refuses a GPU."""

from __future__ import annotations

from parhelia.state.errors import RESERVED
from parhelia.state.process_owner import this_process


def test_reserved_codes_say_they_are_reserved(parhelia_env):
    for code in RESERVED:
        r = parhelia_env.run("help", code)
        assert r.code == 0 and "Reserved for" in r.out and "no command raises" in r.out
        data = parhelia_env.ok("help", code)
        assert data["reserved"] is True and "Reserved for" in data["explanation"]
    assert "No session with this id" not in parhelia_env.run("help", "E200").out
    listing = parhelia_env.run("help", "errors").out
    assert all(code in listing for code in RESERVED) and "Reserved" in listing
    assert parhelia_env.ok("help", "E201")["reserved"] is False


def test_reconciler_run_behind_another_lease_fails_naming_the_holder(parhelia_env):
    store = parhelia_env.store()
    assert store.acquire_lease("other-host:4242", 300, owner=this_process())
    r = parhelia_env.run("reconciler", "run")
    assert r.code != 0
    assert "E605" in r.err and "other-host:4242" in r.err
    assert store.get_lease().holder == "other-host:4242"  # not released by the one that lost


def test_db_status_prints_row_counts(parhelia_env):
    parhelia_env.ok("task", "create", "say hello")
    data = parhelia_env.ok("db", "status")
    assert data["rows"]["tasks"] == 1 and data["rows"]["containers"] == 1
    assert "alembic_version" not in data["rows"]
    r = parhelia_env.run("db", "status")
    assert "tasks 1" in r.out and "containers 1" in r.out


def test_events_list_negative_limit_is_E101_and_empty_says_nothing_matched(parhelia_env):
    r = parhelia_env.run("events", "list", "-n", "-5", "--json")
    assert r.code != 0 and r.json["error"]["code"] == "E101"
    r = parhelia_env.run("events", "list", "--type", "no.such.type")
    assert r.code == 0 and "No events matched" in r.out


def test_local_backend_refuses_a_gpu_and_bills_nothing(parhelia_env):
    r = parhelia_env.run(
        "task", "create", "train it", "--backend", "local", "--gpu", "T4", "--json"
    )
    assert r.code != 0 and r.json["error"]["code"] == "E101"
    assert "local backend has no GPU" in r.json["error"]["message"]
    assert parhelia_env.store().list_tasks() == []


def test_reconciler_start_never_claims_a_lease_it_did_not_hold(parhelia_env):
    import signal

    from tests import pty_driver

    store = parhelia_env.store()
    assert store.acquire_lease("other-host:4242", 300, owner=this_process())
    s = pty_driver.Session(["reconciler", "start"], parhelia_env.env, cwd=parhelia_env.project)
    s.expect("another process holds the lease")
    s.proc.send_signal(signal.SIGTERM)
    code, text = s.finish()
    assert code == 0, text
    assert "lease released" not in text and "Another process held the reconciler lease" in text
    assert store.get_lease().holder == "other-host:4242"


def test_config_show_one_setting_or_a_section(parhelia_env):
    rows = parhelia_env.ok("config", "show", "defaults")
    assert rows and all(r["name"].startswith("defaults.") for r in rows)
    [one] = parhelia_env.ok("config", "show", "defaults.cpu")
    assert one["name"] == "defaults.cpu"
    r = parhelia_env.run("config", "show", "defaults.cpux", "--json")
    assert r.json["error"]["code"] == "E101" and "defaults.cpu" in " ".join(
        r.json["error"]["suggestions"]
    )


def test_default_local_backend_refuses_a_gpu_too(parhelia_env):
    """No `--backend`: the default (local here) gets the same refusal as `--backend local`."""
    r = parhelia_env.run("task", "create", "train it", "--gpu", "T4", "--yes", "--json")
    assert r.code != 0 and r.json["error"]["code"] == "E101"
    assert "local backend has no GPU" in r.json["error"]["message"]
    assert parhelia_env.store().list_tasks() == []
