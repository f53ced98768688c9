"""Two Parhelias on one cloud never fight: each store has a control-plane id, its sandboxes carry it,
and a sandbox is ours only with the mark, a well-formed container id and our plane id.

Against the fake Modal API (two databases on one fake workspace, policy terminate on both) and on
the local backend (two databases sharing one `[local] root`, real processes, through the CLI).
Plus the look-alike (`parhelia_container: bobs-job-42`) and the sandbox made before plane ids.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from parhelia.state.errors import ParheliaError
from parhelia.state.models import is_container_id
from parhelia.state.requests import TaskRequest
from parhelia.state.settings import ModalSettings, Settings
from parhelia.state.store import Store
from parhelia.workers.backends.base import Ownership, SandboxInfo, ownership, parhelia_tags
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.control import ControlPlane
from tests import test_incident_modal
from tests.fake_modal import FakeModalServer
from tests.test_incident_modal import APP, GRACE, Clock

modal_cli_env = test_incident_modal.modal_cli_env  # the CLI pointed at the fake (a fixture)

# -- the id ---------------------------------------------------------------------------------------


def test_plane_id_is_made_on_first_open_and_kept_by_every_opener(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    first = Store(url)
    plane = first.plane_id
    second = Store(url)  # another process's open: the same id, not a new one
    assert plane.startswith("cp-") and second.plane_id == plane
    first.close()
    second.close()
    assert Store(url).plane_id == plane  # survives reopen
    assert Store(f"sqlite:///{tmp_path / 'other.db'}").plane_id != plane


def test_processes_opening_a_new_database_at_once_agree_on_one_plane_id(tmp_path):
    """Four processes race to open (create, migrate, make the id of) one new database."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "from parhelia.state.store import Store\n"
        f"print(Store({url!r}).plane_id)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    go.touch()
    ids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == 1 and ids == {Store(url).plane_id}


def test_config_show_prints_the_plane_id(parhelia_env):
    plane = parhelia_env.store().plane_id
    rows = {r["name"]: r for r in parhelia_env.ok("config", "show")}
    assert rows["control_plane_id"] == {
        "name": "control_plane_id",
        "value": plane,
        "source": "store",
    }
    assert plane in parhelia_env.run("config", "show").out


def test_ownership_needs_mark_well_formed_id_and_our_plane():
    ours = "cp-00000000000000aa"
    assert is_container_id("c-0123abcd") and not is_container_id("bobs-job-42")
    assert not is_container_id("c-0123ABCD") and not is_container_id("c-0123abcd0")
    assert ownership(parhelia_tags("c-0123abcd", None, ours), ours) is Ownership.OURS
    assert ownership(parhelia_tags("c-0123abcd", None, "cp-x"), ours) is Ownership.OTHER_PLANE
    assert ownership(parhelia_tags("c-0123abcd", None), ours) is Ownership.LEGACY
    lookalike = {"parhelia": "1", "parhelia_container": "bobs-job-42", "parhelia_plane": ours}
    assert ownership(lookalike, ours) is Ownership.NOT_PARHELIA
    assert ownership({"team": "other"}, ours) is Ownership.NOT_PARHELIA


# -- two stores on one fake Modal workspace ----------------------------------------------------


def modal_plane(store: Store, fake: FakeModalServer, clock: Clock, holder: str) -> ControlPlane:
    settings = Settings()
    settings.modal.app = APP
    settings.policy.orphans = "terminate"
    backend = ModalBackend(ModalSettings(app=APP), client=fake.shared_client)
    return ControlPlane(
        store,
        settings,
        default_backend="modal",
        backends={"modal": backend},
        clock=clock,
        holder=holder,
    )


