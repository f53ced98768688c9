"""The dashboard's containers kept between refreshes (`state/live_views.py`): after any write a
refresh shows exactly what a full read shows, and builds again only the rows that changed."""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, update

from parhelia.state import samples
from parhelia.state.errors import ParheliaError
from parhelia.state.live_views import LiveContainers, with_sample
from parhelia.state.models import Container, Task
from parhelia.state.samples import beat
from parhelia.state.samples import moved as moved_samples
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow

T0 = utcnow().replace(microsecond=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'live.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_database")
    )
    s = Store(url)
    rows, tasks = [], []
    for i in range(30):
        tasks.append({"id": f"t-{i:08x}", "prompt": f"p{i}", "backend": "local", "created_at": T0})
        rows.append(
            {
                "id": f"c-{i:08x}",
                "backend": "local",
                "sandbox_id": f"sb-{i}",
                "task_id": f"t-{i:08x}",
                "state": "running" if i < 25 else "terminated",
                "health": "healthy",
                "created_at": T0 - timedelta(minutes=60 - i),
                "started_at": T0 - timedelta(minutes=60 - i),
                "terminated_at": None if i < 25 else T0 - timedelta(minutes=100 - 3 * i),
                "last_heartbeat_at": T0,
                "cost_rate_per_hour": 0.5 + i,
                "cost_accrued_usd": 0.0 if i < 25 else 1.5,
                "tags": {"n": str(i)},
                "meta": {},
                "updated_at": T0,
            }
        )
    with s.write() as w:
        w.execute(insert(Task), tasks)
        w.execute(insert(Container), rows)
    yield s
    s.close()


def both(store: Store, live: LiveContainers, now):
    """The view through `live` and a full read at the same moment."""
    return store.dashboard(now=now, live=live), store.dashboard(now=now)


def same(a, b) -> None:
    """`a`, a live read, shows what `b`, a full read, shows: each view with its heartbeat sample
    (`DashboardView.samples`) is the full read's view."""
    assert b.samples is None
    assert [asdict(with_sample(c, a.samples.get(c.id))) for c in a.containers] == [
        asdict(c) for c in b.containers
    ]
    assert a.budget.spent_usd == pytest.approx(b.budget.spent_usd, abs=1e-9)
    assert a.budget.burn_rate_per_hour == pytest.approx(b.budget.burn_rate_per_hour)


def moved(live: LiveContainers, before) -> set[str]:
    """The rows the last read moved, given the samples before it: a new view, or a heartbeat
    sample beside a view it kept."""
    return live.changed | moved_samples(before, live.samples)


def test_a_refresh_after_each_kind_of_write_shows_what_a_full_read_shows(store):
    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    same(*both(store, live, now))
    assert live.changed is None  # the first read builds everything
    ids = [c.id for c in store.dashboard(now=now).containers]

    # nothing written: nothing built again, the very same view objects
    before = store.dashboard(now=now, live=live).containers
    shown = store.dashboard(now=now, live=live)
    after, before_samples = shown.containers, shown.samples
    assert live.changed == set() and all(a is b for a, b in zip(before, after, strict=True))

    # a heartbeat cycle (no updated_at stamp): health and samples of two rows
    store.record_heartbeats(
        [
            {
                "container_id": ids[1],
                "ts": now,
                "cpu_percent": 42.0,
                "memory_mib": 512.0,
                "memory_percent": 9.0,
                "disk_percent": 1.0,
                "uptime_seconds": 5.0,
                "agent_alive": False,
            }
        ],
        [{"id": ids[2], "last_heartbeat_at": now, "missed_heartbeats": 3, "health": "degraded"}],
    )
    a, b = both(store, live, now)
    same(a, b)
    # the health lives in the view: a new one; a sample alone moves beside the view it keeps
    assert live.changed == {ids[2]} and a.containers[2].health == "degraded"
    assert a.containers[1] is after[1] and a.samples[ids[1]] is not before_samples[ids[1]]
    assert beat(a.containers[1], a.samples[ids[1]])[1] == 42.0
    assert all(a.samples[k] is before_samples[k] for k in ids if k not in (ids[1], ids[2]))

    # a transition (ends a row: stamps updated_at), a new row, a field written with an old clock
    store.transition(ids[3], "terminated", source="user", now=now)
    store.add_container(
        Container(id="c-new00001", backend="local", state="running", created_at=now)
    )
    with store.write() as w:
        w.execute(
            update(Container)
            .where(Container.id == ids[4])
            .values(gpu="A10G", updated_at=T0 - timedelta(days=1))
        )
    a, b = both(store, live, now)
    same(a, b)
    assert {ids[3], ids[4], "c-new00001"} <= live.changed

    # a deleted row and an ended row past the window both leave the view
    with store.write() as w:
        w.execute(delete(Container).where(Container.id == ids[5]))
    later = now + timedelta(minutes=40)  # c-...19 ended 25 min before T0: out of the hour window
    a, b = both(store, live, later)
    same(a, b)
    shown = {c.id for c in a.containers}
    assert ids[5] not in shown and "c-00000019" not in shown and "c-0000001d" in shown


