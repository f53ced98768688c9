"""Benchmark the control loops: one reconcile cycle of N listed sandboxes against N rows
(target < 1 s at 10,000, backend time excluded) and one heartbeat cycle of 1,000 containers
(target < 200 ms, probe time excluded). In-memory fake backend, temporary SQLite file, or with
`--db auto|URL` a PostgreSQL database (bench/pg.py).
Run: `python bench/reconcile.py` (N = 1,000 and 10,000) or `--containers N`.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.state.enums import ContainerState, Health
from parhelia.state.models import Container
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.base import ProbeSample, SandboxInfo, TerminateResult, parhelia_tags
from parhelia.workers.heartbeat import HeartbeatPoller
from parhelia.workers.reconciler import Reconciler

SIZES = (1_000, 10_000)
N_HEARTBEAT = 1_000
SAMPLE = ProbeSample(10.0, 256.0, 4.0, 20.0, 600.0, True)


class Fake:
    name = "fake"

    def __init__(self, infos: list[SandboxInfo]) -> None:
        self.infos = infos

    def list(self) -> list[SandboxInfo]:
        return list(self.infos)

    def list_all(self) -> list[SandboxInfo]:
        return list(self.infos)

    def probe(self, sandbox_id: str) -> ProbeSample:
        return SAMPLE

    def terminate(self, sandbox_id: str) -> TerminateResult:
        return TerminateResult(sandbox_id, 137)

    def create(self, spec):
        raise NotImplementedError

    def shell_argv(self, sandbox_id: str) -> list[str]:
        return ["sh"]


def seed_rows(store: Store, rows: list[Container]) -> None:
    with store.write() as s:
        s.add_all(rows)


def reconcile_bench(url: str, n: int) -> tuple[float, float]:
    """Rows (of n = 10,000): 9,000 matched, 500 awaiting adoption, 500 whose sandbox is gone.
    Listing: the 9,000, the 500 to adopt, 500 orphans past grace (the same shares at any n).
    Returns (first cycle, steady-state cycle) in ms."""
    store = Store(url)
    share = n // 20
    now = utcnow()
    born = now - timedelta(minutes=10)
    plane = store.plane_id  # sandboxes are this plane's: well-formed ids and its plane tag
    rows, infos = [], []
    for i in range(n):
        cid, sid = f"c-{i:08x}", f"sb-{i:06d}"
        kind = "match" if i < n - 2 * share else "adopt" if i < n - share else "gone"
        rows.append(
            Container(
                id=cid,
                backend="fake",
                sandbox_id=None if kind == "adopt" else sid,
                state=ContainerState.CREATED if kind == "adopt" else ContainerState.RUNNING,
                health=Health.HEALTHY,
                created_at=born,
                started_at=None if kind == "adopt" else born,
                last_heartbeat_at=now,
                cost_rate_per_hour=0.19,
                tags=parhelia_tags(cid, None, plane),
            )
        )
        if kind != "gone":
            infos.append(SandboxInfo(sid, "fake", parhelia_tags(cid, None, plane), born))
    for i in range(share):
        lost = parhelia_tags(f"c-{0x10000000 + i:08x}", None, plane)
        infos.append(SandboxInfo(f"sb-orphan-{i}", "fake", lost, born))
    random.Random(1).shuffle(infos)
    seed_rows(store, rows)
    assert len(infos) == n
    rec = Reconciler(
        store, {"fake": Fake(infos)}, Settings(), configured_backend="fake", holder="bench"
    )
    first = rec.run_once()
    expected = (share, share, share, None)
    assert (first.adopted, first.orphans, first.terminated, first.error) == expected, first
    steady = rec.run_once()
    assert (steady.adopted, steady.orphans, steady.terminated) == (0, 0, 0), steady
    store.close()
    return first.duration_ms - first.backend_ms, steady.duration_ms - steady.backend_ms


def heartbeat_bench(url: str) -> tuple[float, float]:
    store = Store(url)
    now = utcnow()
    rows = [
        Container(
            id=f"c-{i:05d}",
            backend="fake",
            sandbox_id=f"sb-{i:05d}",
            state=ContainerState.RUNNING,
            health=Health.DEGRADED if i % 10 == 0 else Health.HEALTHY,
            missed_heartbeats=3 if i % 10 == 0 else 0,
            created_at=now,
            started_at=now,
            tags={},
        )
        for i in range(N_HEARTBEAT)
    ]
    seed_rows(store, rows)
    poller = HeartbeatPoller(store, {"fake": Fake([])}, Settings())
    poller.run_once()  # warm: 100 health changes (degraded → healthy) and 1,000 samples
    report = poller.run_once()
    store.close()
    return report.duration_ms - report.probe_ms, report.probe_ms


def line(name: str, ms: float, target_ms: float) -> str:
    verdict = "ok" if ms < target_ms else "OVER TARGET"
    return f"{name:<52} {ms:8.1f} ms   target {target_ms:6.0f} ms   ratio {ms / target_ms:5.2f}   {verdict}"


def load() -> str:
    """The machine's load with each figure: it is shared, and a noisy neighbour shows here."""
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, action="append", help="N (repeatable)")
    parser.add_argument("--db", help="auto (a throwaway PostgreSQL server) or a PostgreSQL URL")
    args = parser.parse_args()
    sizes = args.containers or list(SIZES)
    pg = None
    if args.db:
        from pg import Databases  # bench/pg.py

        pg = Databases(args.db)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)

        def url(name: str) -> str:
            return pg.fresh(f"bench_{name}") if pg else f"sqlite:///{tmp / f'{name}.db'}"

        print(f"database: {'postgresql' if pg else 'sqlite'}")
        t0 = time.perf_counter()
        for n in sizes:
            first, steady = reconcile_bench(url(f"reconcile_{n}"), n)
            print(line(f"reconcile {n:,} vs {n:,}, {3 * (n // 20):,} changes", first, 1000), load())
            print(line(f"reconcile {n:,} vs {n:,}, steady state", steady, 1000), load())
        hb, probe = heartbeat_bench(url("heartbeat"))
        total = time.perf_counter() - t0
        if pg:
            pg.close()
    print(line("heartbeat 1,000 containers (probe wait excluded)", hb, 200), load())
    print(f"{'  probe wait (thread pool, instant fake probes)':<52} {probe:8.1f} ms")
    print(f"(backend/probe time excluded; bench total {total:.1f} s incl. seeding)")


if __name__ == "__main__":
    main()
