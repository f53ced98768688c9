"""The reconciler: diff every backend in use with the store, one cycle at a time.

A cycle takes (or renews) the lease, reads the live rows, lists every backend in use, lets a
`ReconcilePlan` (`workers/reconcile_plan.py`) judge the rows against the listings, applies the plan
in one guarded write, terminates new orphans when the policy says so, and records the run
(`workers/reconcile_report.py`). A failed listing changes nothing of that backend: it records an
error, and the loop backs off. Only the lease holder acts; any other process gets `acted=False`
and writes nothing.

A listing only judges rows that existed, unchanged, when it began: the rows are read before the
listing, every change carries the row's `updated_at` as it was read (`Store.apply_changes` drops it
if the row moved since), and a listed sandbox whose row appeared or ended after that read is left
to the next cycle. So a dispatch that lands during a listing is never "gone", nor an orphan.

An orphan is priced from its real resources when the backend can tell them (the local backend
records each sandbox's spec); otherwise (Modal's listing exposes none) its rate is estimated from
the configured task defaults (`[defaults]` cpu, memory, gpu, region). Either way with the configured
rate table; `meta.rate_source` says which, and every view marks an estimated rate.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from parhelia.state.costs import DEFAULT_RATES, NO_GPU, UnknownGpu, hourly_rate, normalize_gpu
from parhelia.state.enums import ContainerState, EventLevel
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.process_owner import this_process
from parhelia.state.settings import Settings, effective_value
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.base import Backend, Resources, SandboxInfo
from parhelia.workers.reconcile_plan import ACTOR, SOURCE, ReconcilePlan
from parhelia.workers.reconcile_report import ReconcileReport, run_row

MIN_DELAY_SECONDS = 1.0  # a grace about to end still waits this long: no busy loop
LIVE = (
    ContainerState.CREATED,
    ContainerState.RUNNING,
    ContainerState.ORPHANED,
    ContainerState.STOPPED,
)

Terminate = Callable[[str, str, str], object]


class Reconciler:
    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        settings: Settings,
        *,
        configured_backend: str,
        holder: str,
        terminate: Terminate | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.settings = settings
        self.configured_backend = configured_backend
        self.holder = holder
        self.terminate = terminate
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0  # consecutive failed cycles, for the backoff
        self._listed_at: dict[str, datetime] = {}  # when each backend's last good listing began
        self.unseen_since: dict[str, datetime] = {}  # ... and the one before it (see _first_seen)
        self._grace_ends_at: datetime | None = None
        self.owner = this_process()
        # The dashboard's "reconcile now" and its loop thread share one reconciler: one cycle at a time.
        self._cycle_lock = threading.Lock()

    # -- scheduling -----------------------------------------------------------------------

    def next_delay(self) -> float:
        """Seconds until the next cycle: the interval, or sooner when a sandbox seen unrecorded
        leaves its grace before then (so an orphan is recorded as its grace ends, not up to an
        interval later), or after failures an exponential backoff with jitter (between half and
        all of `interval * 2**(failures-1)`, capped)."""
        cfg = self.settings.reconciler
        if self.failures == 0:
            if self._grace_ends_at is not None:
                until = (self._grace_ends_at - self.clock()).total_seconds()
                return min(cfg.interval_seconds, max(MIN_DELAY_SECONDS, until))
            return cfg.interval_seconds
        ceiling = min(cfg.max_backoff_seconds, cfg.interval_seconds * 2 ** (self.failures - 1))
        return ceiling * self.rng.uniform(0.5, 1.0)

    def release(self) -> None:
        self.store.release_lease(self.holder)

    def renew(self) -> bool:
        """Extend the lease if this reconciler still holds it (never takes it): the loop renews
        well inside the lease, also while listings back off for longer than the lease lasts."""
        return self._write_lease(self.clock())

    def _renew_at_cycle_end(self, finished: datetime, next_run_at: datetime | None = None) -> None:
        """Renew only, marking the cycle over (also one that failed): a holder that lost the lease
        during the cycle must not take it back. `next_run_at` tells readers when the next is due."""
        self._write_lease(finished, in_cycle=False, next_run_at=next_run_at)

    def _write_lease(
        self,
        at: datetime,
        *,
        take: bool = False,
        in_cycle: bool | None = None,
        next_run_at: datetime | None = None,
    ) -> bool:
        """The one lease write: renew it (or with `take`, take it if free) as of `at`, owned by this
        process. On the real clock the lease goes by the database's (the one clock a team shares)."""
        cfg = self.settings.reconciler
        return self.store.acquire_lease(
            self.holder,
            cfg.lease_seconds,
            now=None if self.clock is utcnow else at,
            interval_seconds=cfg.interval_seconds,
            next_run_at=next_run_at,
            owner=self.owner,
            renew_only=not take,
            in_cycle=in_cycle,
        )

    def holds_lease(self) -> bool:
        return self.store.holds_lease(self.holder, now=self.clock())

    # -- one cycle --------------------------------------------------------------------------

    def run_once(self) -> ReconcileReport:
        with self._cycle_lock:
            return self._run_once()

    def _run_once(self) -> ReconcileReport:
        started = self.clock()
        t0 = time.perf_counter()
        report = ReconcileReport(started_at=started, holder=self.holder)
        if not self._write_lease(started, take=True, in_cycle=True):
            report.acted = False
            return report
        try:
            self._cycle(report, t0)
        except Exception:
            self.failures += 1
            with contextlib.suppress(Exception):  # the cycle is over, even when it failed
                self._renew_at_cycle_end(self.clock())
            raise
        self.failures = self.failures + 1 if report.error else 0
        self._grace_ends_at = report.grace_ends_at
        report.next_delay_seconds = self.next_delay()
        finished = self.clock()
        self._renew_at_cycle_end(
            finished, next_run_at=finished + timedelta(seconds=report.next_delay_seconds)
        )
        return report

    def _cycle(self, report: ReconcileReport, t0: float) -> None:
        names = sorted(self.store.backends_in_use() | {self.configured_backend})
        report.backends = names
        snapshot_at = self.clock()
        snapshot = self.store.container_snapshot(
            LIVE
        )  # before the listing: see the module docstring
        listings, failures = self._list(names, report)
        now = self.clock()
        rows = [r for r in snapshot if r.backend in listings]
        report.known = sum(1 for r in rows if r.state != ContainerState.STOPPED)
        plan = ReconcilePlan(self, now, report, snapshot_at)
        for name, infos in listings.items():
            plan.diff(name, infos, [r for r in rows if r.backend == name])
        applied = self.store.apply_changes(
            list(plan.changes.values()), new_rows=plan.new_rows, new_tasks=plan.new_tasks
        )
        plan.count(applied.changed, applied.inserted)
        stored = {"policy.orphans": self.store.get_setting("policy.orphans")}
        try:
            policy = effective_value("policy.orphans", self.settings, stored)
        except ParheliaError:  # a bad stored value (`config show` says E103) never stops a cycle
            policy = self.settings.policy.orphans
        orphans = (applied.inserted | (applied.changed & plan.sighted)) - plan.needs_a_person
        if policy == "terminate" and self.terminate is not None and orphans:
            for cid in sorted(orphans):
                try:
                    self.terminate(cid, ACTOR, "orphan")
                    report.orphans_terminated += 1
                except ParheliaError:
                    pass  # the terminate path records its own error event; the guard retries
                except Exception as exc:
                    plan.extra_events.append(_terminate_failed(cid, exc, now))
        events = list(plan.extra_events)
        for name, exc in failures.items():
            events.append(
                make_event(
                    EventType.RECONCILER_ERROR,
                    f"listing {name} sandboxes failed ({exc.code}): {exc.message}; "
                    "no container was changed",
                    level=EventLevel.ERROR,
                    source=SOURCE,
                    actor=ACTOR,
                    details={"backend": name, "code": exc.code},
                    ts=now,
                )
            )
        if failures:
            first = next(iter(failures.values()))
            report.error = "; ".join(  # no "modal: modal list …": a message may name it already
                exc.message if exc.message.startswith(f"{name} ") else f"{name}: {exc.message}"
                for name, exc in failures.items()
            )
            report.error_code = first.code
        report.duration_ms = (time.perf_counter() - t0) * 1000.0
        self.store.record_run(run_row(report, self.clock()), events)

    def _list(
        self, names: Sequence[str], report: ReconcileReport
    ) -> tuple[dict[str, list[SandboxInfo]], dict[str, ParheliaError]]:
        listings: dict[str, list[SandboxInfo]] = {}
        failures: dict[str, ParheliaError] = {}
        for name in names:
            b0 = time.perf_counter()
            began = self.clock()
            try:
                listings[name] = list(self.backends[name].list())
                if name in self._listed_at:
                    self.unseen_since[name] = self._listed_at[name]
                self._listed_at[name] = began
            except ParheliaError as exc:
                failures[name] = exc
            except Exception as exc:  # a backend bug must read as a failed listing, never as empty
                failures[name] = ParheliaError(
                    "E502",
                    f"listing failed: {type(exc).__name__}: {exc}",
                    ["parhelia reconciler status", "parhelia config show"],
                )
            report.backend_ms += (time.perf_counter() - b0) * 1000.0
        report.listed = sum(len(v) for v in listings.values())
        return listings, failures

    def orphan_rate(self, resources: Resources | None = None) -> tuple[float, str, Resources]:
        """(rate, where it came from, the resources priced) for an orphan: its own resources when
        the backend reported usable ones, else an estimate from `[defaults]`."""
        configured = self.settings.rates
        rates = DEFAULT_RATES.with_overrides(
            configured.cpu_core_hour, configured.memory_gib_hour, configured.gpu
        )
        if resources is not None:
            try:
                res = _canonical(resources)
                rate = hourly_rate(res.cpu, res.memory_mib, res.gpu, res.region, rates)
                return rate, f"recorded by the backend: {_describe(res)}", res
            except (UnknownGpu, ParheliaError):
                pass  # a record naming no GPU Modal sells: estimate instead of trusting it
        defaults = self.settings.defaults
        assumed = _canonical(
            Resources(defaults.cpu, defaults.memory_mib, defaults.gpu, defaults.region or None)
        )
        rate = hourly_rate(assumed.cpu, assumed.memory_mib, assumed.gpu, assumed.region, rates)
        return rate, f"{ESTIMATED} {_describe(assumed)}", assumed


ESTIMATED = "estimated from [defaults]"  # how an estimated `rate_source` starts (views look for it)


def _canonical(res: Resources) -> Resources:
    """`res` with its GPU in Modal's spelling (None for none); UnknownGpu for a name Modal lacks."""
    gpu = None if (res.gpu or "").strip().lower() in NO_GPU else normalize_gpu(res.gpu or "")
    return replace(res, gpu=gpu)


def _describe(res: Resources) -> str:
    return f"cpu={res.cpu:g} memory_mib={res.memory_mib} gpu={res.gpu or 'none'}" + (
        f" region={res.region}" if res.region else ""
    )


def _terminate_failed(cid: str, exc: Exception, now: datetime):
    return make_event(
        EventType.CONTAINER_TERMINATE_FAILED,
        f"auto-terminate of orphan {cid} failed: {type(exc).__name__}: {exc}",
        level=EventLevel.ERROR,
        source=SOURCE,
        actor=ACTOR,
        container_id=cid,
        ts=now,
    )
