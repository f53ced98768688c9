"""Start-up and completion times of the CLI. Run: `python bench/cli.py [RUNS]`.

Medians, as subprocesses, of `parhelia --help`, `help E200`, `status` on an empty store (issue 14:
under 0.5 s; nothing reconciles it, so `status` runs a pass), `status` while `reconciler start`
watches the store (it reads the daemon's view), `containers list`, `status --no-refresh`, `tui --once --no-refresh`, `events list`,
`task list`, `reconciler status` and a container-id completion (`_PARHELIA_COMPLETE`), over a store of
1,000 running containers, each beside the floor `python -c "import sqlmodel"` (the import every
store-reading command pays). Targets (issue 16): read commands within 0.1 s of the floor,
`--help` under 0.3 s, an id completion under 0.3 s. The machine may be shared: the load average
is printed with the figures.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.models import Container, Task
from parhelia.state.store import Store

N_CONTAINERS = 1000
STACK_FLOOR = """
import sqlmodel, typer
from sqlalchemy import select
from sqlalchemy.orm import configure_mappers
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.models import Container, Task
configure_mappers()
select(Container).compile()
"""


def fill(url: str) -> None:
    """N_CONTAINERS running containers, each with its task and five events."""
    store = Store(url)
    plane = store.plane_id
    for i in range(N_CONTAINERS):
        cid, tid = f"c-{i:08x}", f"t-{i:08x}"
        store.add_task(Task(id=tid, prompt=f"task {i}", backend="local", status="running"))
        store.add_container(
            Container(
                id=cid,
                backend="local",
                sandbox_id=f"sb-{i:06d}",
                task_id=tid,
                state="running",
                health="healthy",
                tags={"parhelia": "1", "parhelia_container": cid, "parhelia_plane": plane},
            )
        )
    store.add_events(
        [
            make_event(EventType.NOTE, f"note {k}", container_id=f"c-{i:08x}")
            for i in range(N_CONTAINERS)
            for k in range(5)
        ]
    )


def bench_env(tmp: Path, url: str) -> dict[str, str]:
    """A command's environment: the store at `url`, the local backend, config, data and cache
    under `tmp`, and the .pyc files used (an installed package runs from them)."""
    return {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PARHELIA_DB_URL": url,
        "PARHELIA_BACKEND": "local",
        "PARHELIA_CONFIG_HOME": str(tmp / "cfg"),
        "PARHELIA_DATA_DIR": str(tmp / "data"),
        "PARHELIA_CACHE_DIR": str(tmp / "cache"),
    }


@contextlib.contextmanager
def watched(tmp: Path, cli: list[str], env: dict[str, str]):
    """The environment of a copy of the store with `parhelia reconciler start` running on it,
    once its first pass is recorded; the daemon stopped on leaving."""
    source = Path(env["PARHELIA_DB_URL"].removeprefix("sqlite:///"))
    copy = tmp / "watched.db"
    shutil.copyfile(source, copy)
    run_env = {**env, "PARHELIA_DB_URL": f"sqlite:///{copy}"}
    daemon = subprocess.Popen(
        [*cli, "reconciler", "start"],
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.closing(sqlite3.connect(copy)) as db:
                if db.execute("SELECT count(*) FROM reconciler_runs").fetchone()[0]:
                    break
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the reconciler daemon never ran a pass")
            time.sleep(0.2)
        yield run_env
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run. CPU (user + system of the child) moves far less than wall
    time when other work shares the machine, so the two together tell load from a regression."""
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, _cpu() - c0


def medians(argv: list[str], env: dict[str, str], floor: list[str], runs: int):
    """Medians of (command wall, floor wall, command CPU, floor CPU), the runs interleaved so load
    hits both alike."""
    a, b = [], []
    for _ in range(runs):
        b.append(_once(floor, env))
        a.append(_once(argv, env))
    return (
        statistics.median(w for w, _ in a),
        statistics.median(w for w, _ in b),
        statistics.median(c for _, c in a),
        statistics.median(c for _, c in b),
    )


