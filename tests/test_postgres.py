"""What only PostgreSQL has: its column types, its query plans, LISTEN/NOTIFY, the lease on the
server's clock, its error paths, and copying a store into it and back. Every test here runs on the
throwaway server of tests/pg_server.py (the `database` fixture is "postgresql" in this module)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, event, select, text, update

from parhelia.state import db
from parhelia.state.copy import copy_store, tables
from parhelia.state.errors import ParheliaError
from parhelia.state.models import Container, Event, Task
from parhelia.state.store import Store
from parhelia.workers.pg_listen import listen_database
from tests.pg_server import PASSWORD, PASSWORD_ROLE
from tests.test_store import T0, container, sample


@pytest.fixture
def pg(store, database):
    assert database == "postgresql"
    return store


# -- schema: the same migrations give PostgreSQL its own types --------------------------------


def test_timestamps_are_timestamptz_and_json_is_jsonb(pg):
    with pg.read() as s:
        types = dict(
            s.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type "
                    "FROM information_schema.columns WHERE table_schema = 'public'"
                )
            ).all()
        )
    assert types["containers.created_at"] == "timestamp with time zone"
    assert types["heartbeats.ts"] == "timestamp with time zone"
    assert types["events.ts"] == "timestamp with time zone"
    for col in ("containers.tags", "containers.metadata", "events.details", "settings.value"):
        assert types[col] == "jsonb", col


def test_timestamps_come_back_aware_utc_whatever_zone_went_in(pg):
    ts = datetime(2026, 3, 10, 14, 0, 0, 123456, tzinfo=__import__("datetime").timezone(
        timedelta(hours=2)))  # fmt: skip
    pg.add_container(container("c-00000001"))
    pg.record_heartbeats([sample("c-00000001", ts)])
    [h] = pg.heartbeat_history("c-00000001")
    assert h.ts == ts and h.ts.utcoffset() == timedelta(0)
    with pg.read() as s:  # stored as the instant, whatever the session's zone
        s.execute(text("SET TIME ZONE 'America/New_York'"))
        assert s.scalar(text("SELECT ts FROM heartbeats")) == ts


def test_every_session_is_in_utc_and_iso_whatever_the_servers_settings(pg):
    """psycopg attaches the session's zone to each `timestamptz` it reads, and in a named zone
    (a server's own: `Etc/UTC`, a local one) it looks each value up: half of the dashboard's
    narrow read at 10,000 containers; the live refresh reads those timestamps as ISO text
    (`db.in_utc`, `view_queries.stamp_text`). On a database whose own defaults are another zone
    and another date style, the store's and the quick path's sessions are in UTC and ISO (after
    a rollback too), and a live refresh after a heartbeat shows what a full read shows."""
    from parhelia.state import samples
    from parhelia.state.live_views import LiveContainers, with_sample
    from parhelia.state.quick_store import QuickStore

    with pg.engine.begin() as conn:
        name = conn.exec_driver_sql("SELECT current_database()").scalar()
        conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
        conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET datestyle = 'SQL, DMY'")
    pg.add_container(container("c-00000001"))
    store = Store(pg.url)  # new connections, which take the database's defaults
    try:
        for _ in range(2):
            with store.read() as s:
                assert s.scalar(text("SHOW TimeZone")) == "UTC"
                assert s.scalar(text("SHOW DateStyle")).startswith("ISO")
                raw = s.connection().exec_driver_sql("SELECT started_at FROM containers").scalar()
                assert raw.tzinfo is UTC and raw == container("c-00000001").started_at
                s.rollback()
        live = LiveContainers()
        now = T0 + timedelta(minutes=5)
        store.dashboard(now=now, live=live)
        beat = T0 + timedelta(minutes=4, microseconds=500_000)  # PostgreSQL writes .5, not .500000
        store.record_heartbeats([], [{"id": "c-00000001", "last_heartbeat_at": beat}])
        view = store.dashboard(now=now, live=live)
        [shown], sample = view.containers, view.samples["c-00000001"]
        # the view kept, the heartbeat read from the sample beside it (`state/samples.py`)
        assert live.changed == set() and samples.beat(shown, sample)[0] == beat
        assert [with_sample(shown, sample)] == store.dashboard(now=now).containers
    finally:
        store.close()
    quick = QuickStore.open(pg.url)
    assert quick is not None
    try:
        with quick._read() as reads:
            assert reads.conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
    finally:
        quick.close()


# -- indexes: the hot queries can use one (EXPLAIN with sequential scans priced out) ----------


def pg_plans(store: Store, fn) -> list[tuple[str, str]]:
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "pg_notify" not in statement:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    plans = []
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.exec_driver_sql("SET enable_seqscan = off")  # a usable index is then always chosen
        for sql, params in seen:
            rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
            plans.append((sql, " | ".join(r[0] for r in rows)))
    return plans


@pytest.fixture
def busy(pg):
    pg.add_task(Task(id="t-00000001", prompt="p", backend="local"))
    ids = [f"c-0000000{i}" for i in range(1, 5)]
    for cid in ids:
        pg.add_container(container(cid, task_id="t-00000001", started_at=T0))
    pg.record_heartbeats(
        [sample(c, T0 - timedelta(seconds=30 * k)) for k in range(50) for c in ids]
    )
    pg.add_events(
        [
            Event(
                ts=T0 - timedelta(seconds=k),
                type="note" if k % 10 == 0 else "user.action",  # a tenth of the rows: an index pays
                level=lv,
                container_id=c,
                task_id="t" if k % 10 == 0 else "u",
            )
            for k in range(50)
            for c in ids
            for lv in ("info", "warning")
        ]
    )
    return pg


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda s: s.events(container_id="c-00000001", level="warning"), "ix_events_container"),
        (lambda s: s.events(task_id="t"), "ix_events_task_ts"),
        (lambda s: s.events(types=["note"]), "ix_events_type_ts"),
        (lambda s: s.events(limit=50), "ix_events_ts"),
        (lambda s: s.heartbeat_history("c-00000001"), "ix_heartbeats_container_ts"),
        (lambda s: s.containers_by_state("running"), "ix_containers_state"),
    ],
)
def test_hot_queries_have_their_index(busy, query, index):
    # (history also reads the samples an SQLite store staged, a copy's: a small table, no index)
    plans = [p for p in pg_plans(busy, lambda: query(busy)) if "heartbeats_staged" not in p[0]]
    [(sql, plan)] = plans
    assert re.search(rf"(Index Scan (Backward )?using|Bitmap Index Scan on) {index}", plan), (
        sql,
        plan,
    )


def test_dashboard_never_scans_events_or_heartbeats(busy):
    plans = pg_plans(busy, lambda: busy.dashboard(now=T0))
    assert len(plans) >= 4
    for sql, plan in plans:
        assert "Seq Scan on events" not in plan and "Seq Scan on heartbeats" not in plan, (
            sql,
            plan,
        )


# -- error paths: E701 with the password masked, E700 for a newer schema ---------------------


def test_bad_credentials_are_e701_without_the_password(pg_cluster, pg_database, parhelia_env):
    url = pg_database.replace("postgres@", f"{PASSWORD_ROLE}:wrong-{PASSWORD}@")
    with pytest.raises(ParheliaError) as err:
        Store(url)
    assert err.value.code == "E701"
    assert PASSWORD not in err.value.message and "password authentication failed" in (
        err.value.message
    )
    for args in (("db", "status"), ("db", "migrate"), ("containers", "list")):
        r = parhelia_env.run("--db", url, *args)
        assert r.code != 0 and "E701" in r.err, (args, r.err)
        assert PASSWORD not in r.out + r.err and "***" in r.err


def test_the_right_password_works_and_is_never_printed(pg_database, parhelia_env):
    url = pg_database.replace("postgres@", f"{PASSWORD_ROLE}:{PASSWORD}@")
    with Store(pg_database).engine.begin() as conn:  # let the role use the test's database
        conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {PASSWORD_ROLE}"))
        conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {PASSWORD_ROLE}"))
    data = parhelia_env.ok("--db", url, "db", "status")
    assert data["up_to_date"] and PASSWORD not in data["url"] and "***" in data["url"]
    r = parhelia_env.run("--db", url, "tui", "--once")
    assert r.code == 0, r.err
    assert PASSWORD not in r.out + r.err


def test_unreachable_server_is_e701(parhelia_env):
    from tests.pg_server import free_port

    url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    for args in (("db", "status"), ("tui", "--once"), ("task", "list")):
        r = parhelia_env.run("--db", url, *args)
        assert r.code != 0 and "E701" in r.err and "refused" in r.err, (args, r.err)
        assert PASSWORD not in r.out + r.err


def test_a_newer_schema_is_refused_and_left_untouched(pg_database, parhelia_env):
    with Store(pg_database).engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(ParheliaError) as err:
        Store(pg_database)
    assert err.value.code == "E700"
    r = parhelia_env.run("--db", pg_database, "db", "migrate")
    assert r.code != 0 and "E700" in r.err
    s = Store(pg_database, migrate=False)
    assert db.current_revision(s.engine) == "9999_from_the_future"
    s.close()


def test_an_empty_database_migrates_from_the_cli(pg_empty_database, parhelia_env):
    assert parhelia_env.ok("--db", pg_empty_database, "db", "status")["revision"] is None
    data = parhelia_env.ok("--db", pg_empty_database, "db", "migrate")
    assert data["before"] is None and data["after"] == db.HEAD_REVISION
    assert parhelia_env.ok("--db", pg_empty_database, "db", "status")["up_to_date"]


# -- LISTEN/NOTIFY: one notification per committed write transaction --------------------------


def notifications(url: str):
    import psycopg

    from parhelia.workers.pg_listen import conninfo

    conn = psycopg.connect(conninfo(url), autocommit=True)
    conn.execute(f"LISTEN {db.CHANGE_CHANNEL}")
    return conn


def drain(conn, timeout=0.3) -> int:
    return sum(1 for _ in conn.notifies(timeout=timeout))


def test_one_notification_per_committed_transaction_none_for_a_rollback(pg):
    listener = notifications(pg.url)
    try:
        pg.add_container(container("c-00000001"))
        pg.add_container(container("c-00000002"))
        assert drain(listener) == 2
        pg.record_heartbeats(  # a thousand rows, one transaction
            [sample(c, T0 + timedelta(seconds=k)) for k in range(500) for c in ("c-00000001",
                                                                               "c-00000002")]
        )  # fmt: skip
        assert drain(listener) == 1
        with pytest.raises(RuntimeError), pg.write() as s:
            s.add(Event(type="x", message="never committed"))
            raise RuntimeError("rolled back")
        pg.containers()  # reads notify nobody
        assert drain(listener) == 0
    finally:
        listener.close()


WRITER = textwrap.dedent(
    """
    import sys
    from parhelia.state.store import Store
    store = Store(sys.argv[1])
    store.add_event("note", "from another process")
    store.close()
    """
)


def test_a_commit_in_another_process_reaches_the_listener(pg):
    changed, ready, stop = threading.Event(), threading.Event(), threading.Event()
    thread = threading.Thread(
        target=listen_database, args=(pg.url, changed.set, stop), kwargs={"ready": ready}
    )
    thread.start()
    try:
        assert ready.wait(10)
        assert not changed.is_set()
        done = subprocess.run(
            [sys.executable, "-c", WRITER, pg.url], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert changed.wait(10)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


# -- the lease goes by the database's clock ----------------------------------------------------


def test_the_lease_uses_the_database_clock_not_the_laptops(pg, monkeypatch):
    import parhelia.state.store as store_mod

    assert pg.acquire_lease("laptop-a", 60)
    with pg.read() as s:
        server_now = s.scalar(text("SELECT now()"))
    lease = pg.get_lease()
    assert abs((lease.acquired_at - server_now).total_seconds()) < 5
    # laptop B's clock runs two hours fast: by its clock A's lease expired long ago
    monkeypatch.setattr(store_mod, "utcnow", lambda: datetime.now(UTC) + timedelta(hours=2))
    assert not pg.acquire_lease("laptop-b", 60)
    assert pg.get_lease().holder == "laptop-a"


def test_two_processes_racing_for_the_lease_get_one_holder(pg):
    racer = textwrap.dedent(
        """
        import sys
        from parhelia.state.store import Store
        s = Store(sys.argv[1])
        print(sum(s.acquire_lease(sys.argv[2], 60) for _ in range(20)))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", racer, pg.url, f"h{i}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]  # fmt: skip
    wins = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        wins.append(int(out))
    assert sorted(w > 0 for w in wins) == [False, False, True], wins  # one holder, all 20 times
    assert max(wins) == 20


