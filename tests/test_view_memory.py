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


def test_a_full_read_builds_its_views_without_the_constructor_and_as_it_would(
    tmp_path, monkeypatch
):
    """10,000 views a first read: built field by field into their dicts (a third of the
    constructor's cost), yet equal to what the constructor makes, health shown the same way."""
    from dataclasses import asdict

    from parhelia.state.views import ContainerView

    now = utcnow()
    store = Store(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        with store.write() as w:
            w.execute(
                insert(Container),
                [
                    {
                        "id": f"c-{i:08x}",
                        "backend": "local",
                        "state": state,
                        "health": "healthy",
                        "created_at": now - timedelta(minutes=i),
                        "terminated_at": now if state == "terminated" else None,
                        "last_heartbeat_at": None if i % 2 else now,
                        "tags": {"n": str(i)},
                        "meta": {},
                    }
                    for i, state in enumerate(["running", "running", "terminated", "orphaned"])
                ],
            )
        calls = []
        init = ContainerView.__init__

        def counting(self, *args, **kwargs):
            calls.append(1)
            init(self, *args, **kwargs)

        monkeypatch.setattr(ContainerView, "__init__", counting)
        views = store.dashboard(now=now).containers
        assert calls == [] and len(views) == 4
        monkeypatch.setattr(ContainerView, "__init__", init)
        for v in views:
            assert v == ContainerView(**asdict(v))
        # oldest first: orphaned never beat, terminated, running never beat, running beating
        assert [v.health for v in views] == ["unknown", "-", "unknown", "healthy"]
    finally:
        store.close()
