"""WAL checkpoints off the write path (`db.Checkpointer`): a Store's writes are checkpointed by its
own thread, the WAL stays bounded under back-to-back writes, and closing stops the thread."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

from parhelia.state import db
from parhelia.state.models import Container
from parhelia.state.store import Store

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def cycle(store: Store, ids: list[str], k: int, per: int = 25) -> None:
    """One write of `per` samples for each container (one leaf of the index each, and more)."""
    samples = [
        {"container_id": cid, "ts": T0 + timedelta(seconds=k * per + j), "cpu_percent": 1.0}
        for cid in ids
        for j in range(per)
    ]
    store.record_heartbeats(samples, [{"id": cid, "missed_heartbeats": 0} for cid in ids])


def wal_state(path) -> tuple[int, int]:
    """(WAL frames, frames checkpointed), from a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        _, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames, done
    finally:
        conn.close()


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "parhelia-checkpoint"]


def test_the_store_checkpoints_its_writes_on_its_own_thread(tmp_path):
    path = tmp_path / "p.db"
    store = Store(f"sqlite:///{path}")
    try:
        ids = [f"c-{i:08x}" for i in range(20)]
        for cid in ids:
            store.add_container(Container(id=cid, backend="local"))
        cycle(store, ids, 0)
        deadline = time.monotonic() + 5
        while store._checkpointer.busy_seconds == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store._checkpointer.busy_seconds > 0
        thread = store._checkpointer._thread
        assert thread in checkpoint_threads()
        store.checkpoint()  # waits for the thread's checkpoint, then copies the rest
        frames, done = wal_state(path)
        assert frames == done
    finally:
        store.close()
    assert not thread.is_alive()


def test_the_wal_stays_bounded_under_back_to_back_writes(tmp_path, monkeypatch):
    """Writes that never pause never let the thread's checkpoint catch up, so the WAL could never
    start over: past `WAL_RESTART_PAGES` a writer finishes the copy first and the WAL restarts."""
    monkeypatch.setattr(db, "WAL_RESTART_PAGES", 100)
    monkeypatch.setattr(db, "CHECKPOINT_INTERVAL_S", 0.0)
    path = tmp_path / "p.db"
    store = Store(f"sqlite:///{path}")
    try:
        ids = [f"c-{i:08x}" for i in range(40)]
        for cid in ids:
            store.add_container(Container(id=cid, backend="local"))
        wal = f"{path}-wal"
        grown = 0
        for k in range(60):
            before = os.path.getsize(wal)
            cycle(store, ids, k)
            grown = max(grown, os.path.getsize(wal) - before)
        # the file keeps its largest size: far below what 60 such writes append without restarts
        assert os.path.getsize(wal) < 60 * grown / 4
        assert store.heartbeat_history(ids[0], limit=5000)[-1].ts == T0 + timedelta(
            seconds=59 * 25 + 24
        )
    finally:
        store.close()


def test_an_in_memory_store_has_no_checkpointer():
    store = Store("sqlite://")
    try:
        assert store._checkpointer is None
        store.add_container(Container(id="c-00000001", backend="local"))
        store.checkpoint()  # nothing to do
    finally:
        store.close()
