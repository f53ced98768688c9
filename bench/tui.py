"""Benchmark the dashboard at N containers. Run: `python bench/tui.py` (N = 1,000 with 1,000,000
events, then 10,000 with 5,000,000), or `--containers N [--events E]`; `--keys` only the key
figures, `--dashboard` only the `dashboard()` ones, `--once` only `tui --once`.

With N running containers, idle and then with heartbeats written every second by another
process (the real heartbeat poller against an instant fake backend, like a daemon's fleet):

- key press to updated screen, p95 (target < 50 ms): cursor, sort and filter keys posted as the
  terminal driver posts them, timed to the end of the frame that shows what the key asked for (a
  sort's or a filter's rows, which a worker may make; a filter keystroke's echo apart); idle, and
  while all N containers heartbeat every second (a refresh each second competing for the main
  thread); with it, the main thread's CPU from each key to its frame (a shared machine moves it
  less than the wall clock) and the refresh thread's CPU for the pane's orders (`prepare_rows`);
- a change written by another connection to the screen, p95 (target < 500 ms): the database
  watcher's path, from the write's commit (written from another thread, as another process
  would; the write's own time, its wait for a heartbeat cycle's lock included, is printed too);
- CPU of the idle dashboard (target < 5 % of one core) and its resident memory (target < 150 MB):
  the real `parhelia tui --read-only` in a pseudo-terminal, measured with psutil;
- `parhelia tui --once --no-refresh` over N containers and their events, end to end as a
  subprocess (target < 1.5 s), after the same command with the read commands' quick path
  declined (the full store: SQLAlchemy imported; no target).

- `Store.dashboard()` in process (target < 50 ms): the first read (what `--once` pays), the
  dashboard's refresh with nothing changed, and after a heartbeat of every running container.

`--db auto|URL` measures the same on PostgreSQL (bench/pg.py): the seeded store is copied into a
database of its own there by `db copy`'s code, and every figure reads that.

Each size's store is seeded once and kept (bench/fixtures.py: the user cache dir, or
`PARHELIA_BENCH_CACHE`; `=off` seeds afresh); a run works on a copy, its times moved to now.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pty
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)
import psutil
from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).parent))
import store as store_bench
from fixtures import seeded_db
from pg import Databases, copied

from parhelia.state.costs import hourly_rate
from parhelia.state.models import Container, Task
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.base import ProbeSample

N = 1_000  # set per run by main()
PG: Databases | None = None  # --db: the stores are copied into PostgreSQL
SIZES = ((1_000, 1_000_000), (10_000, 5_000_000))  # containers, events
SIZE = (150, 45)
KEY_PRESSES = 300  # a third of them sort keys: p95 of 100 samples
CHANGES = 30  # changes written by another connection, timed from commit to screen
PARHELIA = str(Path(sys.executable).with_name("parhelia"))
random.seed(11)


class InstantBackend:
    """Answers every probe at once: the bench measures the dashboard, not a cloud."""

    name = "modal"

    def probe(self, sandbox_id: str) -> ProbeSample:
        return ProbeSample(
            random.uniform(5, 90), random.uniform(200, 4000), 30.0, 20.0, 600.0, True
        )


def seed(url: str, events: int) -> Store:
    store = Store(url)
    now = utcnow()
    tasks, rows = [], []
    for i in range(N):
        started = now - timedelta(minutes=random.uniform(2, 600))
        cpu, mem = random.choice([(1.0, 2048), (2.0, 4096), (4.0, 8192)])
        gpu = random.choice([None] * 9 + ["A10G"])
        tasks.append(
            {
                "id": f"t-{i:08x}",
                "prompt": f"agent task number {i}",
                "backend": "modal",
                "created_at": started,
            }
        )
        rows.append(
            {
                "id": f"c-{i:08x}",
                "backend": "modal",
                "sandbox_id": f"sb-{i:06d}",
                "task_id": f"t-{i:08x}",
                "state": "running",
                "health": "healthy",
                "created_at": started,
                "started_at": started,
                "last_heartbeat_at": now,
                "cpu_cores": cpu,
                "memory_mib": mem,
                "gpu": gpu,
                "cost_rate_per_hour": hourly_rate(cpu, mem, gpu),
                "tags": {"parhelia": "1"},
                "meta": {},
                "updated_at": now,
            }
        )
    with store.write() as s:
        s.execute(insert(Task), tasks)
        s.execute(insert(Container), rows)
    if events:
        ids = [r["id"] for r in rows]
        store_bench.bulk_load(
            store,
            "events",
            ["ts", "type", "level", "container_id", "task_id", "message", "details", "source"],
            store_bench.event_rows(ids, events),
        )
    return store


def seeded(tmp: str, events: int) -> str:
    """The N-container store for this run: built once (bench/fixtures.py), then copied and its
    containers' times moved to now, as if just seeded."""
    url, reused = seeded_db(
        f"tui-{N}-{events}", Path(tmp) / "bench.db", lambda u: seed(u, events).close()
    )
    if reused:
        store = Store(url)
        with store.write() as s:
            rows = s.execute(
                select(Container.id, Container.created_at, Container.last_heartbeat_at)
            ).all()
            shift = utcnow() - max(r.last_heartbeat_at for r in rows)
            s.execute(
                update(Container),
                [
                    {
                        "id": r.id,
                        "created_at": r.created_at + shift,
                        "started_at": r.created_at + shift,
                        "last_heartbeat_at": r.last_heartbeat_at + shift,
                        "updated_at": r.last_heartbeat_at + shift,
                    }
                    for r in rows
                ],
            )
        store.close()
    return url