# -- db copy: SQLite into PostgreSQL and back, everything intact -------------------------------


def snapshot(url: str) -> dict:
    s = Store(url, migrate=False)
    try:
        with s.engine.connect() as conn:
            return {
                t.name: [
                    dict(r._mapping)
                    for r in conn.execute(select(t).order_by(*t.primary_key.columns))
                ]
                for t in tables()
            }
    finally:
        s.close()


def seed(store: Store) -> None:
    store.add_task(Task(id="t-00000001", prompt="fix the tests ✓", backend="local"))
    store.add_container(container("c-00000001", task_id="t-00000001", tags={"parhelia": "1"},
                                  started_at=T0))  # fmt: skip
    store.add_container(container("c-00000002", "terminated", started_at=T0, terminated_at=T0))
    store.record_heartbeats([sample("c-00000001", T0 + timedelta(seconds=k)) for k in range(30)])
    store.add_event("note", "hello", details={"nested": [1, 2, {"a": None}]}, ts=T0)
    # what COPY's text form must escape: tab, newline, backslash, quotes, \N, in text and in JSON
    awkward = 'a\tb\nc \\ d "e" \\N ✓'
    store.add_event("note", awkward, details={awkward: [awkward, None]}, ts=T0)
    store.set_setting("budget.ceiling_usd", 40.0)
    store.set_setting("plane.id", "p-5eed5eed")  # wherever the plane id lives, it is a row
    store.acquire_lease("host:1", 60, now=T0)