def test_two_stores_on_one_modal_workspace_never_touch_each_others_sandboxes(
    fake_modal, modal_cli_env, tmp_path
):
    clock = Clock()
    store_a = modal_cli_env.store()  # the CLI's database
    store_b = Store(f"sqlite:///{tmp_path / 'teammate.db'}")
    a = modal_plane(store_a, fake_modal, clock, "alice")
    b = modal_plane(store_b, fake_modal, clock, "bob")
    assert store_a.plane_id != store_b.plane_id

    mine = [a.dispatch(TaskRequest(prompt=f"alice {i}", backend="modal")) for i in range(3)]
    theirs = [b.dispatch(TaskRequest(prompt=f"bob {i}", backend="modal")) for i in range(4)]
    # Someone's tool imitating the tags, and one sandbox from before plane ids.
    (bob42,) = fake_modal.state.start_behind_back(APP, lookalike=1)
    (old,) = fake_modal.state.start_behind_back(APP, tagged=1)
    assert "parhelia_plane" not in old.tags
    sandboxes = fake_modal.state.sandboxes
    assert sandboxes[mine[0].sandbox_id].tags["parhelia_plane"] == store_a.plane_id
    assert sandboxes[theirs[0].sandbox_id].tags["parhelia_plane"] == store_b.plane_id

    for _ in range(2):  # first sight, then past the grace: both reconcile with policy terminate
        ra, rb = a.refresh_once(), b.refresh_once()
        assert ra.error is None and rb.error is None, (ra.summary(), rb.summary())
        clock.advance(GRACE + 1)
    ra, rb = a.refresh_once(), b.refresh_once()
    assert (ra.foreign, rb.foreign) == (4, 3)
    assert "4 of another control plane" in ra.summary()

    # Nobody stopped anything but the budget guard's nothing: every agent still runs.
    assert fake_modal.state.requests.get("SandboxTerminateV2", []) == []
    for r in mine + theirs:
        assert sandboxes[r.sandbox_id].running
    assert sandboxes[bob42.sandbox_id].running and sandboxes[old.sandbox_id].running

    for store, own, other in ((store_a, mine, theirs), (store_b, theirs, mine)):
        rows = {c.sandbox_id: c for c in store.containers()}
        assert {rows[r.sandbox_id].state for r in own} == {"running"}
        assert not {r.sandbox_id for r in other} & set(rows)  # never adopted or orphaned
        assert bob42.sandbox_id not in rows  # the look-alike is nobody's row
        assert store.orphans()[0].sandbox_id == old.sandbox_id  # flagged, never auto-stopped
        assert [c.sandbox_id for c in store.orphans()] == [old.sandbox_id]
        view = (a if store is store_a else b).dashboard()
        assert {f.sandbox_id for f in view.foreign} == {r.sandbox_id for r in other}
        assert view.plane_id == store.plane_id

    # Alice's CLI: the teammate's sandboxes are counted apart, and terminate refuses them.
    text = modal_cli_env.run("containers", "orphans").out
    assert "4 sandbox(es) of another control plane running" in text
    refused = modal_cli_env.run("containers", "terminate", theirs[0].sandbox_id, "--yes", "--json")
    assert refused.code != 0 and refused.json["error"]["code"] == "E401", refused.out
    with pytest.raises(ParheliaError) as err:
        a.terminate(theirs[1].container_id)
    assert err.value.code == "E401" and store_b.plane_id in err.value.message
    assert fake_modal.state.requests.get("SandboxTerminateV2", []) == []

    # The one made before plane ids: only a person's confirmed cleanup stops it.
    assert modal_cli_env.ok("cleanup", "--orphans", "--yes")[0]["sandbox_id"] == old.sandbox_id
    assert not sandboxes[old.sandbox_id].running
    assert all(sandboxes[r.sandbox_id].running for r in mine + theirs)
    store_b.close()


def test_lookalike_tags_are_never_recorded_or_terminated(fake_modal, modal_cli_env):
    """Today's bug: {parhelia: 1, parhelia_container: bobs-job-42} became orphan "bobs-job-42" and
    was terminated under policy terminate."""
    clock = Clock()
    store = modal_cli_env.store()
    cp = modal_plane(store, fake_modal, clock, "alice")
    sb = fake_modal.state.add_sandbox(
        fake_modal.state.app_id(APP),
        ["bash"],
        {"parhelia": "1", "parhelia_container": "bobs-job-42"},
    )
    for _ in range(3):
        report = cp.refresh_once()
        clock.advance(GRACE + 1)
    assert (report.orphans, report.orphans_terminated, report.foreign) == (0, 0, 0)
    assert store.containers() == []
    assert fake_modal.state.sandboxes[sb.sandbox_id].running
    assert fake_modal.state.requests.get("SandboxTerminateV2", []) == []


