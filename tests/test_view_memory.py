"""What a 10,000-container dashboard keeps per container: its views share one string per
distinct value of the columns a fleet repeats (the driver makes a new one for each row)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from parhelia.state.models import Container, Task
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow


def test_views_share_the_strings_their_rows_repeat(tmp_path):
    now = utcnow()
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with store.write() as w:
            w.execute(
                insert(Task),
                [{"id": f"t-{i}", "prompt": "same prompt", "backend": "modal"} for i in range(3)],
            )
            w.execute(
                insert(Container),
                [
                    {
                        "id": f"c-{i:08x}",
                        "backend": "modal",
                        "task_id": f"t-{i}",
                        "state": "running",
                        "health": "degraded",
                        "gpu": "A10G",
                        "region": "us-east",
                        "created_at": now - timedelta(minutes=i),
                        "last_heartbeat_at": now,
                        "tags": {},
                        "meta": {},
                    }
                    for i in range(3)
                ],
            )
        a, b, c = store.dashboard(now=now).containers
        for name in ("backend", "state", "health", "gpu", "region", "task_prompt"):
            assert getattr(a, name) is getattr(b, name) is getattr(c, name), name
        assert a.created_at is not b.created_at and a.id != b.id
    finally:
        store.close()
