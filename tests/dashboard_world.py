"""A fixed, deterministic fleet for dashboard tests, snapshots and golden files.

Every state and health the dashboard draws, at fixed times, with fixed ids: a healthy agent with a
heartbeat history, a degraded one, a dead one, a GPU agent, an orphan, one that stopped and one
terminated by a user; events of every level; a budget at its warning level. The in-memory backend
lists exactly the sandboxes the store knows as live, so a reconcile changes nothing by itself.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from parhelia.state.costs import hourly_rate
from parhelia.state.keys import PLANE_KEY
from parhelia.state.models import Container, Task
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.workers.backends.base import SandboxInfo
from parhelia.workers.control import ControlPlane
from tests.fakes import MemoryBackend

NOW = datetime(2026, 11, 24, 15, 30, 0, tzinfo=UTC)
# The world's control-plane id, fixed so the header reads the same in every run (a store makes a
# random one on its first open; the world overwrites it before anything reads it).
PLANE = "cp-5eed0000000000a1"
HOLDER = "tests:dashboard"

# id, state, health, prompt, cpu, memory, gpu, started minutes ago, missed, cpu %, mem MiB
FLEET = [
    (
        "c-0000a001",
        "running",
        "healthy",
        "Fix the flaky test in tests/test_payments.py",
        2.0,
        4096,
        None,
        135,
        0,
        37.0,
        1210.0,
    ),
    (
        "c-0000a002",
        "running",
        "degraded",
        "Refactor the billing module into services",
        4.0,
        8192,
        None,
        48,
        3,
        88.0,
        6100.0,
    ),
    (
        "c-0000a003",
        "running",
        "dead",
        "Investigate the memory leak in the worker pool",
        2.0,
        4096,
        None,
        200,
        12,
        None,
        None,
    ),
    (
        "c-0000a004",
        "running",
        "healthy",
        "Fine-tune the ranking model on CUDA",
        4.0,
        16384,
        "A10G",
        25,
        0,
        64.0,
        9800.0,
    ),
    ("c-0000a005", "orphaned", "unknown", None, 1.0, 2048, None, 80, 0, None, None),
    (
        "c-0000a006",
        "stopped",
        "healthy",
        "Update the changelog for release 2.4",
        0.5,
        1024,
        None,
        30,
        0,
        None,
        None,
    ),
    (
        "c-0000a007",
        "terminated",
        "healthy",
        "Add type hints to the parser package",
        1.0,
        2048,
        None,
        50,
        0,
        None,
        None,
    ),
]
ACTIVE = ("running", "orphaned")


def settings(**budget) -> Settings:
    s = Settings()
    s.agent.command = "echo {prompt}"
    s.budget = replace(s.budget, ceiling_usd=7.5, period="day", **budget)
    s.tui.refresh_seconds = 0
    return s


def seed(store: Store, now: datetime = NOW) -> MemoryBackend:
    """Write the fleet, its heartbeats and events; return a backend listing its live sandboxes."""
    backend = MemoryBackend()
    store.set_setting(PLANE_KEY, PLANE, actor="tests")
    tasks, rows = [], []
    for i, (cid, state, health, prompt, cpu, mem, gpu, ago, missed, cpu_pct, _mem) in enumerate(
        FLEET
    ):
        started = now - timedelta(minutes=ago)
        tid = f"t-0000b00{i + 1}" if prompt else None
        if tid:
            tasks.append(
                Task(id=tid, prompt=prompt, backend="local", created_at=started, status="running")
            )
        rate = hourly_rate(cpu, mem, gpu)
        ended = started + timedelta(minutes=ago - 5) if state == "terminated" else None
        sid = f"sb-w{i + 1:03d}"
        tags = {"parhelia": "1", "parhelia_container": cid, "parhelia_plane": PLANE}
        if tid:
            tags["parhelia_task"] = tid
        rows.append(
            Container(
                id=cid,
                backend="local",
                sandbox_id=sid,
                task_id=tid,
                state=state,
                health=health,
                created_at=started,
                started_at=started,
                terminated_at=ended,
                termination_reason="user" if ended else None,
                terminated_by="user:cli" if ended else None,
                exit_code=143 if ended else (0 if state == "stopped" else None),
                last_heartbeat_at=now - timedelta(seconds=30 * max(1, missed))
                if cpu_pct or missed
                else None,
                missed_heartbeats=missed,
                cpu_cores=cpu,
                memory_mib=mem,
                gpu=gpu,
                cost_rate_per_hour=rate,
                cost_accrued_usd=rate * (ago - 5) / 60 if ended else 0.0,
                tags=tags,
                meta={},
                updated_at=now,
            )
        )
        if state in ACTIVE:
            backend.sandboxes[sid] = SandboxInfo(
                sandbox_id=sid, backend="local", tags=tags, created_at=started
            )
    for t in tasks:
        store.add_task(t)
    for c in rows:
        store.add_container(c)
    samples = []
    for cid, *_rest, cpu_pct, mem_used in FLEET:
        if cpu_pct is None:
            continue
        for k in range(24, 0, -1):
            wave = (k * 37) % 50
            samples.append(
                dict(
                    container_id=cid,
                    ts=now - timedelta(seconds=30 * k),
                    cpu_percent=max(1.0, cpu_pct - 25 + wave),
                    memory_mib=mem_used - 10 * k,
                    memory_percent=40.0,
                    disk_percent=10.0,
                    uptime_seconds=3600.0,
                    agent_alive=True,
                )
            )
    store.record_heartbeats(samples)
    events = [
        (
            "container.state",
            "info",
            "dispatcher",
            "c-0000a001",
            "c-0000a001 running as local sandbox sb-w001",
            "created",
            "running",
            None,
            135,
        ),
        (
            "container.health",
            "warning",
            "heartbeat",
            "c-0000a002",
            "healthy → degraded (3 missed)",
            "healthy",
            "degraded",
            None,
            3,
        ),
        (
            "container.health",
            "error",
            "heartbeat",
            "c-0000a003",
            "unhealthy → dead (12 missed; agent process gone)",
            "unhealthy",
            "dead",
            None,
            2,
        ),
        (
            "container.orphaned",
            "warning",
            "reconciler",
            "c-0000a005",
            "orphan: local sandbox sb-w005 runs with no record",
            None,
            "orphaned",
            None,
            2,
        ),
        (
            "user.terminate",
            "info",
            "user",
            "c-0000a007",
            "c-0000a007 terminated by user:cli",
            "running",
            "terminated",
            "user:cli",
            1,
        ),
        (
            "budget.warning",
            "warning",
            "budget",
            None,
            "budget at 50% of $7.50 this day",
            None,
            "50",
            "budget-guard",
            1,
        ),
    ]
    for etype, level, source, cid, msg, old, new, actor, ago in events:
        store.add_event(
            etype,
            msg,
            level=level,
            source=source,
            container_id=cid,
            old_value=old,
            new_value=new,
            actor=actor,
            ts=now - timedelta(minutes=ago),
        )
    return backend


def control(store: Store, backend: MemoryBackend, now: datetime = NOW, **budget) -> ControlPlane:
    return ControlPlane(
        store,
        settings(**budget),
        default_backend="local",
        backends={"local": backend},
        clock=lambda: now,
        holder=HOLDER,
    )
