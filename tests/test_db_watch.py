"""The database change watcher (`workers/db_watch.py`): every commit by another connection is
signalled; in WAL mode a checkpoint, which only copies committed pages into the file, is not."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from parhelia.workers.db_watch import watch_database


@pytest.fixture
def watched(tmp_path):
    """A database file being watched, and the times its signals came."""
    path = tmp_path / "p.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    signals: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_database, args=(path, lambda: signals.append(time.monotonic()), stop)
    )
    thread.start()
    time.sleep(0.3)  # the watch in place
    yield path, signals
    stop.set()
    thread.join(5)


def settled(signals: list[float], quiet: float = 0.5, within: float = 5.0) -> int:
    """How many signals, once none has come for `quiet` seconds."""
    end = time.monotonic() + within
    seen = len(signals)
    last = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        if len(signals) != seen:
            seen, last = len(signals), time.monotonic()
        elif time.monotonic() - last >= quiet:
            break
    return seen


def test_in_wal_mode_a_commit_signals_and_a_checkpoint_does_not(watched):
    path, signals = watched
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        settled(signals)
        before = settled(signals)
        conn.execute("INSERT INTO t VALUES (1)")
        after_commit = settled(signals)
        assert after_commit > before
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, done) == (0, frames) and frames > 0  # pages went into the file
        assert settled(signals) == after_commit
        conn.execute("INSERT INTO t VALUES (2)")  # the next commit is signalled as before
        assert settled(signals) > after_commit
    finally:
        conn.close()


def test_in_rollback_mode_a_commit_to_the_file_signals(watched):
    path, signals = watched
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=TRUNCATE")  # no `-wal`: commits write the file itself
        before = settled(signals)
        conn.execute("INSERT INTO t VALUES (1)")
        assert settled(signals) > before
    finally:
        conn.close()