def test_costs_of_unchanged_rows_are_priced_again_once_they_moved(store):
    live = LiveContainers()
    store.dashboard(now=T0, live=live)
    a = store.dashboard(now=T0 + timedelta(seconds=1), live=live)
    full = store.dashboard(now=T0 + timedelta(seconds=1))
    # within a tenth of a cent of a full read's price, and the budget's sum exact
    for x, y in zip(a.containers, full.containers, strict=True):
        assert x.cost_accrued_usd == pytest.approx(y.cost_accrued_usd, abs=0.001)
    assert a.budget.spent_usd == pytest.approx(full.budget.spent_usd, abs=1e-9)
    # a minute on, every active row has moved more than that: all priced at the new moment
    same(*both(store, live, T0 + timedelta(minutes=1)))


def test_a_view_once_handed_out_never_changes(store):
    """A refresh that beats rows and reprices them in the same read prices its own new views in
    place; the views an earlier read handed out (the table compares them by identity, its
    drawn rows and orders were made from them) stay as they were, whatever later reads do."""
    live = LiveContainers()
    handed: list[tuple[object, dict]] = []

    def read(now):
        view = store.dashboard(now=now, live=live)
        handed.extend((c, asdict(c)) for c in view.containers)
        return view

    read(T0)
    ids = [c.id for c in store.dashboard(now=T0).containers]
    for minutes in (1, 2, 3):  # every active row's price has moved by more than it reprices by
        now = T0 + timedelta(minutes=minutes)
        if minutes != 2:  # a heartbeat of every running row, then a refresh with none
            store.record_heartbeats(
                [], [{"id": c, "last_heartbeat_at": now, "missed_heartbeats": 1} for c in ids[:25]]
            )
        same(read(now), store.dashboard(now=now))
    assert all(asdict(view) == seen for view, seen in handed)


def test_the_narrow_read_and_the_whole_rows_by_id_use_their_indexes(store):
    if store.sqlite_path is None:
        pytest.skip("SQLite's plans (PostgreSQL's: tests/test_query_plans.py)")
    """EXPLAIN QUERY PLAN of the two statements a refresh adds: the narrow read goes through the
    state and terminated_at indexes (never a scan of every container ever run), the rows read
    whole through the primary key."""
    import sqlite3

    from sqlalchemy import event

    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM containers" in statement:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.dashboard(now=T0, live=LiveContainers())
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    raw = sqlite3.connect(store.sqlite_path)
    try:
        plans = {
            sql: " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
            for sql, params in seen
        }
    finally:
        raw.close()
    narrow = [p for sql, p in plans.items() if "containers.updated_at" in sql and "JOIN" not in sql]
    whole = [p for sql, p in plans.items() if "containers.id IN" in sql]
    assert narrow and whole, plans
    for plan in narrow:
        assert "USING INDEX ix_containers_state" in plan and "ix_containers_terminated" in plan
        assert "SCAN containers" not in plan, plan
    for plan in whole:
        assert re.search(
            r"SEARCH containers USING (INTEGER PRIMARY KEY|INDEX sqlite_autoindex_containers_1)",
            plan,
        ), plan


