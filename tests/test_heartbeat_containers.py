"""Every heartbeat names an existing container, on SQLite (its foreign key) and on PostgreSQL
(migration 0007: statement-level triggers in place of the per-row foreign key), also while another
session deletes that container; deleting containers deletes their heartbeats; a container's id
cannot change, nor `containers` be emptied alone, while heartbeats name it."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from parhelia.state import db
from parhelia.state.models import HEARTBEATS_STAGED, Heartbeat
from parhelia.state.store import Store
from parhelia.workers.pg_listen import conninfo
from tests.test_store import T0, container, sample
from tests.waiting import poll


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'p.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    s = Store(url)
    yield s
    s.close()


def heartbeats_of(store: Store, cid: str) -> int:
    """Its samples, in `heartbeats` and still staged (SQLite: state/bulk.py MERGE_ROWS)."""
    with store.read() as s:
        return sum(
            s.scalar(select(func.count()).where(t.c.container_id == cid))
            for t in (Heartbeat.__table__, HEARTBEATS_STAGED)
        )


def other_session(store: Store) -> psycopg.Connection:
    return psycopg.connect(conninfo(store.url))


# -- both databases ---------------------------------------------------------------------------


def test_a_sample_of_an_unknown_container_is_refused_with_the_others(any_store):
    any_store.add_container(container("c-00000001"))
    with pytest.raises(IntegrityError):
        any_store.record_heartbeats(
            [
                sample("c-00000001", T0),
                sample("c-00000001", T0 + timedelta(seconds=1)),
                sample("c-nosuch00", T0),
            ]
        )
    assert heartbeats_of(any_store, "c-00000001") == 0
    # two samples of one container in one cycle are one container to check, not two
    any_store.record_heartbeats(
        [sample("c-00000001", T0), sample("c-00000001", T0 + timedelta(seconds=1))]
    )
    assert heartbeats_of(any_store, "c-00000001") == 2


def test_deleting_a_container_deletes_its_heartbeats(any_store):
    for cid in ("c-00000001", "c-00000002"):
        any_store.add_container(container(cid))
        any_store.record_heartbeats([sample(cid, T0 + timedelta(seconds=k)) for k in range(3)])
    with any_store.write() as s:
        s.execute(text("DELETE FROM containers WHERE id = 'c-00000001'"))
    assert heartbeats_of(any_store, "c-00000001") == 0
    assert heartbeats_of(any_store, "c-00000002") == 3


def test_a_container_named_by_heartbeats_keeps_its_id(any_store):
    any_store.add_container(container("c-00000001"))
    any_store.add_container(container("c-00000002"))
    any_store.record_heartbeats([sample("c-00000001", T0)])
    with pytest.raises(IntegrityError), any_store.write() as s:
        s.execute(text("UPDATE containers SET id = 'c-0000000a' WHERE id = 'c-00000001'"))
    with any_store.write() as s:  # one no heartbeat names may change
        s.execute(text("UPDATE containers SET id = 'c-0000000b' WHERE id = 'c-00000002'"))
    assert heartbeats_of(any_store, "c-00000001") == 1


# -- PostgreSQL: the triggers of migration 0007 -----------------------------------------------


def test_containers_are_not_truncated_alone_while_heartbeats_name_them(pg):
    pg.add_container(container("c-00000001"))
    pg.record_heartbeats([sample("c-00000001", T0)])
    with pytest.raises(IntegrityError), pg.write() as s:
        s.execute(text("TRUNCATE containers CASCADE"))  # and what has a foreign key to it
    assert heartbeats_of(pg, "c-00000001") == 1
    with pg.write() as s:  # both at once leaves nothing dangling
        s.execute(text("TRUNCATE containers, heartbeats CASCADE"))
    assert heartbeats_of(pg, "c-00000001") == 0


def test_a_cycle_waiting_on_a_delete_is_refused_when_the_delete_commits(pg):
    """Another session has deleted the container but not committed yet: the cycle waits for it,
    then finds the container gone and refuses its sample (no heartbeat left without a container)."""
    pg.add_container(container("c-00000001"))
    deleter = other_session(pg)
    deleter.execute("DELETE FROM containers WHERE id = 'c-00000001'")  # not committed yet
    failed: list[BaseException] = []

    def cycle() -> None:
        try:
            pg.record_heartbeats(
                [sample("c-00000001", T0)],
                [{"id": "c-00000001", "last_heartbeat_at": T0, "missed_heartbeats": 0}],
            )
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)

    worker = threading.Thread(target=cycle)
    worker.start()
    with psycopg.connect(conninfo(pg.url), autocommit=True) as watcher:
        poll(
            lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        )
    deleter.commit()
    worker.join(60)
    deleter.close()
    assert len(failed) == 1 and isinstance(failed[0], IntegrityError), failed
    assert heartbeats_of(pg, "c-00000001") == 0


def test_a_delete_waits_for_an_uncommitted_heartbeat_then_takes_it_along(pg):
    """Any writer's heartbeat (here plain SQL, no container update before it) holds its container
    until it commits: a delete meanwhile waits (here: times out), and once it commits the delete
    goes through and its heartbeats go with it."""
    pg.add_container(container("c-00000001"))
    writer, deleter = other_session(pg), other_session(pg)
    writer.execute(
        "INSERT INTO heartbeats (container_id, ts, agent_alive) VALUES ('c-00000001', %s, true)",
        (T0,),
    )
    deleter.execute("SET lock_timeout = '200ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        deleter.execute("DELETE FROM containers WHERE id = 'c-00000001'")
    deleter.rollback()
    writer.commit()
    assert heartbeats_of(pg, "c-00000001") == 1
    deleter.execute("DELETE FROM containers WHERE id = 'c-00000001'")
    deleter.commit()
    writer.close()
    deleter.close()
    assert heartbeats_of(pg, "c-00000001") == 0


def test_migration_0007_swaps_the_foreign_key_for_triggers_and_back(pg):
    from alembic import command

    def state() -> tuple[list[str], list[str]]:
        with pg.read() as s:
            fks = s.scalars(
                text(
                    "SELECT conname FROM pg_constraint "
                    "WHERE conrelid = 'heartbeats'::regclass AND contype = 'f'"
                )
            ).all()
            triggers = s.scalars(
                text(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                    "AND tgrelid IN ('heartbeats'::regclass, 'containers'::regclass) "
                    "ORDER BY tgname"
                )
            ).all()
        return fks, triggers

    assert state() == (
        [],
        [
            "containers_delete_heartbeats",
            "containers_keep_heartbeats_id",
            "containers_keep_heartbeats_truncate",
            "heartbeats_check_container_insert",
            "heartbeats_check_container_update",
        ],
    )
    with pg._write_engine.begin() as conn:
        command.downgrade(db._alembic_config(conn), "0006_checkpoints")
    assert state() == (["heartbeats_container_id_fkey"], [])
    with pg._write_engine.begin() as conn:
        command.upgrade(db._alembic_config(conn), "head")
    assert state()[0] == [] and len(state()[1]) == 5
    pg.add_container(container("c-00000001"))
    with pytest.raises(IntegrityError):
        pg.record_heartbeats([sample("c-nosuch00", T0)])