def test_copy_sqlite_to_postgresql_and_back_keeps_every_row(tmp_path, pg_empty_database):
    src = f"sqlite:///{tmp_path / 'src.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    s = Store(src)
    seed(s)
    s.close()
    seen: list[tuple[str, int]] = []
    copied = copy_store(src, pg_empty_database, lambda t, n: seen.append((t, n)))
    # the settings: the source's own control-plane id (made on its first open) and the two seeded
    assert copied["heartbeats"] == 30 and copied["containers"] == 2 and copied["settings"] == 3
    assert sum(n for _, n in seen) == sum(copied.values())
    assert [t for t, _ in seen].index("tasks") < [t for t, _ in seen].index("containers")
    original = snapshot(src)
    assert snapshot(pg_empty_database) == original
    # vacuumed and analyzed: until autovacuum came, the first reads of rows loaded by COPY went
    # slowly (a first `tui --once` on a fresh copy of 10,000 containers: 1.4-1.7 s, 1.1-1.2 s after)
    engine = create_engine(pg_empty_database)
    try:
        with engine.connect() as conn:
            vacuumed = dict(
                conn.exec_driver_sql(
                    "SELECT relname, vacuum_count FROM pg_stat_user_tables WHERE relname IN "
                    "('containers', 'heartbeats', 'events')"
                ).all()
            )
            analyzed = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'containers'"
            ).scalar()
    finally:
        engine.dispose()
    assert vacuumed == {"containers": 1, "heartbeats": 1, "events": 1}
    assert analyzed > 0  # the planner's statistics
    copy_store(pg_empty_database, back)
    assert snapshot(back) == original
    # the sequences moved past the copied ids: new rows go on from there
    pg = Store(pg_empty_database)
    ev = pg.add_event("note", "the copy")
    assert ev.id == max(e["id"] for e in original["events"]) + 1
    pg.close()