def _narrow_reads(store: Store, fn) -> int:
    """How many times `fn()` sends the narrow read (the one with every shown row's columns)."""
    from sqlalchemy import event

    sent = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "containers.missed_heartbeats" in statement and "JOIN" not in statement:
            sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return len(sent)


def test_on_sqlite_a_refresh_after_no_commit_reads_no_rows_and_shows_what_a_full_read_shows(
    store, tmp_path
):
    """SQLite's `containers_revision` says whether any connection wrote a container since the rows
    were read: a refresh with none sends no narrow read (10,000 rows on a 10,000 fleet, most of an
    idle refresh), yet drops the rows ended past the moving window, and sees the next write of any
    connection, another store's included (as another process's)."""
    if store.sqlite_path is None:
        pytest.skip("SQLite's containers_revision (PostgreSQL: its rows' transaction ids, below)")
    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    store.dashboard(now=now, live=live)
    assert _narrow_reads(store, lambda: same(*both(store, live, now))) == 0
    assert live.changed == set()
    # an hour and a half on, nothing written: the rows ended in the window have left it
    later = T0 + timedelta(minutes=40)
    assert _narrow_reads(store, lambda: store.dashboard(now=later, live=live)) == 0
    same(store.dashboard(now=later, live=live), store.dashboard(now=later))
    assert "c-00000019" not in {c.id for c in store.dashboard(now=later, live=live).containers}
    # a write through another store on the same file is read at the next refresh
    other = Store(f"sqlite:///{store.sqlite_path}")
    try:
        other.record_heartbeats(
            [], [{"id": "c-00000003", "last_heartbeat_at": later, "missed_heartbeats": 6}]
        )
    finally:
        other.close()
    before = live.samples
    assert _narrow_reads(store, lambda: store.dashboard(now=later, live=live)) == 1
    assert moved(live, before) == {"c-00000003"}
    same(*both(store, live, later))
    # a window moved back (an earlier `now`) may bring rows back: read again
    back = []
    assert _narrow_reads(store, lambda: back.extend(both(store, live, now))) == 1
    assert [c.id for c in back[0].containers] == [c.id for c in back[1].containers]
    assert "c-00000019" in {c.id for c in back[0].containers}


def test_on_sqlite_a_write_is_seen_whichever_pooled_connection_reads_next(store):
    """Two reader connections in turn: the version read on one is the database's, so a write is
    never hidden by a version read on the other connection (as `PRAGMA data_version`, which is
    each connection's own, would have hidden it)."""
    if store.sqlite_path is None:
        pytest.skip("SQLite's containers_revision")
    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    first, second = store.engine.connect(), store.engine.connect()  # two pooled connections
    first.close()
    second.close()
    for k in range(6):
        store.dashboard(now=now, live=live)
        if k % 2:
            store.update_container("c-00000002", region=f"r{k}")
            a, b = both(store, live, now)
            same(a, b)
            assert a.containers[2].region == f"r{k}"


