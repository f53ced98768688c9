"""Checkpoint retention with real files (issue 19): `[checkpoint] keep` per container is enforced
on each new checkpoint (oldest first, never the newest, never one a live container was restored
from), and `parhelia checkpoint cleanup` (alias `prune`) removes rows and the archive's objects no
kept checkpoint reaches, with --dry-run, a confirmation on a terminal, and --yes."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from parhelia.state.checkpoint_store import add_checkpoint, list_checkpoints
from parhelia.state.models import Checkpoint
from parhelia.workers.checkpoint_archive import ContentStore
from parhelia.workers.checkpoints import apply_cleanup, changes_since_start, plan_cleanup
from tests.test_checkpoints import AGENT, control, start_agent


@pytest.fixture
def agent_env(parhelia_env, monkeypatch):
    """An agent that writes notes.txt and waits (the one tests/test_checkpoints.py runs)."""
    script = parhelia_env.project / "agent.py"
    script.write_text(AGENT)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{prompt}}"
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", cmd)
    return parhelia_env


def content_of(env) -> ContentStore:
    return ContentStore(env.sandbox_root.parent / "checkpoints", env.store().plane_id)


def blob(env, text: str) -> Path:
    """Where the archive keeps a file whose content is `text`."""
    return content_of(env).path(hashlib.sha256(text.encode()).hexdigest())


def manifest_file(env, ref: str) -> Path:
    return content_of(env).path(ref.removeprefix("sha256:"))


def checkpoint_with(env, cid: str, wd: Path, text: str) -> dict:
    """A checkpoint whose workspace has `version.txt` = text, beside the agent's notes."""
    (wd / "version.txt").write_text(text)
    return env.ok("checkpoint", "create", cid)


def test_keep_is_enforced_on_each_new_checkpoint_with_its_files(agent_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_CHECKPOINT_KEEP", "2")
    env = agent_env
    task, wd = start_agent(env)
    cid = task["container_id"]
    cks = [checkpoint_with(env, cid, wd, f"version {n}\n") for n in range(3)]
    assert [c["id"] for c in env.ok("checkpoint", "list", "--container", cid)] == [
        cks[2]["id"],
        cks[1]["id"],
    ]
    assert not blob(env, "version 0\n").exists()  # only the oldest's own file went
    assert not manifest_file(env, cks[0]["ref"]).exists()
    assert blob(env, "version 1\n").exists() and blob(env, "version 2\n").exists()
    notes = (wd / "notes.txt").read_text()
    assert blob(env, notes).exists()  # shared with the kept ones
    [ev] = env.store().events(types=["checkpoint.deleted"])
    assert ev.old_value == cks[0]["id"] and ev.container_id == cid


def test_cleanup_dry_run_then_yes_removes_only_what_no_kept_checkpoint_uses(agent_env):
    env = agent_env
    task, wd = start_agent(env)
    cid = task["container_id"]
    cks = [checkpoint_with(env, cid, wd, f"v{n}\n" * 100) for n in range(3)]
    before = sorted(p for p in content_of(env).objects.rglob("*") if p.is_file())

    plan = env.ok("checkpoint", "cleanup", "--keep", "1", "--dry-run")
    assert plan["would_delete"] == [cks[0]["id"], cks[1]["id"]]  # oldest first
    assert plan["deleted"] == [] and plan["dry_run"] is True
    gone_files = [blob(env, f"v{n}\n" * 100) for n in (0, 1)]
    gone_files += [manifest_file(env, cks[n]["ref"]) for n in (0, 1)]
    assert plan["would_free_bytes"] == sum(p.stat().st_size for p in gone_files)
    assert sorted(p for p in content_of(env).objects.rglob("*") if p.is_file()) == before
    assert len(env.ok("checkpoint", "list")) == 3
    human = env.run("checkpoint", "prune", "--keep", "1", "--dry-run").out
    assert "Would delete 2 checkpoint(s)" in human and cks[0]["id"] in human

    done = env.ok("checkpoint", "prune", "--keep", "1", "--yes")
    assert done["deleted"] == [cks[0]["id"], cks[1]["id"]]
    assert done["freed_bytes"] == plan["would_free_bytes"]
    assert not any(p.exists() for p in gone_files)
    assert blob(env, "v2\n" * 100).exists() and manifest_file(env, cks[2]["ref"]).exists()
    assert blob(env, (wd / "notes.txt").read_text()).exists()
    assert [c["id"] for c in env.ok("checkpoint", "list")] == [cks[2]["id"]]
    # what is kept still restores, files and all
    restored = env.ok("checkpoint", "restore", cks[2]["id"], "--yes")
    new_wd = env.sandbox_root / restored["sandbox_id"]
    assert (new_wd / "version.txt").read_text() == "v2\n" * 100


def test_cleanup_asks_on_a_terminal_and_no_deletes_nothing(agent_env):
    env = agent_env
    task, wd = start_agent(env)
    cks = [checkpoint_with(env, task["container_id"], wd, f"t{n}\n") for n in range(2)]

    def answer(reply: bytes) -> str:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "parhelia.app", "checkpoint", "cleanup", "--keep", "1"],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env.env,
        )  # fmt: skip
        os.close(slave)
        seen, deadline = b"", time.monotonic() + 30
        try:
            while b"?" not in seen.split(b"\n")[-1] and time.monotonic() < deadline:
                if select.select([master], [], [], 0.1)[0]:
                    seen += os.read(master, 4096)
            os.write(master, reply + b"\n")
            proc.wait(timeout=30)
            while select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        return seen.decode(errors="replace")

    said = answer(b"n")
    assert cks[0]["id"] in said and "Delete 1 checkpoint(s)" in said, said
    assert len(env.ok("checkpoint", "list")) == 2 and blob(env, "t0\n").exists()
    said = answer(b"y")
    assert "Deleted 1 checkpoint(s)" in said, said
    assert [c["id"] for c in env.ok("checkpoint", "list")] == [cks[1]["id"]]
    assert not blob(env, "t0\n").exists()


