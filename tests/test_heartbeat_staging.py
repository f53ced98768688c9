"""On SQLite a heartbeat cycle's samples wait in `heartbeats_staged` (no index) and move into
`heartbeats` in container order once `MERGE_ROWS` have gathered (migration 0008); history and
pruning see both tables, on either database (a copy of an SQLite store brings staged rows to
PostgreSQL, whose own cycles copy into `heartbeats` directly)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError

from parhelia.state import bulk
from parhelia.state.models import HEARTBEATS_STAGED, Heartbeat
from tests.test_store import T0, container, latest_sample, sample


def stored(store) -> tuple[list[tuple], list[tuple]]:
    """(heartbeats, staged) as (container, ts) in id order."""
    with store.read() as s:
        return tuple(
            [(r.container_id, r.ts) for r in s.execute(select(t).order_by(t.c.id))]
            for t in (Heartbeat.__table__, HEARTBEATS_STAGED)
        )


@pytest.mark.sqlite_only
def test_samples_are_staged_then_merged_in_container_order(store, monkeypatch):
    monkeypatch.setattr(bulk, "MERGE_ROWS", 4)
    for cid in ("c-00000001", "c-00000002"):
        store.add_container(container(cid))
    t1, t2 = T0, T0 + timedelta(seconds=30)
    store.record_heartbeats([sample("c-00000002", t1), sample("c-00000001", t1)])
    assert stored(store) == ([], [("c-00000002", t1), ("c-00000001", t1)])
    store.record_heartbeats([sample("c-00000002", t2), sample("c-00000001", t2)])
    # the fourth sample merged them all, each container's together, oldest first
    assert stored(store) == (
        [("c-00000001", t1), ("c-00000001", t2), ("c-00000002", t1), ("c-00000002", t2)],
        [],
    )
    # the staged table starts over, so its highest id still counts the rows since the merge
    store.record_heartbeats([sample("c-00000001", t2 + timedelta(seconds=30))])
    with store.read() as s:
        assert s.scalar(select(HEARTBEATS_STAGED.c.id)) == 1


def test_history_reads_staged_and_merged_samples(store, monkeypatch):
    monkeypatch.setattr(bulk, "MERGE_ROWS", 4)
    for cid in ("c-00000001", "c-00000002"):
        store.add_container(container(cid))
    ts = [T0 + timedelta(seconds=30 * k) for k in range(3)]
    for k, t in enumerate(ts):
        store.record_heartbeats([sample("c-00000001", t, cpu=float(k)), sample("c-00000002", t)])
    history = store.heartbeat_history("c-00000001")
    assert [(h.ts, h.cpu_percent) for h in history] == [(t, float(k)) for k, t in enumerate(ts)]
    assert [h.ts for h in store.heartbeat_history("c-00000001", limit=2)] == ts[1:]
    assert [h.ts for h in store.heartbeat_history("c-00000001", since=ts[2])] == ts[2:]
    assert store.container_detail("c-00000001", now=ts[2]).heartbeats[-1].cpu_percent == 2.0


def test_staged_rows_are_history_on_either_database(store):
    """Rows in `heartbeats_staged` however they came (a copy of an SQLite store brings them to
    PostgreSQL): history shows them, pruning deletes them, a merge moves them."""
    store.add_container(container("c-00000001"))
    old, new = T0, T0 + timedelta(hours=2)
    store.record_heartbeats([sample("c-00000001", new)])
    with store.write() as s:
        s.execute(insert(HEARTBEATS_STAGED), [sample("c-00000001", old)])
    assert [h.ts for h in store.heartbeat_history("c-00000001")] == [old, new]
    assert store.prune_heartbeats(T0 + timedelta(hours=1)) == 1
    assert [h.ts for h in store.heartbeat_history("c-00000001")] == [new]
    assert latest_sample(store, "c-00000001")[0] == new
    store.merge_heartbeats()
    assert stored(store) == ([("c-00000001", new)], [])
    assert store.merge_heartbeats() == 0


def test_pruning_a_staged_newest_sample_clears_it_from_the_row(store):
    store.add_container(container("c-00000001"))
    store.record_heartbeats([sample("c-00000001", T0)])
    assert store.prune_heartbeats(T0 + timedelta(seconds=1)) == 1
    assert store.heartbeat_history("c-00000001") == []
    assert latest_sample(store, "c-00000001") == (None, None, None, None, None)


def test_an_empty_cycle_takes_no_write_lock(store):
    """A fleet with nothing running polls with nothing to write: no transaction, so no wait for
    (nor block of) another process's writer."""
    begun = []
    event.listen(store._write_engine, "begin", lambda conn: begun.append(conn))
    assert store.record_heartbeats([], [], []) == 0
    assert begun == []