def test_reconciler_auto_terminate_skips_an_orphan_without_a_plane_tag(fake_modal, modal_cli_env):
    clock = Clock()
    store = modal_cli_env.store()
    cp = modal_plane(store, fake_modal, clock, "alice")
    cp.settings.reconciler.orphan_grace_seconds = 0.0  # recorded and judged in the same cycle
    (old,) = fake_modal.state.start_behind_back(APP, tagged=1)
    (new,) = fake_modal.state.start_behind_back(APP, tagged=1, plane=store.plane_id)
    report = cp.reconcile_once()
    assert (report.orphans, report.orphans_terminated) == (2, 1)
    assert not fake_modal.state.sandboxes[new.sandbox_id].running
    assert fake_modal.state.sandboxes[old.sandbox_id].running
    (flagged,) = store.orphans()
    assert flagged.sandbox_id == old.sandbox_id
    (ev,) = store.events(container_id=flagged.id, types=["container.orphaned"])
    assert "no policy stops it" in ev.message


# -- two databases on one machine's local backend --------------------------------------------


def test_two_databases_sharing_one_local_root_never_touch_each_others_processes(
    parhelia_env, monkeypatch, tmp_path
):
    env = parhelia_env
    url_a, url_b = env.db_url, f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("PARHELIA_RECONCILER_ORPHAN_GRACE_SECONDS", "0")
    monkeypatch.setenv("PARHELIA_POLICY_ORPHANS", "terminate")

    def as_db(url: str, *args: str) -> dict:
        monkeypatch.setenv("PARHELIA_DB_URL", url)
        return env.ok(*args)

    a1 = as_db(url_a, "task", "create", "alice's agent")
    b1 = as_db(url_b, "task", "create", "bob's agent")
    ra = as_db(url_a, "reconciler", "run")
    rb = as_db(url_b, "reconciler", "run")
    assert (ra["orphans"], ra["orphans_terminated"], ra["foreign"]) == (0, 0, 1)
    assert (rb["orphans"], rb["orphans_terminated"], rb["foreign"]) == (0, 0, 1)

    running = {i.sandbox_id for i in env.backend().list() if i.running}
    assert {a1["sandbox_id"], b1["sandbox_id"]} <= running
    assert [o["id"] for o in as_db(url_a, "containers", "orphans")] == []
    monkeypatch.setenv("PARHELIA_DB_URL", url_a)
    refused = env.run("containers", "terminate", b1["sandbox_id"], "--yes", "--json")
    assert refused.code != 0 and refused.json["error"]["code"] == "E401"
    assert b1["sandbox_id"] in {i.sandbox_id for i in env.backend().list() if i.running}
    once = env.run("tui", "--once", "--no-refresh")
    assert "1 sandbox(es) of another control plane running" in once.out


# -- the dashboard ----------------------------------------------------------------------------


async def test_dashboard_shows_the_plane_and_counts_another_planes_sandboxes_apart(store):
    from tests import dashboard_world as world
    from tests.test_dashboard import SIZE, make_app, refreshed, table, text_of, until

    backend = world.seed(store)
    theirs = SandboxInfo(
        "sb-theirs", "local", parhelia_tags("c-0000beef", None, "cp-00000000000000bb"), None
    )
    backend.sandboxes[theirs.sandbox_id] = theirs
    app = make_app(world.control(store, backend))
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot, app)
        assert "plane 5eed0000" in text_of(app.query_one("#status"))
        await pilot.press("r")  # reconcile now: the listing shows the other plane's sandbox
        await until(pilot, lambda: "1 of another plane" in (table(app).border_subtitle or ""))
    assert "sb-theirs" in backend.sandboxes and "sb-theirs" not in backend.terminated
    assert store.container_by_sandbox("local", "sb-theirs") is None
