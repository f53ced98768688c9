"""Where a read command's time goes, by phase, beside `import sqlmodel` (the floor). Run:
`python bench/cli_phases.py [RUNS]` (bench/cli.py has the end-to-end medians and targets).

Each command runs in a fresh process RUNS times over a store of 1,000 running containers (the
empty store for `status`); each phase's time is its own (a phase inside another is not counted
twice), and the minimum and median over the runs are printed: on a shared machine the minimum is
the better estimate of the work, the median of what a user waits. Phases: Typer, settings, the
read plane (a read command on SQLite: `Runtime.reader`, the quick store without SQLAlchemy),
opening the full store, the control plane (its import, mostly), the refresh pass (`status`), the
read, and the rest (the CLI itself: parsing, command modules, formatting). A module's import
counts in the phase that first imports it. The floor is `import sqlmodel` in a process of its
own, after each run; "over the floor" is the sum of the phases less it (negative: under it).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cli import bench_env, fill  # bench/cli.py: the same 1,000-container store

PROBE = r"""
import functools, json, sys, time
t1 = time.perf_counter()
import typer
t2 = time.perf_counter()
own, stack = {}, []

def timed(fn, label):
    def run(*a, **k):
        stack.append(0.0)
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent = time.perf_counter() - start
            inner = stack.pop()
            own[label] = own.get(label, 0.0) + spent - inner
            if stack:
                stack[-1] += spent
    return run

def wrap_property(cls, name, label):
    prop = cls.__dict__[name]
    new = functools.cached_property(timed(prop.func, label))
    new.__set_name__(cls, name)
    setattr(cls, name, new)

from parhelia.app.runtime import Runtime
wrap_property(Runtime, "loaded", "settings")
wrap_property(Runtime, "store", "store open")

def plane_then_its_methods(build, label):
    def make(rt):
        plane = build(rt)
        cls = type(plane)
        if not cls.__dict__.get("_phases"):  # timed once per class (a subclass has its own)
            for name, what in (("dashboard", "read"), ("container_views", "read"),
                               ("refresh_once", "refresh pass")):
                if hasattr(cls, name):
                    setattr(cls, name, timed(getattr(cls, name), what))
            cls._phases = True
        return plane
    return timed(make, label)

for name, label in (("control", "control plane"), ("reader", "read plane")):
    prop = functools.cached_property(plane_then_its_methods(Runtime.__dict__[name].func, label))
    prop.__set_name__(Runtime, name)
    setattr(Runtime, name, prop)
t3 = time.perf_counter()
from parhelia.app.cli import main
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
t4 = time.perf_counter()
own["CLI, command modules, output"] = (t4 - t3) - sum(own.values())
own["stack: Typer"] = t2 - t1
print(json.dumps({k: v * 1000 for k, v in own.items()}))
"""

FLOOR = "sqlmodel (the floor)"  # its own process each run, as bench/cli.py measures it
FLOOR_PROBE = (
    "import time; t = time.perf_counter(); import sqlmodel; print(time.perf_counter() - t)"
)
ORDER = [
    FLOOR,
    "stack: Typer",
    "settings",
    "read plane",
    "control plane",
    "store open",
    "refresh pass",
    "read",
    "CLI, command modules, output",
]


def main(runs: int = 7) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="parhelia-bench-phases-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    env = bench_env(tmp, url)
    fill(url)
    empty = {**env, "PARHELIA_DB_URL": f"sqlite:///{tmp / 'empty.db'}"}
    cases = [
        ("containers list", ["containers", "list"], env),
        ("status --no-refresh", ["status", "--no-refresh"], env),
        ("tui --once --no-refresh", ["tui", "--once", "--no-refresh"], env),
        ("status, empty store", ["status"], empty),
    ]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    print(f"ms per phase, min / median of {runs} runs (own time: nested phases not counted twice)")
    results = {}
    for name, args, run_env in cases:
        samples = []
        for _ in range(runs):
            r = subprocess.run(
                [sys.executable, "-c", PROBE, *args], env=run_env, capture_output=True, text=True
            )
            sample = json.loads(r.stdout.strip().splitlines()[-1])
            floor = subprocess.run(
                [sys.executable, "-c", FLOOR_PROBE], capture_output=True, text=True, check=True
            )
            sample[FLOOR] = float(floor.stdout) * 1000
            samples.append(sample)
        results[name] = samples
    print(f"{'phase':<30}" + "".join(f"{name:>26}" for name, _, _ in cases))
    for phase in [*ORDER, "over the floor"]:
        cells = []
        for name, _, _ in cases:
            if phase == "over the floor":  # the command's own phases, less the floor's import
                values = [
                    sum(v for k, v in s.items() if k != FLOOR) - s[FLOOR] for s in results[name]
                ]
            else:
                values = [s.get(phase, 0.0) for s in results[name]]
            cells.append(f"{min(values):>12.1f} / {statistics.median(values):>9.1f}")
        print(f"{phase:<30}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
