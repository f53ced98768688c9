"""Heartbeat ingest on PostgreSQL sends only what a cycle needs (state/pg_ingest.py): the staging
table is made once per connection, and made again after a rollback took it away."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError

from parhelia.state.store import Store
from tests.test_store import T0, container, sample


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The SQL of every statement the store sends through the driver directly."""
    seen: list[str] = []
    execute = psycopg.Connection.execute

    def spy(self, query, *args, **kwargs):
        seen.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", spy)
    return seen


def cycle(store: Store, k: int, cid: str = "c-00000001") -> None:
    ts = T0 + timedelta(seconds=30 * k)
    store.record_heartbeats(
        [sample(cid, ts)], [{"id": cid, "last_heartbeat_at": ts, "missed_heartbeats": 0}]
    )


def creates(sent: list[str]) -> int:
    return sum(q.startswith("CREATE TEMP TABLE") for q in sent)


def test_the_staging_table_is_made_once_per_connection(pg, sent):
    pg.add_container(container("c-00000001"))
    for k in range(3):
        cycle(pg, k)
    assert creates(sent) == 1
    assert pg.get_container("c-00000001").last_heartbeat_at == T0 + timedelta(seconds=60)
    assert len(pg.heartbeat_history("c-00000001")) == 3


def test_a_rolled_back_cycle_makes_the_next_one_ask_for_its_staging_table_again(pg, sent):
    pg.add_container(container("c-00000001"))
    with pytest.raises(IntegrityError):  # its staging table, made in it, went with it
        pg.record_heartbeats(
            [sample("c-nosuch00", T0)],
            [{"id": "c-00000001", "last_heartbeat_at": T0, "missed_heartbeats": 0}],
        )
    before = len(sent)
    cycle(pg, 1)
    cycle(pg, 2)
    assert creates(sent[before:]) == 1
    assert len(pg.heartbeat_history("c-00000001")) == 2