def test_on_sqlite_only_a_container_write_costs_a_narrow_read_whoever_writes_it(store):
    """Under a heartbeating fleet half the commits touched no container (the staged samples'
    merge, history pruning, events), and each made the refresh fetch every shown row again to
    find nothing (bench/tui.py). Triggers count container writes: a commit that writes none costs
    no narrow read, and every kind of container write, by another connection's plain SQL as by
    the store, costs one and is shown as a full read shows it."""
    import sqlite3

    from parhelia.state.models import Event, ReconcilerRun

    if store.sqlite_path is None:
        pytest.skip("SQLite's containers_revision (PostgreSQL: its rows' transaction ids)")
    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    store.dashboard(now=now, live=live)
    raw = sqlite3.connect(store.sqlite_path, isolation_level=None)  # as another process would
    try:
        quiet = [
            lambda: store.add_events([Event(ts=now, type="note")]),
            lambda: store.record_run(ReconcilerRun(started_at=now, holder="h")),
            lambda: store.merge_heartbeats(),
            lambda: store.prune_history(now - timedelta(days=400), now - timedelta(days=400)),
            lambda: raw.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES "
                "('x', '1', '2026-01-01 00:00:00.000000')"
            ),
        ]
        store.record_heartbeats(  # staged samples (their container rows take them: a write)
            [{"container_id": "c-00000001", "ts": now, "agent_alive": True}]
        )
        store.dashboard(now=now, live=live)
        for write in quiet:
            write()
            assert _narrow_reads(store, lambda: store.dashboard(now=now, live=live)) == 0
            assert live.changed == set()
        written = [
            (
                "UPDATE containers SET last_cpu_percent = 42.0 WHERE id = 'c-00000004'",
                {"c-00000004"},
            ),
            (
                "UPDATE containers SET region = 'eu', updated_at = '2030-01-01 00:00:00.000000' "
                "WHERE id = 'c-00000005'",
                {"c-00000005"},
            ),
            ("DELETE FROM containers WHERE id = 'c-00000006'", set()),
            ("INSERT INTO containers SELECT * FROM copied", {"c-new"}),
        ]
        raw.execute("CREATE TEMP TABLE copied AS SELECT * FROM containers WHERE id = 'c-00000007'")
        raw.execute("UPDATE copied SET id = 'c-new', sandbox_id = 'sb-new'")  # no container written
        assert _narrow_reads(store, lambda: store.dashboard(now=now, live=live)) == 0
        for sql, changed in written:
            raw.execute(sql)
            views: list = []
            before = live.samples
            assert _narrow_reads(store, lambda v=views: v.extend(both(store, live, now))) == 1, sql
            assert moved(live, before) == changed, sql
            same(*views)
            if sql.startswith("DELETE"):
                assert "c-00000006" not in {c.id for c in views[0].containers}
    finally:
        raw.close()


