"""The heartbeat poller: probe running containers concurrently, store the cycle in one batch.

A probe that fails, times out, or finds the agent process gone counts as a missed heartbeat (the
sandbox may be up, but the agent is what we pay for). A reading with the agent gone is still
stored, for the sparkline, but does not move `last_heartbeat_at`. Health follows the missed count
(2 degraded, 5 unhealthy, 10 dead by default); an event is written only when health changes, and a
container's first healthy reading after `unknown` is not news. Once a minute a cycle also ages out
history: heartbeats past `[heartbeat] retention_hours`, events and reconciler runs past
`[retention]` (bounded batches, so a backlog drains over cycles: one each cycle until it has).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from parhelia.state.bulk import PRUNE_BATCH
from parhelia.state.enums import ContainerState, EventLevel, EventSource, Health
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.health import HealthThresholds, health_from_missed
from parhelia.state.models import Container
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.base import Backend, ProbeSample

ACTOR = "heartbeat"
# History ages out in hours and days, so a cycle prunes at most this often, unless a backlog is
# draining (a batch came back full). Pruning each cycle was, with events ageing out every second,
# a write transaction a second of its own, and a change signal to every dashboard on the store.
PRUNE_SECONDS = 60.0
LEVELS = {
    Health.HEALTHY: EventLevel.INFO,
    Health.DEGRADED: EventLevel.WARNING,
    Health.UNHEALTHY: EventLevel.WARNING,
    Health.DEAD: EventLevel.ERROR,
}


@dataclass
class HeartbeatReport:
    started_at: datetime
    probed: int = 0
    ok: int = 0
    failed: int = 0
    timed_out: int = 0
    # not probed: a pass given `within` seconds ran out of them first (left as they were)
    skipped: int = 0
    health_changes: int = 0
    pruned: int = 0
    pruned_events: int = 0
    pruned_runs: int = 0
    duration_ms: float = 0.0
    probe_ms: float = 0.0  # wall time spent waiting for probes (the rest is Parhelia's own work)

    def summary(self) -> str:
        return (
            f"heartbeat: probed {self.probed} ok {self.ok} failed {self.failed} "
            f"(timed out {self.timed_out}) skipped {self.skipped} "
            f"health changes {self.health_changes} "
            f"pruned {self.pruned} in {self.duration_ms:.0f} ms"
        )


class HeartbeatPoller:
    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.backends = backends
        self.settings = settings
        self.clock = clock
        self._pruned_at: datetime | None = None  # the cycle's `now` when history was last pruned
        self._draining = False  # that prune left more behind (a batch came back full)

    @property
    def thresholds(self) -> HealthThresholds:
        cfg = self.settings.heartbeat
        return HealthThresholds(cfg.degraded_missed, cfg.unhealthy_missed, cfg.dead_missed)

    def run_once(self, *, within: float | None = None) -> HeartbeatReport:
        """One pass over the running containers. `within`: the seconds a one-shot view (`tui
        --once`, `status`) gives its probes: the rows heard from longest ago go first, and those
        not answered by then are left as they were, not counted as missed (10,000 sandboxes at 16
        probes at a time kept a snapshot waiting a minute; a daemon's pass has no such bound)."""
        t0 = time.perf_counter()
        now = self.clock()
        report = HeartbeatReport(started_at=now)
        # plain rows (every column but the metadata), not ORM instances: loading 10,000 of
        # those was about a second of every cycle's CPU (`Store.container_snapshot`)
        rows = [r for r in self.store.container_snapshot([ContainerState.RUNNING]) if r.sandbox_id]
        if within is not None:
            rows.sort(key=_heard_longest_ago)
        p0 = time.perf_counter()
        results = self._probe_all(rows, within)
        report.probe_ms = (time.perf_counter() - p0) * 1000.0
        samples, updates, events = [], [], []
        for row in rows:
            sample = results.get(row.id)
            if sample is _SKIPPED:
                report.skipped += 1
                continue
            if isinstance(sample, ProbeSample):
                report.ok += 1
                samples.append(_sample_row(row.id, now, sample))
            else:
                report.failed += 1
                report.timed_out += sample is _TIMED_OUT
            alive = isinstance(sample, ProbeSample) and sample.agent_alive
            finishing = isinstance(sample, ProbeSample) and sample.agent_exited and not alive
            # an agent that has exited is finishing, not failing: the reconciler sees it end
            missed = 0 if alive else row.missed_heartbeats + (0 if finishing else 1)
            health = health_from_missed(missed, self.thresholds)
            update: dict = {"id": row.id, "missed_heartbeats": missed}
            if health != row.health:  # setting it at all rewrites its index entry
                update["health"] = health.value
            if alive:
                update["last_heartbeat_at"] = now
            updates.append(update)
            if health != row.health and not (
                row.health == Health.UNKNOWN and health == Health.HEALTHY
            ):
                report.health_changes += 1
                events.append(_health_event(row, health, missed, sample, now))
        report.probed = len(rows) - report.skipped
        self.store.record_heartbeats(samples, updates, events)
        if self._prune_due(now):
            self._prune(now, report)
        report.duration_ms = (time.perf_counter() - t0) * 1000.0
        return report

    def _prune_due(self, now: datetime) -> bool:
        last = self._pruned_at
        return (
            last is None
            or self._draining
            or not last <= now < last + timedelta(seconds=PRUNE_SECONDS)  # or the clock went back
        )

    def _prune(self, now: datetime, report: HeartbeatReport) -> None:
        retention = timedelta(hours=self.settings.heartbeat.retention_hours)
        report.pruned = self.store.prune_heartbeats(now - retention)
        keep = self.settings.retention  # events and reconciler runs age out on the same schedule
        report.pruned_events, report.pruned_runs = self.store.prune_history(
            now - timedelta(days=keep.events_days),
            now - timedelta(days=keep.runs_days),
            limit=PRUNE_BATCH,
        )
        self._pruned_at = now
        self._draining = PRUNE_BATCH in (report.pruned_events, report.pruned_runs)

    def _probe_all(
        self, rows: list[Container], within: float | None = None
    ) -> dict[str, ProbeSample | object]:
        """Probe with at most `concurrency` probes in flight; a probe that has run longer than
        `probe_timeout_seconds` is abandoned (its thread finishes on its own) and counts as missed.
        After `within` seconds, what is still in flight or not yet handed out is `_SKIPPED`."""
        if not rows:
            return {}
        cfg = self.settings.heartbeat
        timeout = cfg.probe_timeout_seconds
        workers = max(1, min(cfg.concurrency, len(rows)))
        started: dict[str, float] = {}
        lock = threading.Lock()

        def probe(row: Container) -> ProbeSample:
            with lock:
                started[row.id] = time.monotonic()
            return self.backends[row.backend].probe(row.sandbox_id)

        results: dict[str, ProbeSample | object] = {}
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parhelia-probe")
        queued = iter(rows)
        # At most `workers` probes handed to the pool at a time: each wait and each expiry check
        # then looks at a handful of futures, not at every row (10,000 rows queued at once made
        # the cycle quadratic: minutes of CPU).
        pending: dict[Future, str] = {}

        def hand_out() -> None:
            while len(pending) < workers:
                row = next(queued, None)
                if row is None:
                    return
                pending[pool.submit(probe, row)] = row.id

        def end_all(outcome: object) -> None:
            """What is in flight and what was never handed out ends as `outcome`."""
            for fut, cid in pending.items():
                fut.cancel()
                results[cid] = outcome
            pending.clear()
            results.update((row.id, outcome) for row in queued)

        try:
            hand_out()
            waves = -(-len(rows) // workers)
            cycle_deadline = time.monotonic() + timeout * (waves + 1)
            give_up = time.monotonic() + within if within is not None else float("inf")
            while pending:
                now = time.monotonic()
                if now >= give_up:  # a one-shot's time is up: the rest is left for a later pass
                    end_all(_SKIPPED)
                    break
                with lock:
                    running = [started[cid] for cid in pending.values() if cid in started]
                next_expiry = min((s + timeout for s in running), default=now + timeout)
                done, _ = wait(
                    list(pending),
                    timeout=max(0.0, min(next_expiry, cycle_deadline, give_up) - now),
                    return_when=FIRST_COMPLETED,
                )
                for fut in done:
                    cid = pending.pop(fut)
                    exc = fut.exception()
                    results[cid] = fut.result() if exc is None else _FAILED
                now = time.monotonic()
                if now >= cycle_deadline:  # the cycle's time is up: whatever is left missed
                    end_all(_TIMED_OUT)
                    break
                for fut, cid in list(pending.items()):
                    with lock:
                        began = started.get(cid)
                    if began is not None and now - began >= timeout:
                        fut.cancel()
                        results[cid] = _TIMED_OUT
                        del pending[fut]
                hand_out()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return results


_FAILED = object()
_TIMED_OUT = object()
_SKIPPED = object()


def _heard_longest_ago(row: Any) -> tuple[bool, datetime]:
    """Never heard from first, then the oldest heartbeat first."""
    heard = row.last_heartbeat_at
    return (heard is not None, heard or datetime.min.replace(tzinfo=UTC))


def _sample_row(container_id: str, now: datetime, sample: ProbeSample) -> dict:
    return {
        "container_id": container_id,
        "ts": now,
        "cpu_percent": sample.cpu_percent,
        "memory_mib": sample.memory_mib,
        "memory_percent": sample.memory_percent,
        "disk_percent": sample.disk_percent,
        "uptime_seconds": sample.uptime_seconds,
        "agent_alive": sample.agent_alive,
    }


def _health_event(row: Container, health: Health, missed: int, sample, now: datetime):
    if isinstance(sample, ProbeSample):
        why = (
            "heartbeat received"
            if sample.agent_alive
            else "agent not responding (stopped)"
            if sample.agent_stopped
            else "agent process gone"
        )
    else:
        why = "probe timed out" if sample is _TIMED_OUT else "probe failed"
    return make_event(
        EventType.CONTAINER_HEALTH,
        f"{row.id} {row.health} → {health} ({missed} missed; {why})",
        level=LEVELS.get(health, EventLevel.INFO),
        source=EventSource.HEARTBEAT,
        actor=ACTOR,
        container_id=row.id,
        task_id=row.task_id,
        old_value=row.health,
        new_value=health.value,
        details={"missed": missed, "reason": why},
        ts=now,
    )
