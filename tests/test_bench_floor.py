"""bench/heartbeat_floor.py's floor of a whole heartbeat cycle does the store's work in raw SQL:
its container table is the store's row and its UPDATE is the statement the store sends. If the
store's cycle changes, this fails until the floor is changed with it, so the ratio bench/store.py
prints keeps comparing the same work."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

from sqlalchemy.dialects import sqlite

from parhelia.state import bulk
from parhelia.state.models import Container

FLOOR = Path(__file__).resolve().parent.parent / "bench" / "heartbeat_floor.py"


def floor_module():
    spec = importlib.util.spec_from_file_location("heartbeat_floor", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floors_container_row_has_the_stores_columns():
    conn = sqlite3.connect(":memory:")
    conn.execute(floor_module().CONTAINER_TABLE)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(containers)")]
    assert columns == [c.name for c in Container.__table__.columns]


def test_the_floors_update_is_the_statement_the_store_sends():
    """The poller's usual shape: heartbeat columns and the newest sample, on rows that hold no
    newer one (all of them in a poller's cycle: the store then sends nothing more)."""
    store_sql = str(
        bulk._container_update_newer(("last_heartbeat_at", "missed_heartbeats")).compile(
            dialect=sqlite.dialect()
        )
    )

    def bare(sql: str) -> str:
        return "".join(sql.replace("containers.", "").split())

    assert bare(floor_module().UPDATE) == bare(store_sql)