def test_a_row_holding_a_newer_sample_still_takes_its_heartbeat_columns(store):
    """In one cycle: a row whose sample is the newest takes it; a row holding a newer one keeps
    that but takes the cycle's heartbeat columns like the rest; an update naming no row is
    ignored, as ever."""
    for cid in ("c-00000001", "c-00000002", "c-00000003"):
        store.add_container(container(cid))
    t1, t2 = T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)
    store.record_heartbeats([sample("c-00000002", t2, cpu=2.0)])
    updates = [
        {"id": cid, "last_heartbeat_at": t1, "missed_heartbeats": k, "health": "degraded"}
        for k, cid in enumerate(("c-00000001", "c-00000002", "c-00000003", "c-nosuch00"))
    ]
    store.record_heartbeats(
        [sample(cid, t1, cpu=1.0) for cid in ("c-00000001", "c-00000002", "c-00000003")], updates
    )
    for k, cid in enumerate(("c-00000001", "c-00000002", "c-00000003")):
        row = store.get_container(cid)
        assert (row.last_heartbeat_at, row.missed_heartbeats, row.health) == (t1, k, "degraded")
    assert latest_sample(store, "c-00000001")[:2] == (t1, 1.0)
    assert latest_sample(store, "c-00000002")[:2] == (t2, 2.0)
    assert latest_sample(store, "c-00000003")[:2] == (t1, 1.0)
    assert [h.ts for h in store.heartbeat_history("c-00000002")] == [t1, t2]


@pytest.mark.sqlite_only
def test_the_merge_trusts_what_staging_checked(store, monkeypatch):
    """Every staged sample's container was checked as it was staged and cannot go while it is
    staged (its deletion deletes them), so the merge does not check each again; the connection
    checks foreign keys again afterwards."""
    store.add_container(container("c-00000001"))
    raw = sqlite3.connect(store.sqlite_path)  # a row staging itself would refuse
    raw.execute(
        "INSERT INTO heartbeats_staged (container_id, ts, agent_alive) "
        "VALUES ('c-gone0000', '2026-03-10 12:00:00.000000', 1)"
    )
    raw.commit()
    raw.close()
    assert store.merge_heartbeats() == 1
    assert stored(store)[0] == [("c-gone0000", T0)]
    monkeypatch.setattr(bulk, "MERGE_ROWS", 2)
    with pytest.raises(IntegrityError):
        store.record_heartbeats([sample("c-00000001", T0), sample("c-nosuch00", T0)])
    store.record_heartbeats([sample("c-00000001", T0), sample("c-00000001", T0)])  # merges
    with pytest.raises(IntegrityError):
        store.record_heartbeats([sample("c-nosuch00", T0)])


@pytest.mark.sqlite_only
def test_a_failed_merge_leaves_the_cycle_stored(store, monkeypatch):
    """The merge runs in a transaction of its own after the cycle's: if it fails, the cycle is
    stored all the same and a later one merges."""
    store.add_container(container("c-00000001"))
    monkeypatch.setattr(bulk, "MERGE_ROWS", 1)

    def fail(conn, at_least=1):
        raise sqlite3.OperationalError("disk I/O error")

    real = bulk._merge_staged
    monkeypatch.setattr(bulk, "_merge_staged", fail)
    with pytest.raises(Exception, match="disk I/O error"):
        store.record_heartbeats(
            [sample("c-00000001", T0)], [{"id": "c-00000001", "last_heartbeat_at": T0}]
        )
    assert stored(store) == ([], [("c-00000001", T0)])
    assert store.get_container("c-00000001").last_heartbeat_at == T0
    monkeypatch.setattr(bulk, "_merge_staged", real)
    store.record_heartbeats([sample("c-00000001", T0 + timedelta(seconds=30))])
    assert stored(store) == ([("c-00000001", T0), ("c-00000001", T0 + timedelta(seconds=30))], [])


def test_a_prune_with_nothing_due_writes_nothing(store):
    """The poller prunes every cycle: with nothing older than the retention it must not take the
    write lock (its statements scanned the containers and the staged samples inside it)."""
    store.add_container(container("c-00000001"))
    store.record_heartbeats([sample("c-00000001", T0)])
    writes: list[str] = []

    def seen(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("DELETE", "UPDATE", "INSERT")):
            writes.append(statement)

    event.listen(store._write_engine, "before_cursor_execute", seen)
    assert store.prune_heartbeats(T0 - timedelta(hours=1)) == 0
    assert writes == []
    assert store.prune_heartbeats(T0 + timedelta(seconds=1)) == 1  # due: pruned as before
    assert writes and store.get_container("c-00000001").last_cpu_percent is None
