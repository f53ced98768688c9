"""Opening a store reads the schema revision once: an SQLite file already at head is not
checked a second time through the write engine (which takes the write lock to read it)."""

from __future__ import annotations

from parhelia.state import db
from parhelia.state.store import Store


def test_a_store_at_head_is_opened_with_one_revision_read(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    reads = []
    real = db.current_revision
    monkeypatch.setattr(db, "current_revision", lambda engine: reads.append(1) or real(engine))
    Store(url).close()  # a new file: migrated through the engine
    assert reads
    reads.clear()
    store = Store(url)
    try:
        assert reads == []  # the bare read before the engines saw head
        assert db.check_not_newer(url) == db.HEAD_REVISION
        store.add_event("note", "still writable")
        assert store.events()[0].message == "still writable"
    finally:
        store.close()