def _seeded_sqlite(path) -> Store:
    s = Store(f"sqlite:///{path}")
    with s.write() as w:
        w.execute(
            insert(Container),
            [
                {
                    "id": f"c-{i:08x}",
                    "backend": "local",
                    "state": "running" if i < 8 else "terminated",
                    "health": "healthy",
                    "created_at": T0 - timedelta(minutes=60 - i),
                    "started_at": T0 - timedelta(minutes=60 - i),
                    "terminated_at": None if i < 8 else T0 - timedelta(minutes=50 - 5 * i),
                    "cost_rate_per_hour": 0.25 * i,
                    "cost_accrued_usd": 0.0 if i < 8 else 1.0,
                    "updated_at": T0,
                    "tags": {},
                    "meta": {},
                }
                for i in range(12)
            ],
        )
    return s


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["beat", "end", "cost", "new", "delete", "nothing", "nothing", "nothing"]),
        st.integers(0, 11),
        st.integers(0, 1800),  # seconds the clock moves before the next refresh
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_after_random_writes_and_clock_moves_a_refresh_shows_what_a_full_read_shows(tmp_path, ops):
    """Heartbeats, transitions, cost writes, new and deleted rows, and refreshes with nothing
    written (SQLite's skipped read) while the window moves: the live view is a full read's (costs
    to the tenth of a cent it reprices by), the budget's spend and burn the same."""
    import uuid

    store = _seeded_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    try:
        live = LiveContainers()
        now = T0
        store.dashboard(now=now, live=live)
        for op, i, seconds in ops:
            cid = f"c-{i:08x}"
            now += timedelta(seconds=seconds)
            with contextlib.suppress(ParheliaError):  # a row already ended, or deleted
                if op == "beat":
                    store.record_heartbeats(
                        [], [{"id": cid, "last_heartbeat_at": now, "missed_heartbeats": i % 6}]
                    )
                elif op == "end":
                    store.transition(cid, "terminated", source="user", now=now)
                elif op == "cost":
                    store.update_container(cid, cost_accrued_usd=float(i))
                elif op == "new":
                    store.add_container(
                        Container(
                            id=f"c-new{uuid.uuid4().hex[:5]}",
                            backend="local",
                            state="running",
                            created_at=now,
                            started_at=now,
                            cost_rate_per_hour=1.0,
                        )
                    )
                elif op == "delete":
                    with store.write() as w:
                        w.execute(delete(Container).where(Container.id == cid))
            a, b = store.dashboard(now=now, live=live), store.dashboard(now=now)
            strip = lambda v, s=None: {**asdict(with_sample(v, s)), "cost_accrued_usd": None}  # noqa: E731
            assert [strip(c, a.samples.get(c.id)) for c in a.containers] == [
                strip(c) for c in b.containers
            ]
            for x, y in zip(a.containers, b.containers, strict=True):
                assert x.cost_accrued_usd == pytest.approx(y.cost_accrued_usd, abs=0.001)
            assert a.budget.spent_usd == pytest.approx(b.budget.spent_usd, abs=1e-9)
            assert a.budget.burn_rate_per_hour == pytest.approx(b.budget.burn_rate_per_hour)
    finally:
        store.close()


def _delete(store: Store, cid: str) -> None:
    with store.write() as w:
        w.execute(delete(Container).where(Container.id == cid))


def test_on_postgresql_only_a_container_write_costs_a_narrow_read(store):
    """PostgreSQL's WAL position moved with every commit on the server, so a commit that wrote
    no container (an event, a pruning) cost a narrow read that found nothing. The shown rows'
    count and transaction ids say whether one was written: no write, or a write elsewhere, sends
    no narrow read; a container's insert, update or delete, by another store, sends one."""
    from parhelia.state.models import Event

    if store.sqlite_path is not None:
        pytest.skip("PostgreSQL's rows' transaction ids (SQLite: containers_revision, above)")
    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    store.dashboard(now=now, live=live)
    reads = [_narrow_reads(store, lambda: store.dashboard(now=now, live=live)) for _ in range(3)]
    assert reads == [0, 0, 0]
    store.add_events([Event(ts=now, type="note")])
    store.prune_history(now - timedelta(days=400), now - timedelta(days=400))
    assert _narrow_reads(store, lambda: store.dashboard(now=now, live=live)) == 0
    same(store.dashboard(now=now, live=live), store.dashboard(now=now))
    other = Store(store.url)
    try:
        writes = [
            (
                lambda: other.record_heartbeats(
                    [], [{"id": "c-00000003", "last_heartbeat_at": now, "missed_heartbeats": 6}]
                ),
                {"c-00000003"},
            ),
            (lambda: other.update_container("c-00000004", region="eu"), {"c-00000004"}),
            (lambda: other.add_container(Container(id="c-new", backend="local")), {"c-new"}),
            (lambda: _delete(other, "c-00000005"), set()),
        ]
        for write, changed in writes:
            write()
            views: list = []
            before = live.samples
            assert _narrow_reads(store, lambda v=views: v.extend(both(store, live, now))) == 1
            assert moved(live, before) == changed
            same(*views)
    finally:
        other.close()