def store_url(tmp: str, events: int) -> str:
    """The seeded store for this run: SQLite, or its copy on PostgreSQL with `--db`."""
    url = seeded(tmp, events)
    return copied(url, PG, f"bench_tui_{N}") if PG else url


def dashboard_bench(url: str) -> list[bool]:
    """`Store.dashboard()` in process: first read, refresh with nothing changed, refresh after a
    heartbeat of every running container (the dashboard's own path, state/live_views.py).

    The refreshes after heartbeats are timed twice: under CPython's automatic collection (what a
    plain process pays: its full collections land on some refreshes) and under the dashboard's
    own schedule (app/gc_schedule.py: start-up heap frozen, automatic collection off), with the
    young collection that the refresh's garbage then costs timed after each, as the dashboard
    runs it on its main thread (spaced by its cost: at 10,000 rows not after every refresh). The
    target is judged on refresh + young collection: the worst case, a collection after each."""
    from parhelia.app import gc_schedule
    from parhelia.state.live_views import LiveContainers

    store = Store(url)
    try:
        first = []
        for _ in range(5):
            t = time.perf_counter()
            view = store.dashboard()
            first.append((time.perf_counter() - t) * 1000)
        live = LiveContainers()
        store.dashboard(live=live)
        same = []
        for _ in range(20):
            t = time.perf_counter()
            store.dashboard(live=live)
            same.append((time.perf_counter() - t) * 1000)
        running = [c.id for c in view.containers if c.is_active]

        def beat() -> None:
            now = utcnow()
            store.record_heartbeats(
                [],
                [{"id": c, "last_heartbeat_at": now, "missed_heartbeats": 0} for c in running],
            )

        automatic = []
        for _ in range(10):
            beat()
            t = time.perf_counter()
            store.dashboard(live=live)
            automatic.append((time.perf_counter() - t) * 1000)
        was_enabled = gc_schedule.take_over()
        try:
            refresh, cpu, young, both = [], [], [], []
            for _ in range(20):
                beat()
                gc_schedule.collect_young()  # the heartbeat's own garbage is not the refresh's
                t, c = time.perf_counter(), time.process_time()
                store.dashboard(live=live)
                t1, c1 = time.perf_counter(), time.process_time()
                gc_schedule.collect_young()
                t2 = time.perf_counter()
                refresh.append((t1 - t) * 1000)
                cpu.append((c1 - c) * 1000)  # a shared machine moves it less than the wall clock
                young.append((t2 - t1) * 1000)
                both.append((t2 - t) * 1000)
            floor = []  # reading the rows a heartbeat of every one changed, and nothing else
            for _ in range(20):
                beat()
                gc_schedule.collect_young()
                floor.append(read_changed_rows(store))
            t = time.perf_counter()
            gc.collect()
            full = (time.perf_counter() - t) * 1000
        finally:
            gc_schedule.give_back(was_enabled)
    finally:
        store.close()
    beats = f"{len(running):,} heartbeats"
    print(
        f"{'dashboard() first read (--once, status)':<52} median {statistics.median(first):.0f} ms"
    )
    print(
        f"{f'dashboard() after {beats}, automatic GC':<52} p95 {pct(automatic, 0.95):.1f} ms, "
        f"median {statistics.median(automatic):.1f} ms (no target: not the dashboard's GC)  "
        f"{load()}"
    )
    print(
        f"{f'dashboard() after {beats}, dashboard GC':<52} refresh p95 {pct(refresh, 0.95):.1f} ms"
        f" (median {statistics.median(refresh):.1f}; CPU p95 {pct(cpu, 0.95):.1f}, median "
        f"{statistics.median(cpu):.1f}), its young collection p95 {pct(young, 0.95):.1f} ms "
        f"(median {statistics.median(young):.1f}: the schedule collects each "
        f"{gc_schedule.next_young_in(statistics.median(young) / 1000):.1f} s), the full one (each "
        f"{gc_schedule.FULL_SECONDS:.0f} s) {full:.0f} ms  {load()}"
    )
    print(
        f"{'floor: the changed rows read, nothing built':<52} p95 {pct(floor, 0.95):.1f} ms "
        f"(median {statistics.median(floor):.1f}): the narrow statement's rows as the driver "
        f"returns them; refresh + young GC p95 is {pct(both, 0.95) / pct(floor, 0.95):.1f}x it, "
        f"its median {statistics.median(both) / statistics.median(floor):.1f}x  {load()}"
    )
    return [
        line(
            "dashboard() refresh, nothing changed",
            f"p95 {pct(same, 0.95):.1f} ms",
            pct(same, 0.95),
            50,
        ),
        line(
            f"dashboard() refresh + young GC, {beats}",
            f"p95 {pct(both, 0.95):.1f} ms",
            pct(both, 0.95),
            50,
        ),
    ]


