"""Several processes writing one store (SQLite, and PostgreSQL) at once lose nothing and never see
"database is locked": four writer processes (and a reader) open the same fresh database at the same moment, so
the first-open migration races too, then each writes events, heartbeats and container updates."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sqlalchemy import func, select

from parhelia.state.models import Container, Event, Heartbeat
from parhelia.state.store import Store

WRITERS = 4
N = 60

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from parhelia.state.models import Container
    from parhelia.state.store import Store
    from parhelia.state.timeutil import utcnow

    url, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = Store(url)  # all writers migrate the fresh file at once
    cid = f"c-{me:08x}"
    store.add_container(Container(id=cid, backend="local", sandbox_id=f"sb-{me}", state="running"))
    t0 = utcnow()
    for i in range(n):
        store.add_event("note", f"{me}:{i}", container_id=cid, details={"i": i})
        ts = t0 + timedelta(seconds=i)
        store.record_heartbeats(
            [{"container_id": cid, "ts": ts, "cpu_percent": float(i), "memory_mib": 1.0,
              "memory_percent": 1.0, "disk_percent": 1.0, "uptime_seconds": float(i),
              "agent_alive": True}],
            [{"id": cid, "last_heartbeat_at": ts, "missed_heartbeats": 0, "health": "healthy"}],
        )
        store.update_container(cid, cost_accrued_usd=float(i + 1))
    store.close()
    print("done", me)
    """
)

READER = textwrap.dedent(
    """
    import sys
    from parhelia.state.store import Store

    store = Store(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        store.dashboard()
        store.events(limit=50)
    store.close()
    print("done reader")
    """
)


def test_concurrent_writers_lose_nothing_and_never_lock(database, tmp_path, request):
    # a database with no tables yet, so the first-open migrations race too
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("pg_empty_database")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(me), str(N)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(WRITERS)
    ]
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", READER, url, "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
        assert out.startswith("done"), (out, err)

    store = Store(url)
    try:
        store.merge_heartbeats()  # on SQLite the samples wait in heartbeats_staged
        with store.read() as s:
            msgs = set(s.scalars(select(Event.message).where(Event.type == "note")))
            hb = dict(
                s.execute(
                    select(Heartbeat.container_id, func.count()).group_by(Heartbeat.container_id)
                ).all()
            )
            rows = {c.id: c for c in s.scalars(select(Container))}
        assert msgs == {f"{me}:{i}" for me in range(WRITERS) for i in range(N)}
        assert hb == {f"c-{me:08x}": N for me in range(WRITERS)}
        assert len(rows) == WRITERS
        for me in range(WRITERS):
            c = rows[f"c-{me:08x}"]
            assert c.cost_accrued_usd == float(N) and c.health == "healthy"
            assert c.last_heartbeat_at is not None
        hist = store.heartbeat_history("c-00000000", limit=N)
        assert [h.cpu_percent for h in hist] == [float(i) for i in range(N)]
    finally:
        store.close()