def test_copy_refuses_a_target_that_is_not_empty(tmp_path, pg):
    src = f"sqlite:///{tmp_path / 'src.db'}"
    s = Store(src)
    seed(s)
    s.close()
    pg.add_event("note", "already here")
    before = snapshot(pg.url)
    with pytest.raises(ParheliaError) as err:
        copy_store(src, pg.url)
    assert err.value.code == "E704" and "1 events" in err.value.message
    assert snapshot(pg.url) == before


def test_db_copy_command(tmp_path, pg_empty_database, parhelia_env):
    src = f"sqlite:///{tmp_path / 'src.db'}"
    s = Store(src)
    seed(s)
    s.close()
    target = pg_empty_database.replace("postgres@", f"postgres:{PASSWORD}@")  # trusted anyway
    data = parhelia_env.ok("--db", src, "db", "copy", "--to", target)
    assert data["rows"]["heartbeats"] == 30 and PASSWORD not in data["to"]
    r = parhelia_env.run("--db", src, "db", "copy", "--to", target)
    assert r.code != 0 and "E704" in r.err and PASSWORD not in r.err


# -- two engineers on one database ------------------------------------------------------------


def test_a_terminate_by_one_engineer_shows_on_the_others_view(pg):
    other = Store(pg.url)  # another laptop: its own process, its own connections
    try:
        pg.add_container(container("c-00000001", started_at=T0))
        assert [c.id for c in other.dashboard(now=T0).containers] == ["c-00000001"]
        with other.write() as s:
            s.execute(update(Container).values(state="terminated", terminated_at=T0))
        assert pg.dashboard(now=T0).containers[0].state == "terminated"
    finally:
        other.close()


def test_copy_goes_into_a_database_parhelia_opened_once(tmp_path, pg):
    """Opening a database makes its control-plane id and nothing else: that is still an empty
    target, and the copy brings the source's plane id in its place."""
    src = f"sqlite:///{tmp_path / 'src.db'}"
    s = Store(src)
    seed(s)
    plane = s.plane_id
    s.close()
    assert pg.plane_id and pg.plane_id != plane
    copy_store(src, pg.url)
    again = Store(pg.url)
    assert again.plane_id == plane
    again.close()