def main(runs: int = 7) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="parhelia-bench-cli-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    # An installed package runs from its .pyc files; a harness's PYTHONDONTWRITEBYTECODE would
    # have every run compile Parhelia's sources (a third of a second) while the floor's are cached.
    import parhelia.app
    import parhelia.state
    import parhelia.widgets
    import parhelia.workers

    for package in (parhelia.app, parhelia.state, parhelia.widgets, parhelia.workers):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)
    env = bench_env(tmp, url)
    fill(url)
    empty_env = {**env, "PARHELIA_DB_URL": f"sqlite:///{tmp / 'empty.db'}"}
    cli = [sys.executable, "-m", "parhelia.app"]
    floor_argv = [sys.executable, "-c", "import sqlmodel"]
    complete_env = {
        **env,
        "_PARHELIA_COMPLETE": "complete_bash",
        "COMP_WORDS": "parhelia containers show c-0000003",
        "COMP_CWORD": "3",
    }
    cases = [
        ("--help", [*cli, "--help"], env, 0.3),
        ("help E200", [*cli, "help", "E200"], env, 0.3),
        ("status, empty store", [*cli, "status"], empty_env, 0.5),
        ("containers list", [*cli, "containers", "list"], env, None),
        ("status --no-refresh", [*cli, "status", "--no-refresh"], env, None),
        ("tui --once --no-refresh", [*cli, "tui", "--once", "--no-refresh"], env, None),
        ("events list", [*cli, "events", "list"], env, None),
        ("task list", [*cli, "task", "list"], env, None),
        ("reconciler status", [*cli, "reconciler", "status"], env, None),
        ("id completion (1,000 containers)", cli, complete_env, 0.3),
    ]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    print(f"{N_CONTAINERS} containers; median of {runs} runs each")
    print(
        f"{'command':<34} {'median':>8} {'floor':>8} {'over floor':>11} {'ratio':>6} "
        f"{'cpu over floor':>15}  target"
    )
    floors = []

    def row(name: str, argv: list[str], run_env: dict[str, str], target: float | None) -> None:
        m, floor, cpu, floor_cpu = medians(argv, run_env, floor_argv, runs)
        floors.append(floor)
        goal = f"< {target:.1f} s" if target else "floor + 0.1 s"
        ok = m < target if target else m - floor < 0.1
        print(
            f"{name:<34} {m:>7.3f}s {floor:>7.3f}s {m - floor:>+10.3f}s {m / floor:>6.2f} "
            f"{cpu - floor_cpu:>+14.3f}s  {goal} {'ok' if ok else 'MISSED'}"
        )

    for name, argv, run_env, target in cases:
        row(name, argv, run_env, target)
    # `status` as it is mostly asked: while a dashboard or `reconciler start` watches the store
    # (a copy of the 1,000 containers' store, the daemon's first pass done); it reads their view
    with watched(tmp, cli, env) as watched_env:
        row("status, a reconciler running", [*cli, "status"], watched_env, None)
    # What the mandated stack costs before Parhelia's own code runs: SQLModel and Typer imported,
    # the store's eight tables declared and mapped, one ORM select compiled (SQLAlchemy configures
    # its mappers on the first). Not a target; it says where the time over `import sqlmodel` goes.
    stack = [sys.executable, "-c", STACK_FLOOR]
    status_argv = [*cli, "status"]
    s_wall, st_wall, s_cpu, st_cpu = medians(status_argv, empty_env, stack, runs)
    print(
        f"stack floor (SQLModel + Typer + the store's tables mapped + one ORM select compiled): "
        f"{st_wall:.3f}s (CPU {st_cpu:.3f}s); `status` on an empty store {s_wall:.3f}s is "
        f"{s_wall - st_wall:+.3f}s over it (CPU {s_cpu - st_cpu:+.3f}s): Parhelia's own modules, "
        "a reconcile and heartbeat pass, the dashboard read and the output"
    )
    # Issue 14's 0.5 s for `status` on an empty store is absolute; the floor it stands on is not.
    floor = statistics.median(floors)
    print(
        f"floor (`python -c 'import sqlmodel'`, median over all rows): {floor:.3f}s, leaving "
        f"{0.5 - floor:+.3f}s for `status` above it under the 0.5 s goal"
        + (" (out of reach at this load: the floor alone takes it)" if floor >= 0.45 else "")
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