def read_changed_rows(store: Store) -> float:
    """Milliseconds to read what a refresh after a heartbeat of every row must read at least:
    the narrow statement's rows (state/live_views.py), fetched as the driver returns them, in a
    read transaction of the store's, with no view built. The floor under that refresh."""
    from datetime import timedelta

    from parhelia.state.live_views import narrow_query
    from parhelia.state.view_reads import CONTAINER_VIEW_LIMIT

    query = narrow_query(utcnow() - timedelta(hours=1), CONTAINER_VIEW_LIMIT)
    with store.read() as s:
        t = time.perf_counter()
        result = s.connection().execute(query)
        result.cursor.fetchall()
        result.close()
        return (time.perf_counter() - t) * 1000


def run_writer(url: str) -> None:
    """The real heartbeat poller once a second against every container: a live fleet's writes,
    from another process, as a daemon's would be. Runs until killed."""
    from parhelia.workers.heartbeat import HeartbeatPoller

    poller = HeartbeatPoller(Store(url), {"modal": InstantBackend()}, Settings())
    while True:
        t = time.monotonic()
        poller.run_once()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))


def start_writer(url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--writer", url])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def load() -> str:
    """The machine's load (1/5/15 min): it is shared, so each figure carries it."""
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def line(name: str, figure: str, value: float, target: float, lower_is_better: bool = True) -> bool:
    ratio = target / value if lower_is_better and value else value / target
    ok = value <= target if lower_is_better else value >= target
    print(
        f"{name:<52} {figure:<34} target {target:>8g}  ratio {ratio:5.2f}x  "
        f"{'ok' if ok else 'MISSED'}  {load()}",
        flush=True,
    )
    return ok


# -- in-process: key latency and change latency -------------------------------------------------


FILTER_TEXTS = ("number 12", "sb-0042", "state:run", "task 99", "number 7")  # typed, then esc


async def pilot_bench(
    url: str, typing: bool = False, refreshing: bool = True
) -> tuple[dict[str, list[float]], list[float], int]:
    """Key to screen per kind of key, change to screen, refreshes. A sort or filter key is timed
    to the frame that shows its rows (the table's `order_pending` says when an order made by a
    worker is not on screen yet), not to the first frame after it (the header's arrow, the
    filter box's echo). `typing`: the filter keystroke figures too. Not `refreshing`: the
    dashboard reads the store once and never again (no changes timed), so the keys meet only the
    machine's other load (the floor under a fleet's keys: the writer's share of the CPUs)."""
    from textual import events
    from textual.widgets import Input

    from parhelia.app import dashboard
    from parhelia.app.dashboard import ParheliaApp
    from parhelia.widgets.containers_table import ContainersTable
    from parhelia.widgets.events_log import EventsLog
    from parhelia.workers.control import ControlPlane

    settings = Settings()
    settings.tui.refresh_seconds = 1.0
    store = Store(url)
    control = ControlPlane(store, settings, default_backend="modal", backends={})
    app = ParheliaApp(
        control,
        run_loops=False,
        watch_db=refreshing,
        refresh_seconds=1.0 if refreshing else 0.0,
    )
    keys: dict[str, list[float]] = {"navigation": [], "sort": []}
    if typing:
        keys |= {"filter keystroke, echoed": [], "filter keystroke, rows shown": []}
    changes: list[float] = []  # from the write's commit to the frame showing it
    writes: list[float] = []  # the write's own time (its wait for the lock included)
    cpu_ms: dict[str, list[float]] = {}  # the main thread's CPU from each key to its frame
    prepared = prepare_timer(dashboard)
    main_thread = MainThreadWork(ContainersTable)
    async with app.run_test(size=SIZE) as pilot:
        while app.refreshes < 1:
            await pilot.pause(0.05)
        await pilot.pause(1.0)
        table = app.query_one(ContainersTable)
        box = app.query_one("#filter", Input)
        # Key to screen: from the moment the key event is posted (as the terminal driver posts it)
        # to the end of the frame the app writes that shows what the key asked for. Pilot's own
        # waits are not counted.
        pending: list[tuple[str, float, float, object]] = []
        display = app._display

        def order_shown() -> bool:
            return not getattr(table, "order_pending", False)

        def timed_display(screen, renderable) -> None:
            display(screen, renderable)
            if renderable is not None and pending:
                done, done_cpu = time.perf_counter(), time.thread_time()
                for item in list(pending):
                    kind, t, cpu, shown = item
                    if shown():
                        keys[kind].append((done - t) * 1000)
                        cpu_ms.setdefault(kind, []).append((done_cpu - cpu) * 1000)
                        pending.remove(item)

        async def press(key: str, character: str | None, *timed: tuple[str, object]) -> None:
            t, cpu = time.perf_counter(), time.thread_time()  # the app's thread: this one
            pending.extend((kind, t, cpu, shown) for kind, shown in timed)
            app.post_message(events.Key(key, character))
            await asyncio.sleep(random.uniform(0.1, 0.3))  # presses land between refreshes
            deadline = time.perf_counter() + 5
            while any(kind != "navigation" for kind, _, _, _ in pending):  # its rows yet to come
                await asyncio.sleep(0.005)
                if time.perf_counter() > deadline:
                    print(
                        f"!! {key!r} not on screen after 5 s: {[k for k, _, _, _ in pending]}, "
                        f"focused {app.focused!r}, box {box.value!r}, filter "
                        f"{table.filter.text!r}, pending {getattr(table, 'order_pending', '-')}",
                        flush=True,
                    )
                    break
            pending.clear()  # a key that changed nothing on screen is not timed

        app._display = timed_display
        for i in range(KEY_PRESSES):
            key = ("down", "down", "down", "s", "up", "S")[i % 6]
            if key in "sS":
                await press(key, None, ("sort", order_shown))
            else:
                await press(key, None, ("navigation", lambda: True))
        for text in FILTER_TEXTS * 2 if typing else ():
            await press("slash", "/")
            for _ in range(2):  # `/` focuses the box a step later (and a refresh may take it
                # back for a moment): typing waits for it, as a typist sees the box first
                while app.focused is not box:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.05)
            for n, ch in enumerate(text, 1):
                typed = text[:n]
                await press(
                    "space" if ch == " " else ch,
                    ch,
                    ("filter keystroke, echoed", lambda typed=typed: box.value == typed),
                    (
                        "filter keystroke, rows shown",
                        lambda typed=typed: table.filter.text == typed.strip() and order_shown(),
                    ),
                )
            await press("escape", None)
        other = Store(url)  # another connection, as the CLI in another process
        log = app.query_one(EventsLog)
        for i in range(CHANGES if refreshing else 0):
            marker = f"bench change {i} {random.getrandbits(48):x}"  # unique per run
            # written from another thread, as another process writes: the app's loop runs on
            # while the write waits for the lock (a heartbeat cycle may hold it)
            t = time.perf_counter()
            await asyncio.to_thread(other.add_event, "note", marker)
            committed = time.perf_counter()
            while not any(marker in ln.text for ln in log.lines[-20:]):
                await asyncio.sleep(0.005)
                if time.perf_counter() - committed > 5:
                    break
            changes.append(max(0.0, time.perf_counter() - committed) * 1000)
            writes.append((committed - t) * 1000)
            await asyncio.sleep(0.3)
        other.close()
        refreshes = app.refreshes
    if writes:
        print(
            f"{'its write, lock wait included (no target)':<52} p50 "
            f"{pct(writes, 0.5):.0f} ms, p95 {pct(writes, 0.95):.0f} ms  {load()}",
            flush=True,
        )
    store.close()
    dashboard.prepare_rows = prepared.real
    prepare_line(prepared.ms)
    main_thread.report()
    for kind, ms in cpu_ms.items():  # less moved by a busy machine than the wall clock
        print(
            f"{f'main-thread CPU, key to screen, {kind}':<52} p50 {pct(ms, 0.5):.1f} ms, "
            f"p95 {pct(ms, 0.95):.1f} ms  {load()}",
            flush=True,
        )
    return keys, changes, refreshes


