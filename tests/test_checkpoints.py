"""Checkpoints (issue 19): manifests and their diff (pure), the content-addressed local archive,
and end to end on the local backend with real processes: an agent writes files into its
workspace, checkpoints are taken, the container is terminated, a restore starts a new container
whose workspace holds those files, and the diff shows what the agent wrote."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from parhelia.state.checkpoint_store import list_checkpoints
from parhelia.state.checkpoints import (
    Manifest,
    ManifestEntry,
    WorkspaceChanges,
    check_path,
    diff_manifests,
    size_text,
    unified_patch,
)
from parhelia.state.enums import ContainerState
from parhelia.state.errors import ParheliaError
from parhelia.state.timeutil import utcnow
from parhelia.workers.checkpoint_archive import ContentStore, restore_dir, snapshot_dir

# imported at collection: the MCP client binds its stderr then, not to a test's captured stream
from tests.test_mcp import ACTOR, call, call_error, session, stable

# -- manifests and their diff (pure) ----------------------------------------------------------


def entry(path: str, content: bytes, mode: int = 0o644) -> tuple[ManifestEntry, dict]:
    import hashlib

    digest = hashlib.sha256(content).hexdigest()
    return ManifestEntry(path, len(content), mode, digest), {digest: content}


def manifest(**files: bytes | tuple[bytes, int]) -> tuple[Manifest, dict]:
    entries, blobs = [], {}
    for name, value in files.items():
        content, mode = value if isinstance(value, tuple) else (value, 0o644)
        e, b = entry(name.replace("__", "/"), content, mode)
        entries.append(e)
        blobs.update(b)
    return Manifest(tuple(entries)), blobs


def test_diff_lists_added_removed_and_changed_files_with_sizes():
    a, _ = manifest(keep=b"same", gone=b"old file", edit=b"v1", chmod=(b"x", 0o644))
    b, _ = manifest(keep=b"same", new=b"brand new", edit=b"version 2", chmod=(b"x", 0o755))
    d = diff_manifests(a, b)
    assert [(c.path, c.new_size) for c in d.added] == [("new", 9)]
    assert [(c.path, c.old_size) for c in d.removed] == [("gone", 8)]
    assert [(c.path, c.old_size, c.new_size) for c in d.changed] == [
        ("chmod", 1, 1),
        ("edit", 2, 9),
    ]
    assert d.stat_line() == "4 files changed: 1 added, 1 removed, 2 changed (+8 bytes)"
    assert diff_manifests(a, a).empty
    assert d.to_dict()["added"] == [{"path": "new", "old_size": None, "new_size": 9}]


def test_patch_is_a_unified_diff_of_text_files_and_names_binaries():
    a, blobs_a = manifest(notes=b"one\ntwo\n", blob=b"\x00\x01", gone=b"bye\n")
    b, blobs_b = manifest(notes=b"one\nTWO\n", blob=b"\x00\x02", fresh=b"hi")
    blobs = {**blobs_a, **blobs_b}
    text = unified_patch(a, b, blobs.__getitem__, labels=("ck-a", "ck-b"))
    assert "--- ck-a/notes\n+++ ck-b/notes\n" in text and "-two\n+TWO\n" in text
    assert "Binary files ck-a/blob and ck-b/blob differ" in text
    assert "--- ck-a/gone\n+++ /dev/null\n" in text and "-bye\n" in text
    assert "--- /dev/null\n+++ ck-b/fresh\n" in text
    assert "+hi\n\\ No newline at end of file\n" in text


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../b", "a/./b", "", ".."])
def test_a_manifest_path_that_leaves_the_workspace_is_refused(bad):
    with pytest.raises(ValueError):
        check_path(bad)
    doc = {"version": 1, "entries": [{"path": bad, "size": 0, "mode": 420, "hash": "0" * 64}]}
    with pytest.raises(ValueError):
        Manifest.from_bytes(json.dumps(doc).encode())


def test_size_text():
    assert [size_text(n) for n in (0, 512, 4096, 1536 * 1024, 3 * 2**30)] == [
        "0B",
        "512B",
        "4.0K",
        "1.5M",
        "3.0G",
    ]


# -- the archive --------------------------------------------------------------------------


def objects(content: ContentStore) -> set[str]:
    return {p.parent.name + p.name for p in content.objects.glob("*/*")}


def test_repeated_snapshots_share_content_and_restore_files_modes_and_links(tmp_path):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "main.py").write_text("print('hi')\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "run.sh", 0o755)
    (work / "big.bin").write_bytes(os.urandom(300_000))
    (work / "agent.log").write_text("the backend's own log\n")
    os.symlink("/etc/passwd", work / "passwd-link")  # recorded as a link, never followed
    content = ContentStore(tmp_path / "archive", "cp-test")

    ref1 = snapshot_dir(work, content, exclude=["agent.log"])
    first = objects(content)
    assert ref1 == snapshot_dir(work, content, exclude=["agent.log"])  # same state, same ref
    (work / "src" / "main.py").write_text("print('bye')\n")
    ref2 = snapshot_dir(work, content, exclude=["agent.log"])
    added = objects(content) - first
    assert len(added) == 2  # the changed file and the new manifest: big.bin is shared

    m = content.manifest(ref1)
    assert {e.path for e in m.entries} == {"src/main.py", "run.sh", "big.bin", "passwd-link"}
    link = m.by_path()["passwd-link"]
    assert link.link == "/etc/passwd" and link.size == len("/etc/passwd")

    out = tmp_path / "out"
    out.mkdir()
    restore_dir(ref1, content, out)
    assert (out / "src" / "main.py").read_text() == "print('hi')\n"
    assert (out / "big.bin").read_bytes() == (work / "big.bin").read_bytes()
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
    assert os.readlink(out / "passwd-link") == "/etc/passwd"
    assert not (out / "agent.log").exists()
    assert diff_manifests(content.manifest(ref1), content.manifest(ref2)).changed[0].path == (
        "src/main.py"
    )


def test_a_damaged_object_is_detected_not_restored(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "f").write_text("content\n")
    content = ContentStore(tmp_path / "a", "cp-x")
    ref = snapshot_dir(work, content)
    (e,) = content.manifest(ref).entries
    import zlib

    content.path(e.hash).write_bytes(zlib.compress(b"tampered"))
    with pytest.raises(ValueError, match="damaged"):
        content.read(e.hash)


def test_collect_removes_only_old_objects_no_kept_manifest_reaches(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "a").write_text("kept\n")
    content = ContentStore(tmp_path / "arch", "cp-x")
    keep = snapshot_dir(work, content)
    (work / "a").write_text("dropped\n")
    drop = snapshot_dir(work, content)
    assert content.collect([keep]) == 0  # within the grace: a checkpoint may be being written
    freed = content.collect([keep], grace=-1)
    assert freed > 0
    assert content.manifest(keep).entries[0].path == "a"
    with pytest.raises(FileNotFoundError):
        content.manifest(drop)
    out = tmp_path / "o"
    out.mkdir()
    restore_dir(keep, content, out)
    assert (out / "a").read_text() == "kept\n"


# -- end to end on the local backend -----------------------------------------------------------

AGENT = """
import os, pathlib, sys, time
here = pathlib.Path.cwd()
notes = here / "notes.txt"
if not notes.exists():
    notes.write_text("written in " + os.environ["PARHELIA_SANDBOX_ID"] + "\\n")
