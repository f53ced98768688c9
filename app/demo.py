"""`parhelia tui --demo`: the local backend, its own database under the data dir, and a handful
of real simulated agents, so a new user sees every pane alive within seconds without Modal.

The fleet: busy agents (CPU bursts, log lines), one that finishes, one that stops answering
heartbeats (degraded, then dead), and one started behind the store's back, which the reconciler
finds as an orphan. Quitting the dashboard terminates them all: a demo never leaves agents running.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from parhelia.app.runtime import Runtime
from parhelia.state.private import private_dir

DEMO_FLAGS = {
    "backend": "local",
    "reconciler.interval_seconds": 3.0,
    "reconciler.orphan_grace_seconds": 4.0,
    "reconciler.stale_seconds": 30.0,
    "heartbeat.interval_seconds": 1.0,
    "budget.ceiling_usd": 5.0,
    "budget.period": "day",
    "tui.refresh_seconds": 1.0,
}


def demo_flags() -> dict:
    """The demo's settings; tasks dispatched from its prompt run the simulator too."""
    return {**DEMO_FLAGS, "agent.command": sim_command("finish", 120)}


# (mode, prompt, cpu, memory MiB, gpu-free timeout minutes)
FLEET = [
    ("busy", "Fix the flaky test in tests/test_payments.py", 2.0, 4096, 60),
    ("busy", "Refactor the billing module into smaller services", 4.0, 8192, 120),
    ("spiky", "Add type hints to the parser package", 1.0, 2048, 45),
    ("finish", "Update the changelog for release 2.4", 0.5, 1024, 15),
    ("hang", "Investigate the memory leak in the worker pool", 2.0, 4096, 90),
]


def demo_dir() -> Path:
    from parhelia.app.config import data_dir

    return data_dir() / "demo"


def sim_command(mode: str, seconds: int | None = None) -> str:
    """The simulated agent's command; it stops itself when this (the demo's) process has gone,
    so a demo killed before its cleanup leaves nothing running."""
    extra = f" --seconds {seconds}" if seconds else ""
    return (
        f"{shlex.quote(sys.executable)} -m parhelia.app.agent_sim --mode {mode}{extra} "
        f"--owner {os.getpid()} {{prompt}}"
    )


def prepare_demo(rt: Runtime, *, fresh: bool = True, start: bool = True) -> None:
    """Point the runtime at the demo database and, unless `start` is False, start the demo fleet
    (the dashboard starts it itself, once it can stop it on a hang-up)."""
    root = demo_dir()
    if fresh:
        _stop_previous(root)
        shutil.rmtree(root, ignore_errors=True)
    private_dir(root)
    rt.flags.update(demo_flags())
    rt.flags["db_url"] = f"sqlite:///{root / 'parhelia.db'}"
    rt.flags["local.root"] = str(root / "sandboxes")
    if start:
        start_fleet(rt)


def start_fleet(rt: Runtime) -> list[str]:
    from parhelia.state.requests import TaskRequest
    from parhelia.workers.backends.base import SandboxSpec
    from parhelia.workers.control import ControlPlane

    started = []
    for mode, prompt, cpu, memory, timeout in FLEET:
        settings = replace(
            rt.settings,
            agent=replace(
                rt.settings.agent, command=sim_command(mode, 25 if mode == "finish" else None)
            ),
        )
        control = ControlPlane(
            rt.store,
            settings,
            default_backend="local",
            data_dir=rt.control.data_dir,
            backends={"local": rt.control.backend_for("local")},
        )
        result = control.dispatch(
            TaskRequest(
                prompt=prompt, backend="local", cpu=cpu, memory_mib=memory, timeout_minutes=timeout
            ),
            actor="demo",
        )
        started.append(result.container_id)
    # One agent started behind the store's back, as if a dispatcher had crashed: an orphan to find.
    from parhelia.state.models import new_container_id, new_task_id
    from parhelia.workers.agent_command import build_argv

    argv = build_argv(sim_command("busy"), "Orphaned run of the nightly data export", 1)
    rt.control.backend_for("local").create(
        SandboxSpec(
            container_id=new_container_id(),
            task_id=new_task_id(),
            argv=argv,
            cpu=1.0,
            memory_mib=2048,
            plane_id=rt.store.plane_id,
        )
    )
    return started


def stop_fleet(rt: Runtime) -> int:
    """Terminate every demo container, recorded or orphaned (the reconciler may not have adopted it yet)."""
    stopped = 0
    for c in rt.store.active_containers():
        try:
            rt.control.terminate(c.id, actor="demo", reason="demo_exit")
            stopped += 1
        except Exception:  # best effort: the sweep below catches what is left
            pass
    backend = rt.control.backend_for("local")
    for info in backend.list():
        if info.running:
            backend.terminate(info.sandbox_id)
            stopped += 1
    return stopped


def _stop_previous(root: Path) -> None:
    """A previous demo that was killed may have left agents running: stop them before starting anew."""
    if not (root / "sandboxes").exists():
        return
    from parhelia.workers.backends.local import LocalBackend

    backend = LocalBackend(root / "sandboxes", terminate_grace=1.0)
    try:
        for info in backend.list():
            if info.running:
                backend.terminate(info.sandbox_id)
    except Exception:
        pass