def test_a_read_in_slices_pauses_between_them_and_shows_what_a_full_read_shows(store, monkeypatch):
    """The dashboard's refresh pauses for a key between slices of a long read (each slice of
    rows fetched, compared and the heartbeats' views renewed); the slices make the same view."""
    from parhelia.state import live_views

    monkeypatch.setattr(live_views, "SLICE_ROWS", 7)
    live, calls = LiveContainers(), []
    live.pause = lambda: calls.append(1)
    now = T0 + timedelta(seconds=5)
    same(*both(store, live, now))
    fetched = len(calls)
    # between the five slices of 30 rows (the last one short)
    assert fetched == 30 // 7
    ids = [c.id for c in store.dashboard(now=now).containers if c.is_active]
    store.record_heartbeats(
        [], [{"id": k, "last_heartbeat_at": now, "missed_heartbeats": 1} for k in ids]
    )
    calls.clear()
    before = live.samples
    a, b = both(store, live, now)
    same(a, b)
    assert live.changed == set() and moved(live, before) == set(ids)  # samples beside kept views
    # the same slices again
    assert len(calls) == fetched


def test_a_heartbeat_cycles_samples_keep_what_did_not_move_as_the_last_samples_held_it(store):
    """The samples a heartbeat cycle leaves hold the last samples' very objects for the columns
    that did not move and one object for the cycle's heartbeat time (the driver's new objects
    for every column of 10,000 rows held 5 MB, twice while a refresh replaced them), and are
    what a full read shows."""
    live = LiveContainers()
    now, later, at = (T0 + timedelta(seconds=n) for n in (5, 6, 10))  # beats, then reads at `at`
    store.dashboard(now=at, live=live)
    ids = [c.id for c in store.dashboard(now=at).containers if c.is_active]
    store.record_heartbeats(
        [], [{"id": k, "last_heartbeat_at": now, "missed_heartbeats": 0} for k in ids]
    )
    store.dashboard(now=at, live=live)
    before = live.samples
    store.record_heartbeats(
        [{"container_id": k, "ts": later, "cpu_percent": 12.5} for k in ids],
        [{"id": k, "last_heartbeat_at": later, "missed_heartbeats": 0} for k in ids],
    )
    same(*both(store, live, at))
    assert live.changed == set()
    after = live.samples
    assert after.keys() == before.keys()
    for k in ids:
        assert after[k] is not before[k]
        assert all(after[k][i] is before[k][i] for i in range(4))  # id, updated_at, state, health
        assert after[k][samples.CPU] == 12.5
        assert next(k_ for k_ in after if k_ == k) is next(k_ for k_ in before if k_ == k)
    assert len({id(after[k][samples.STAMP]) for k in ids}) == 1


def test_a_read_says_which_rows_a_filter_reads_otherwise_the_read_whole_and_the_health_moved(
    store,
):
    """`retexted`: the rows whose text a filter reads may have moved (the containers pane's
    matches stand for the rest): those read whole and those whose shown health a heartbeat
    moved, not the rows whose heartbeat alone moved."""

    live = LiveContainers()
    now = T0 + timedelta(seconds=5)
    store.dashboard(now=now, live=live)
    assert live.retexted is None  # the first read: every row is new
    ids = [c.id for c in store.dashboard(now=now).containers if c.is_active]
    beats = [{"id": k, "last_heartbeat_at": now, "missed_heartbeats": 0} for k in ids]
    beats[3] |= {"missed_heartbeats": 6, "health": "unhealthy"}
    store.record_heartbeats([], beats)
    with store.write() as w:
        w.execute(update(Container).where(Container.id == ids[5]).values(gpu="T4", updated_at=now))
    before = live.samples
    store.dashboard(now=now, live=live)
    # a new view where the health moved or the row was read whole; the rest moved their samples
    assert live.changed == {ids[3], ids[5]} and moved(live, before) >= set(ids)
    assert live.reread == {ids[5]}
    assert live.retexted == {ids[3], ids[5]}
    store.record_heartbeats([], [{"id": k, "last_heartbeat_at": now} for k in ids])
    store.dashboard(now=now + timedelta(seconds=1), live=live)
    assert live.retexted == set()