end = time.time() + 120
while not (here / "go").exists() and time.time() < end:
    time.sleep(0.02)
(here / "src").mkdir(exist_ok=True)
(here / "src" / "result.txt").write_text("the answer is 42\\n")
time.sleep(120)
"""


@pytest.fixture
def agent_env(parhelia_env, monkeypatch):
    script = parhelia_env.project / "agent.py"
    script.write_text(AGENT)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{prompt}}"
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", cmd)
    return parhelia_env


def wait_for(path: Path, seconds: float = 30.0) -> Path:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path


def workdir(env, sandbox_id: str) -> Path:
    return env.sandbox_root / sandbox_id


def test_checkpoint_terminate_restore_keeps_the_agents_files_and_diff_shows_them(agent_env):
    env = agent_env
    task = env.ok("task", "create", "write notes")
    cid, sid = task["container_id"], task["sandbox_id"]
    wd = workdir(env, sid)
    notes = wait_for(wd / "notes.txt").read_text()
    assert notes == f"written in {sid}\n"

    first = env.ok("checkpoint", "create", cid, "--note", "before go")
    assert first["container_id"] == cid and first["task_id"] == task["task_id"]
    assert first["trigger"] == "manual" and first["note"] == "before go"
    assert first["files"] == 1 and first["size_bytes"] == len(notes)
    (wd / "go").write_text("")
    wait_for(wd / "src" / "result.txt")
    second = env.ok("checkpoint", "create", cid)

    listed = env.ok("checkpoint", "list", "--container", cid)
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    assert [c["id"] for c in env.ok("checkpoint", "list", "--task", task["task_id"])] == [
        second["id"],
        first["id"],
    ]
    text = env.run("checkpoint", "list").out
    assert first["id"] in text and "before go" in text

    d = env.ok("checkpoint", "diff", first["id"], second["id"], "--patch")
    assert [a["path"] for a in d["added"]] == ["go", "src/result.txt"]
    assert d["removed"] == [] and d["changed"] == []
    assert "+the answer is 42\n" in d["patch"]
    human = env.run("checkpoint", "diff", first["id"], second["id"]).out
    assert "A  src/result.txt  (17B)" in human
    assert env.run("checkpoint", "diff", first["id"], second["id"], "--stat").out.strip() == (
        "2 files changed: 2 added, 0 removed, 0 changed (+17 bytes)"
    )

    env.ok("containers", "terminate", cid, "--yes")
    restored = env.ok("checkpoint", "restore", second["id"], "--yes")
    assert restored["checkpoint"] == second["id"] and restored["from_container"] == cid
    new_wd = workdir(env, restored["sandbox_id"])
    assert restored["container_id"] != cid and new_wd != wd
    # the restored agent found its notes (written in the old sandbox) and its result in place
    assert (new_wd / "notes.txt").read_text() == f"written in {sid}\n"
    assert (new_wd / "src" / "result.txt").read_text() == "the answer is 42\n"

    store = env.store()
    row = store.get_container(restored["container_id"])
    assert row.meta["restored_from"] == second["id"] and row.state == ContainerState.RUNNING
    new_task = store.get_task(restored["task_id"])
    assert new_task.prompt == "write notes" and new_task.id != task["task_id"]
    (ev,) = store.events(types=["checkpoint.restored"])
    assert ev.container_id == row.id and ev.details["from_container"] == cid
    assert [e.new_value for e in store.events(types=["checkpoint.created"], oldest_first=True)] == [
        first["id"],
        second["id"],
    ]

    third = env.ok("checkpoint", "create", restored["container_id"])
    assert env.ok("checkpoint", "diff", second["id"], third["id"])["summary"].startswith(
        "0 files changed"
    )


def test_restore_is_estimated_against_the_budget_like_task_create(agent_env, monkeypatch):
    env = agent_env
    task = env.ok("task", "create", "write notes")
    wait_for(workdir(env, task["sandbox_id"]) / "notes.txt")
    ck = env.ok("checkpoint", "create", task["container_id"])
    env.ok("budget", "set", "0.01")
    r = env.run("checkpoint", "restore", ck["id"], "--yes")
    assert r.code != 0 and "E300" in r.err
    assert len(env.store().containers()) == 1  # nothing recorded, nothing started


def test_unknown_checkpoint_is_e202_with_recovery_commands(parhelia_env):
    for argv in (
        ["checkpoint", "restore", "ck-nope", "--yes"],
        ["checkpoint", "diff", "ck-nope", "ck-none"],
    ):
        r = parhelia_env.run(*argv, "--json")
        err = json.loads(r.out)["error"]
        assert r.code != 0 and err["code"] == "E202"
        assert len(err["suggestions"]) >= 2


def test_a_failed_checkpoint_is_e600_with_an_event_and_no_row(parhelia_env):
    env = parhelia_env
    task = env.ok("task", "create", "hello")
    import shutil

    shutil.rmtree(workdir(env, task["sandbox_id"]))  # the workspace is gone
    r = env.run("checkpoint", "create", task["container_id"], "--json")
    err = json.loads(r.out)["error"]
    assert r.code != 0 and err["code"] == "E600" and len(err["suggestions"]) >= 2
    store = env.store()
    assert list_checkpoints(store) == []
    (ev,) = store.events(types=["checkpoint.failed"])
    assert ev.level == "error" and ev.details["code"] == "E600"
    assert store.get_container(task["container_id"]).state == ContainerState.RUNNING


def test_checkpoint_of_another_planes_or_unknown_container_is_refused(parhelia_env):
    r = parhelia_env.run("checkpoint", "create", "c-00000000", "--json")
    assert json.loads(r.out)["error"]["code"] == "E204"


# -- triggers: before a terminate the loops decided ---------------------------------------------


def control(env):
    """The ControlPlane the CLI builds (its data dir, so the same archive)."""
    from parhelia.app.runtime import Runtime

    return Runtime().control


def start_agent(env) -> tuple[dict, Path]:
    task = env.ok("task", "create", "write notes")
    wd = workdir(env, task["sandbox_id"])
    wait_for(wd / "notes.txt")
    return task, wd


def test_budget_guard_checkpoints_before_its_terminate(agent_env):
    env = agent_env
    task, _ = start_agent(env)
    cp = control(env)
    cp.settings.policy.max_runtime_hours = 0.5
    cp.store.update_container(task["container_id"], started_at=utcnow() - timedelta(hours=1))
    actions = cp.guard.check()
    assert actions == [f"terminated {task['container_id']} (max_runtime)"]
    (ck,) = list_checkpoints(cp.store, container=task["container_id"])
    assert ck.trigger == "terminate" and ck.actor == "budget-guard"
    assert "max_runtime" in ck.note and ck.files == 1
    c = cp.store.get_container(task["container_id"])
    assert c.state == ContainerState.TERMINATED and c.termination_reason == "max_runtime"
    # taken before the terminate: its event comes first
    kinds = [
        e.type if e.type.startswith("checkpoint") else e.new_value
        for e in cp.store.events(container_id=c.id, oldest_first=True)
    ]
    assert kinds.index("checkpoint.created") < kinds.index(ContainerState.TERMINATED)


def test_a_failed_checkpoint_never_blocks_the_guards_terminate(agent_env):
    env = agent_env
    task, wd = start_agent(env)
    cp = control(env)
    cp.settings.policy.max_runtime_hours = 0.5
    cp.store.update_container(task["container_id"], started_at=utcnow() - timedelta(hours=1))
    import shutil

    shutil.rmtree(wd)
    cp.guard.check()
    c = cp.store.get_container(task["container_id"])
    assert c.state == ContainerState.TERMINATED
    assert list_checkpoints(cp.store) == []
    (ev,) = cp.store.events(types=["checkpoint.failed"])
    assert ev.details["code"] == "E600" and ev.actor == "budget-guard"


def test_on_terminate_false_takes_no_checkpoint(agent_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_CHECKPOINT_ON_TERMINATE", "false")
    env = agent_env
    task, _ = start_agent(env)
    cp = control(env)
    assert cp.settings.checkpoint.on_terminate is False
    cp.settings.policy.max_runtime_hours = 0.5
    cp.store.update_container(task["container_id"], started_at=utcnow() - timedelta(hours=1))
    cp.guard.check()
    assert cp.store.get_container(task["container_id"]).state == ContainerState.TERMINATED
    assert list_checkpoints(cp.store) == []


def test_orphan_policy_checkpoints_before_its_terminate(agent_env):
    from parhelia.state.models import new_container_id
    from parhelia.workers.agent_command import build_argv
    from parhelia.workers.backends.base import SandboxSpec

    env = agent_env
    cp = control(env)
    cp.settings.policy.orphans = "terminate"
    cp.settings.reconciler.orphan_grace_seconds = 0.0
    backend = cp.backend_for("local")
    argv = build_argv(cp.settings.agent.command, "unrecorded", 1)
    cid = new_container_id()
    info = backend.create(SandboxSpec(cid, None, argv, plane_id=cp.store.plane_id))
    wait_for(workdir(env, info.sandbox_id) / "notes.txt")
    report = cp.reconcile_once()
    assert (report.orphans, report.orphans_terminated) == (1, 1)
    (ck,) = list_checkpoints(cp.store, container=cid)
    assert ck.trigger == "terminate" and ck.actor == "reconciler" and ck.task_id is None
    assert cp.store.get_container(cid).state == ContainerState.TERMINATED
    # an adopted container has no task: a restore needs the prompt
    r = env.run("checkpoint", "restore", ck.id, "--yes", "--json")
    assert json.loads(r.out)["error"]["code"] == "E102"
    restored = env.ok("checkpoint", "restore", ck.id, "--yes", "--prompt", "carry on")
    new_wd = workdir(env, restored["sandbox_id"])
    assert (new_wd / "notes.txt").read_text() == f"written in {info.sandbox_id}\n"


# -- retention ------------------------------------------------------------------------------


def test_cleanup_keeps_the_newest_per_container(agent_env):
    env = agent_env
    task, _ = start_agent(env)
    ids = [env.ok("checkpoint", "create", task["container_id"])["id"] for _ in range(3)]
    r = env.run("checkpoint", "cleanup", "--keep", "1", "--json")
    assert json.loads(r.out)["error"]["code"] == "E102"  # destructive: --yes off a terminal
    done = env.ok("checkpoint", "cleanup", "--keep", "1", "--yes")
    assert sorted(done["deleted"]) == sorted(ids[:2])
    assert [c["id"] for c in env.ok("checkpoint", "list")] == [ids[2]]
    assert len(env.store().events(types=["checkpoint.deleted"])) == 2
    assert env.ok("checkpoint", "cleanup", "--yes")["deleted"] == []  # default keep: 10
    r = env.run("checkpoint", "cleanup", "--keep", "0", "--yes", "--json")
    assert json.loads(r.out)["error"]["code"] == "E101"


def test_keep_setting_has_a_range(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_CHECKPOINT_KEEP", "0")
    r = parhelia_env.run("checkpoint", "list", "--json")
    err = json.loads(r.out)["error"]
    assert err["code"] == "E103" and "PARHELIA_CHECKPOINT_KEEP" in err["message"]


# -- MCP: the same answers as the CLI's --json ------------------------------------------------


def test_mcp_checkpoint_tools_answer_what_the_cli_answers(agent_env):
    env = agent_env
    task, wd = start_agent(env)
    first = env.ok("checkpoint", "create", task["container_id"])
    (wd / "go").write_text("")
    wait_for(wd / "src" / "result.txt")

    async def body():
        async with session(env) as s:
            tools = {t.name for t in (await s.list_tools()).tools}
            assert {"checkpoint_list", "checkpoint_create", "checkpoint_diff"} <= tools
            assert "checkpoint_restore" in tools
            made = await call(s, "checkpoint_create", container_id=task["container_id"], note="m")
            listed = await call(s, "checkpoint_list", container=task["container_id"])
            diff = await call(s, "checkpoint_diff", a=first["id"], b=made["id"], patch=True)
            ids = await call(s, "checkpoint_list", fields=["id"])
            missing = await call_error(s, "checkpoint_diff", a="ck-nope", b=made["id"])
            restored = await call(s, "checkpoint_restore", checkpoint_id=made["id"])
            return made, listed, diff, ids, missing, restored

    made, listed, diff, ids, missing, restored = anyio.run(body)
    assert made["actor"] == ACTOR and made["note"] == "m" and made["trigger"] == "manual"
    assert stable(listed) == stable(
        env.ok("checkpoint", "list", "--container", task["container_id"])
    )
    assert diff == env.ok("checkpoint", "diff", first["id"], made["id"], "--patch")
    assert "src/result.txt" in [a["path"] for a in diff["added"]]
    assert ids == [{"id": made["id"]}, {"id": first["id"]}]
    assert missing["code"] == "E202"
    assert (
        restored["checkpoint"] == made["id"] and restored["from_container"] == task["container_id"]
    )
    assert (workdir(env, restored["sandbox_id"]) / "src" / "result.txt").exists()


# -- the dashboard's diff view (the screen, and what feeds it) ---------------------------------


def test_changes_since_start_takes_a_checkpoint_and_diffs_from_the_restored_one(agent_env):
    from parhelia.workers.checkpoints import changes_since_start

    env = agent_env
    task, _ = start_agent(env)
    cp = control(env)
    fresh = changes_since_start(cp, task["container_id"])
    assert fresh.baseline_id is None and [c.path for c in fresh.diff.added] == ["notes.txt"]
    assert f"+written in {task['sandbox_id']}" in fresh.patch
    (row,) = list_checkpoints(cp.store, container=task["container_id"])
    assert row.id == fresh.checkpoint_id and row.note == "diff view"

    restored = env.ok("checkpoint", "restore", row.id, "--yes")
    new_wd = workdir(env, restored["sandbox_id"])
    (new_wd / "extra.txt").write_text("added after the restore\n")
    later = changes_since_start(cp, restored["container_id"])
    assert later.baseline_id == row.id
    assert "extra.txt" in [c.path for c in later.diff.added]
    assert "notes.txt" not in [c.path for c in later.diff.all]  # it came with the restore
    assert later.title.startswith(f"{restored['container_id']}: changes since checkpoint {row.id}")


def sample_changes() -> WorkspaceChanges:
    a, blobs_a = manifest(notes=b"one\n")
    b, blobs_b = manifest(notes=b"two\n", fresh=b"new\n")
    blobs = {**blobs_a, **blobs_b}
    patch = unified_patch(a, b, blobs.__getitem__, labels=("ck-1", "ck-2"))
    return WorkspaceChanges("c-00000001", "ck-2", "ck-1", diff_manifests(a, b), patch)


def test_change_lines_mark_and_colour_files_and_patch():
    from parhelia.widgets.diff_screen import change_lines

    lines = change_lines(sample_changes())
    assert [(t.plain, t.style) for t in lines[:2]] == [
        ("A  fresh  (4B)", "green"),
        ("M  notes  (4B -> 4B)", "yellow"),
    ]
    styles = {t.plain: t.style for t in lines[3:]}
    assert styles["-one"] == "red" and styles["+two"] == "green"
    assert styles["--- ck-1/notes"] == "bold"


async def test_diff_screen_shows_what_load_returns_and_errors_with_their_code():
    from textual.app import App
    from textual.widgets import RichLog, Static

    from parhelia.widgets.diff_screen import DiffScreen

    class Host(App):
        pass

    app = Host()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = DiffScreen("c-00000001", sample_changes)
        app.push_screen(screen)
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        title = str(screen.query_one("#diff-title", Static).render())
        assert "changes since checkpoint ck-1" in title
        summary = str(screen.query_one("#diff-summary", Static).render())
        assert summary == "2 files changed: 1 added, 0 removed, 1 changed (+4 bytes)"
        assert len(screen.query_one(RichLog).lines) >= 6
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen

        def fails() -> WorkspaceChanges:
            raise ParheliaError("E901", "a Modal checkpoint is an image", ["a", "b"])

        broken = DiffScreen("c-00000002", fails)
        app.push_screen(broken)
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert broken.error is not None and broken.error.code == "E901"
        assert "E901" in str(broken.query_one("#diff-summary", Static).render())


def test_a_hanging_snapshot_holds_the_guards_terminate_only_until_its_deadline(store, tmp_path):
    import threading

    from parhelia.state.requests import TaskRequest
    from parhelia.state.settings import Settings
    from parhelia.workers.backends.deadline import DeadlineBackend
    from parhelia.workers.control import ControlPlane
    from tests.fakes import MemoryBackend

    release, returned = threading.Event(), threading.Event()

    class HangingSnapshots(MemoryBackend):
        def snapshot_workspace(self, sandbox_id):
            release.wait(60)  # a backend that does not answer (released at the end)
            returned.set()
            raise AssertionError("abandoned long ago")

    inner = HangingSnapshots()
    settings = Settings()
    settings.policy.max_runtime_hours = 0.5
    cp = ControlPlane(
        store, settings, backends={"local": DeadlineBackend(inner, 0.05)}, data_dir=tmp_path
    )
    made = cp.dispatch(TaskRequest(prompt="x", backend="local"))
    store.update_container(made.container_id, started_at=utcnow() - timedelta(hours=1))
    try:
        assert cp.guard.check() == [f"terminated {made.container_id} (max_runtime)"]
        assert not returned.is_set()  # terminated while the snapshot still hung
    finally:
        release.set()
    assert inner.terminated == [made.sandbox_id]
    (ev,) = store.events(types=["checkpoint.failed"])
    assert ev.details == {"code": "E600", "cause": "E501"}


async def test_d_on_a_container_shows_what_its_agent_changed(agent_env):
    """The dashboard's diff key: a checkpoint now, diffed against the start (an empty workspace),
    names the file the real agent wrote."""
    from textual.widgets import Static

    from parhelia.app.dashboard import ParheliaApp
    from parhelia.widgets.containers_table import ContainersTable
    from parhelia.widgets.diff_screen import DiffScreen

    task, _ = start_agent(agent_env)
    cp = control(agent_env)
    app = ParheliaApp(cp, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=(150, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one(ContainersTable)
        table.focus()
        assert table.selected is not None and table.selected.id == task["container_id"]
        await pilot.press("d")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.error is None
        summary = str(screen.query_one("#diff-summary", Static).render())
        assert "1 added" in summary, summary
    (ck,) = list_checkpoints(cp.store, container=task["container_id"])
    assert ck.note == "diff view" and ck.actor == "user"