class prepare_timer:
    """The refresh thread's `prepare_rows` (the containers pane's orders) timed in its thread's
    CPU time: what the orders cost each refresh, the first (every key made) apart."""

    def __init__(self, module) -> None:
        self.real, self.ms = module.prepare_rows, []
        module.prepare_rows = self

    def __call__(self, *args, **kw):
        t = time.thread_time()
        try:
            return self.real(*args, **kw)
        finally:
            self.ms.append((time.thread_time() - t) * 1000)


class MainThreadWork:
    """What each refresh costs the main thread, where key presses wait: the containers table's
    `show` (its CPU time) and the collections (the dashboard's young one each second, app/
    gc_schedule.py), timed by `gc.callbacks` in whichever thread runs them."""

    def __init__(self, table_class) -> None:
        self.table_class, self.real = table_class, table_class.show
        self.show_ms: list[float] = []
        self.gc_ms: dict[int, list[float]] = {}
        self._started = 0.0
        real, ms = self.real, self.show_ms

        def show(table, *args, **kw):
            t = time.thread_time()
            try:
                return real(table, *args, **kw)
            finally:
                ms.append((time.thread_time() - t) * 1000)

        table_class.show = show
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._started) * 1000
            self.gc_ms.setdefault(info["generation"], []).append(ms)

    def report(self) -> None:
        self.table_class.show = self.real
        gc.callbacks.remove(self._collected)
        if self.show_ms:
            print(
                f"{'main thread: containers table show() CPU':<52} median "
                f"{statistics.median(self.show_ms):.1f} ms, p95 {pct(self.show_ms, 0.95):.1f} ms "
                f"({len(self.show_ms)} refreshes)  {load()}",
                flush=True,
            )
        for generation, ms in sorted(self.gc_ms.items()):
            print(
                f"{f'collections of generation {generation} (up to it)':<52} median "
                f"{statistics.median(ms):.1f} ms, p95 {pct(ms, 0.95):.1f} ms ({len(ms)})  {load()}",
                flush=True,
            )


