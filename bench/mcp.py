"""Benchmark the MCP server as an agent meets it. Run: `python bench/mcp.py`.

Against a real `parhelia mcp serve` subprocess (official MCP client over stdio) on a temporary
store with 50 running containers (5 of them orphans), 50 tasks and 500 events:

- response size of each list tool in tokens, estimated as bytes / 4 (no tokenizer: the ratio is
  what matters), without and with a typical `fields`, and the ratio (SPEC-20 target: a halving,
  ratio >= 2);
- delivery: another process commits an event; the time until this client receives the resource
  update notification for parhelia://events. p50/p95/max over 100 events (target p95 < 500 ms).
  Both clocks are this machine's `time.time()`.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

# This file is named like the SDK: keep its folder off the import path so `import mcp` finds the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

N = 50
N_EVENTS = 500
DELIVERIES = 100

# What an agent typically keeps of each record.
TYPICAL_FIELDS = {
    "containers_list": ["id", "state", "health", "cost_accrued_usd"],
    "containers_orphans": ["id", "sandbox_id", "cost_rate_per_hour"],
    "events_list": ["ts", "type", "message"],
    "events_recent": ["ts", "type", "message"],
    "task_list": ["id", "status", "estimated_cost_usd"],
    "status": ["status", "attention", "dashboard.budget", "dashboard.containers.id"],
}


def seed(url: str) -> None:
    from sqlalchemy import insert

    from parhelia.state.costs import hourly_rate
    from parhelia.state.models import Container, Task
    from parhelia.state.store import Store
    from parhelia.state.timeutil import utcnow

    random.seed(7)
    store = Store(url)
    now = utcnow()
    tasks, rows = [], []
    for i in range(N):
        started = now - timedelta(minutes=random.uniform(2, 300))
        tasks.append(
            {
                "id": f"t-{i:08x}",
                "prompt": f"fix the flaky test in module {i} and open a pull request",
                "backend": "modal",
                "created_at": started,
                "estimated_cost_usd": 0.3,
            }
        )
        rows.append(
            {
                "id": f"c-{i:08x}",
                "backend": "modal",
                "sandbox_id": f"sb-{i:06d}",
                "task_id": f"t-{i:08x}",
                "state": "orphaned" if i % 10 == 0 else "running",
                "health": "healthy",
                "created_at": started,
                "started_at": started,
                "last_heartbeat_at": now,
                "cpu_cores": 2.0,
                "memory_mib": 4096,
                "cost_rate_per_hour": hourly_rate(2.0, 4096),
                "tags": {"parhelia": "1", "parhelia-container": f"c-{i:08x}"},
                "meta": {},
                "updated_at": now,
            }
        )
    with store.write() as s:
        s.execute(insert(Task), tasks)
        s.execute(insert(Container), rows)
    for i in range(N_EVENTS):
        c = rows[i % N]
        store.add_event(
            "container.health",
            f"{c['id']} heartbeat on time again after a slow minute ({i})",
            container_id=c["id"],
            task_id=c["task_id"],
            old_value="degraded",
            new_value="healthy",
        )
    store.close()


def run_writer(url: str) -> None:
    """Another process: for each line on stdin, commit one event and print when it committed."""
    from parhelia.state.store import Store

    store = Store(url)
    for n, _line in enumerate(sys.stdin):
        store.add_event("note", f"delivery {n}")
        sys.stdout.write(f"{time.time()}\n")
        sys.stdout.flush()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


async def measure(url: str, env: dict) -> tuple[dict, list[float]]:
    import anyio
    import mcp.types as types
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    received: list[float] = []
    got = anyio.Event()

    async def on_message(message):
        nonlocal got
        if isinstance(message, types.ResourceUpdatedNotification) and (
            str(message.params.uri) == "parhelia://events"
        ):
            received.append(time.time())
            got.set()

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "parhelia.app", "mcp", "serve"], env=env
    )
    sizes: dict[str, tuple[int, int]] = {}
    latencies: list[float] = []
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=on_message) as s,
    ):
        await s.initialize()
        for tool, fields in TYPICAL_FIELDS.items():
            full = await s.call_tool(tool, {})
            cut = await s.call_tool(tool, {"fields": fields})
            assert not full.is_error and not cut.is_error, (full.content, cut.content)
            sizes[tool] = (len(full.content[0].text.encode()), len(cut.content[0].text.encode()))

        await s.subscribe_resource("parhelia://events")
        writer = subprocess.Popen(
            [sys.executable, __file__, "--writer", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            for _ in range(DELIVERIES):
                got = anyio.Event()
                received.clear()
                writer.stdin.write("go\n")
                writer.stdin.flush()
                committed = float(await anyio.to_thread.run_sync(writer.stdout.readline))
                with anyio.fail_after(5):
                    await got.wait()
                latencies.append((received[0] - committed) * 1000)
                await anyio.sleep(0.05)  # let a watcher's debounce window close between events
        finally:
            writer.stdin.close()
            writer.wait(timeout=10)
    return sizes, latencies


def main() -> int:
    import anyio

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        seed(url)
        env = {**os.environ, "PARHELIA_DB_URL": url, "PARHELIA_BACKEND": "local"}
        env["PARHELIA_LOCAL_ROOT"] = str(Path(tmp) / "sandboxes")
        sizes, latencies = anyio.run(measure, url, env)

    print(f"MCP response sizes ({N} containers, {N} tasks, {N_EVENTS} events); tokens = bytes / 4")
    ok = True
    for tool, (full, cut) in sizes.items():
        ratio = full / cut if cut else float("inf")
        ok &= ratio >= 2
        print(
            f"  {tool:<20} {full // 4:>7} tokens -> {cut // 4:>6} with fields "
            f"{','.join(TYPICAL_FIELDS[tool])}: ratio {ratio:.1f}x (target >= 2x)"
        )
    p50, p95 = pct(latencies, 0.5), pct(latencies, 0.95)
    print(
        f"Delivery, another process's commit -> resource update notification, {len(latencies)} events: "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(latencies):.0f} ms "
        f"(target p95 < 500 ms: {500 / p95:.1f}x headroom)"
    )
    return 0 if ok and p95 < 500 else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--writer":
        run_writer(sys.argv[2])
    else:
        sys.exit(main())