def test_a_checkpoint_a_live_container_was_restored_from_is_kept(agent_env):
    env = agent_env
    task, wd = start_agent(env)
    cid = task["container_id"]
    first = checkpoint_with(env, cid, wd, "base\n")
    restored = env.ok("checkpoint", "restore", first["id"], "--yes")
    checkpoint_with(env, cid, wd, "later\n")
    checkpoint_with(env, cid, wd, "latest\n")

    done = env.ok("checkpoint", "cleanup", "--keep", "1", "--yes")
    assert first["id"] in done["held"] and first["id"] not in done["deleted"]
    assert len(done["deleted"]) == 1
    assert blob(env, "base\n").exists() and manifest_file(env, first["ref"]).exists()
    # the restored agent's diff view still reads its baseline
    (env.sandbox_root / restored["sandbox_id"] / "new.txt").write_text("since the restore\n")
    changes = changes_since_start(control(env), restored["container_id"])
    assert changes.baseline_id == first["id"]
    assert [f.path for f in changes.diff.added] == ["new.txt"]
    env.ok("containers", "terminate", restored["container_id"], "--yes")
    again = env.ok("checkpoint", "cleanup", "--keep", "1", "--yes")
    assert again["deleted"] == [first["id"]] and again["held"] == []
    assert not manifest_file(env, first["ref"]).exists()
    assert blob(env, "base\n").exists()  # the restored workspace's checkpoint holds it still


def test_a_cleanup_waits_for_a_checkpoint_being_written(agent_env):
    """A snapshot holds the archive's lock (shared) from its first object until its row is in;
    a cleanup (which collects with no age grace) waits for it, so those objects survive."""
    env = agent_env
    cp = control(env)
    task, _ = start_agent(env)
    content = ContentStore(cp.backend_for("local").archive, cp.store.plane_id)
    plan = plan_cleanup(cp, 1)
    finished = threading.Event()
    with content.lock(exclusive=False):
        digest = content.put_bytes(b"written by a checkpoint in flight\n")  # no row refers to it
        worker = threading.Thread(
            target=lambda: (apply_cleanup(cp, plan), finished.set()), daemon=True
        )
        worker.start()
        lock_file = os.stat(content.root / ".lock").st_ino
        deadline = time.monotonic() + 20
        while not waiting_for_lock(lock_file):  # the cleanup is blocked on the lock
            assert time.monotonic() < deadline and not finished.is_set()
            time.sleep(0.01)
        ref = content.put_manifest(_manifest_of(digest))
        add_checkpoint(
            cp.store,
            Checkpoint(
                container_id=task["container_id"],
                task_id=task["task_id"],
                backend="local",
                ref=ref,
                trigger="manual",
                size_bytes=1,
                files=1,
            ),
        )
    worker.join(timeout=30)
    assert finished.is_set()
    assert content.has(digest) and len(list_checkpoints(cp.store)) == 1


def waiting_for_lock(inode: int) -> bool:
    """Whether some process waits for a lock on the file with this inode (/proc/locks marks a
    blocked request with `->`)."""
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts and parts[-3].endswith(f":{inode}"):
            return True
    return False


def _manifest_of(digest: str):
    from parhelia.state.checkpoints import Manifest, ManifestEntry

    return Manifest((ManifestEntry("in-flight.txt", 1, 0o644, digest),))


def test_keep_never_waits_for_another_checkpoint_being_taken(agent_env, monkeypatch):
    """Enforcing `keep` after a checkpoint (maybe the guard's, before its terminate) does not
    wait for the archive's lock: with another snapshot in flight it leaves the pruning for later."""
    from parhelia.workers.checkpoints import create_checkpoint

    monkeypatch.setenv("PARHELIA_CHECKPOINT_KEEP", "1")
    env = agent_env
    cp = control(env)
    task, wd = start_agent(env)
    cid = task["container_id"]
    first = create_checkpoint(cp, cid)
    content = ContentStore(cp.backend_for("local").archive, cp.store.plane_id)
    with content.lock(exclusive=False):  # another process's snapshot, still being written
        (wd / "version.txt").write_text("second\n")
        second = create_checkpoint(cp, cid)  # returns: it does not wait to prune
        assert [r.id for r in list_checkpoints(cp.store)] == [second.id, first.id]
    (wd / "version.txt").write_text("third\n")
    third = create_checkpoint(cp, cid)
    assert [r.id for r in list_checkpoints(cp.store)] == [third.id]