def prepare_line(ms: list[float]) -> None:
    if len(ms) < 2:
        return
    rest = ms[1:]
    print(
        f"{'refresh thread: prepare_rows CPU per refresh':<52} first {ms[0]:.1f} ms, then "
        f"median {statistics.median(rest):.1f} ms, p95 {pct(rest, 0.95):.1f} ms "
        f"({len(rest)} refreshes)  {load()}",
        flush=True,
    )


# -- out of process: idle CPU and memory of the real dashboard in a terminal ------------------------


def idle_bench(url: str, seconds: float) -> tuple[float, float]:
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    proc = subprocess.Popen(
        [PARHELIA, "--db", url, "--backend", "local", "tui", "--read-only"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    p = psutil.Process(proc.pid)
    try:
        time.sleep(6.0)  # start, first refresh, watcher running
        before = p.cpu_times()
        t = time.monotonic()
        time.sleep(seconds)
        after = p.cpu_times()
        elapsed = time.monotonic() - t
        rss = p.memory_info().rss / 2**20
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        done.set()
        os.close(master)
    cpu = (after.user - before.user + after.system - before.system) / elapsed * 100
    return cpu, rss


# `parhelia ...` with the read commands' quick path declined: the same command on the full store
# (SQLAlchemy and SQLModel imported), for comparison
_FULL_STORE = (
    "import sys\n"
    "from parhelia.state.quick_store import QuickStore\n"
    "QuickStore.open = classmethod(lambda cls, url, full=None: None)\n"
    "from parhelia.app.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def once_bench(url: str, runs: int = 5, *, full_store: bool = False) -> list[float]:
    """Seconds of each `tui --once` at N, a new process each (`full_store`: off the quick path)."""
    command = [sys.executable, "-c", _FULL_STORE] if full_store else [PARHELIA]
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(
            [*command, "--db", url, "tui", "--once", "--no-refresh", "--width", "120"],
            capture_output=True,
            text=True,
        )
        out.append(time.perf_counter() - t)
        assert r.returncode in (0, 1), r.stderr
        assert f"Containers ({N})" in r.stdout, r.stdout[:400]
    return out


def once_lines(url: str, n: int, events: int) -> bool:
    """The judged `tui --once` line, after the same command on the full store (no target)."""
    full = once_bench(url, full_store=True)
    once = once_bench(url)
    print(
        f"{'tui --once on the full store (quick path declined)':<52} median "
        f"{statistics.median(full):.2f} s, max {max(full):.2f} s; the quick path's median is "
        f"{statistics.median(once) / statistics.median(full):.2f}x it  {load()}"
    )
    return line(
        f"tui --once, {n:,} containers + {events:,} events",
        f"median {statistics.median(once):.2f} s, max {max(once):.2f} s",
        statistics.median(once),
        1.5,
    )


def once_only(n: int, events: int) -> int:
    """`--once`: only the `tui --once` figures at N."""
    global N
    N = n
    print(f"== {n:,} containers, {events:,} events, {'postgresql' if PG else 'sqlite'}: --once")
    with tempfile.TemporaryDirectory() as tmp:
        return 0 if once_lines(store_url(tmp, events), n, events) else 1


def keys_only(n: int, events: int) -> int:
    """`--keys`: only the key-to-screen figures (sort, navigation, filter typing) at N."""
    global N
    N = n
    print(f"== {n:,} containers, {events:,} events: keys only", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = store_url(tmp, events)
        idle_keys, _, _ = asyncio.run(pilot_bench(url, typing=True))
        writer = start_writer(url)
        try:
            keys, _, _ = asyncio.run(pilot_bench(url, typing=True))
            floor, _, _ = asyncio.run(pilot_bench(url, typing=True, refreshing=False))
        finally:
            writer.kill()
            writer.wait()
        ok = key_lines(idle_keys, keys, floor)
    return 0 if all(ok) else 1


def dashboard_only(n: int, events: int) -> int:
    """`--dashboard`: only the `Store.dashboard()` figures at N."""
    global N
    N = n
    print(f"== {n:,} containers, {events:,} events: dashboard() only", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ok = dashboard_bench(store_url(tmp, events))
    return 0 if all(ok) else 1


def key_lines(
    idle: dict[str, list[float]],
    live: dict[str, list[float]],
    floor: dict[str, list[float]],
) -> list[bool]:
    """The judged lines, after the floor under the live fleet's: the same keys while the writer
    runs and the dashboard does not refresh (what the writer's share of the CPUs costs a key)."""
    for kind, ms in floor.items():
        live_p95 = pct(live[kind], 0.95)
        print(
            f"{f'floor: {kind}, live fleet, no refresh':<52} p50 {pct(ms, 0.5):.1f} ms, "
            f"p95 {pct(ms, 0.95):.1f} ms; the refreshing dashboard's p95 is "
            f"{live_p95 / pct(ms, 0.95):.2f}x it  {load()}",
            flush=True,
        )
    return [
        line(
            f"key to screen p95, {kind}, {when}",
            f"p50 {pct(ms, 0.5):.1f} ms, p95 {pct(ms, 0.95):.1f} ms",
            pct(ms, 0.95),
            50,
        )
        for when, measured in (("idle", idle), ("live fleet", live))
        for kind, ms in measured.items()
    ]


def run_size(n: int, events: int) -> bool:
    global N
    N = n
    print(f"== {n:,} containers, {events:,} events, {'postgresql' if PG else 'sqlite'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        url = store_url(tmp, events)
        print(f"setup: {n:,} containers, {events:,} events in {time.perf_counter() - t:.1f} s")
        dashboard_ok = dashboard_bench(url)
        once_ok = once_lines(url, n, events)
        idle_cpu, idle_rss = idle_bench(url, seconds=20.0)
        idle_keys, _, _ = asyncio.run(pilot_bench(url, typing=True))
        writer = start_writer(url)
        try:
            keys, changes, refreshes = asyncio.run(pilot_bench(url, typing=True))
            live_cpu, live_rss = idle_bench(url, seconds=20.0)
            floor, _, _ = asyncio.run(pilot_bench(url, typing=True, refreshing=False))
        finally:
            writer.kill()
            writer.wait()
        print(f"(dashboard refreshes during the key bench: {refreshes})")
        # no target: the 5 % is for the idle dashboard; this is what a busy fleet costs to watch
        print(
            f"{f'dashboard CPU, all {n:,} heartbeating each second':<52} {live_cpu:.1f} % of one core"
            f"  {load()}"
        )
        ok = [
            *dashboard_ok,
            *key_lines(idle_keys, keys, floor),
            line(
                "change by another connection, commit to screen, p95",
                f"p50 {pct(changes, 0.5):.0f} ms, p95 {pct(changes, 0.95):.0f} ms",
                pct(changes, 0.95),
                500,
            ),
            line("idle dashboard CPU (% of one core)", f"{idle_cpu:.1f} %", idle_cpu, 5),
            line("idle dashboard resident memory", f"{idle_rss:.0f} MB", idle_rss, 150),
            line(
                "dashboard resident memory, heartbeating fleet", f"{live_rss:.0f} MB", live_rss, 150
            ),
            once_ok,
        ]
    return all(ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, action="append", help="N (repeatable)")
    parser.add_argument("--events", type=int, help="events seeded (default 100 per container)")
    parser.add_argument("--keys", action="store_true", help="only the key-to-screen figures")
    parser.add_argument("--dashboard", action="store_true", help="only the dashboard() figures")
    parser.add_argument("--once", action="store_true", help="only the tui --once figures")
    parser.add_argument("--db", help="auto (a throwaway PostgreSQL server) or a PostgreSQL URL")
    args = parser.parse_args()
    global PG
    if args.db:
        PG = Databases(args.db)
    try:
        return measure(args)
    finally:
        if PG:
            PG.close()


def measure(args) -> int:
    if args.containers:
        default = dict(SIZES)  # the sizes whose stores are kept (bench/fixtures.py)
        sizes = [
            (n, args.events if args.events is not None else default.get(n, 100 * n))
            for n in args.containers
        ]
    else:
        sizes = [(n, args.events if args.events is not None else e) for n, e in SIZES]
    if args.keys:
        return max(keys_only(n, e) for n, e in sizes)
    if args.dashboard:
        return max(dashboard_only(n, e) for n, e in sizes)
    if args.once:
        return max(once_only(n, e) for n, e in sizes)
    results = [run_size(n, e) for n, e in sizes]
    return 0 if all(results) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--writer":
        run_writer(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
