"""The reconciler: diff every backend in use with the store, one cycle at a time.

Rules that keep sandboxes from going unseen: a listed Parhelia sandbox whose row has no sandbox id
yet (a crash during dispatch) is adopted by its container-id tag; a listed sandbox with no row is
recorded as `orphaned` once its grace period has passed; a row whose sandbox is no longer listed is
`terminated` (reason `external`) only when that backend's listing succeeded. A failed listing
changes nothing of that backend: it records an error, and the loop backs off. Only the lease holder
acts; any other process gets `acted=False` and writes nothing.

A listing only judges rows that existed, unchanged, when it began: the rows are read before the
listing, every change carries the row's `updated_at` as it was read (`Store.apply_changes` drops it
if the row moved since), and a listed sandbox whose row appeared or ended after that read is left
to the next cycle. So a dispatch that lands during a listing is never "gone", nor an orphan.

A listed running sandbox whose row says `terminated` is a fire, not a footnote: the row goes back
to `orphaned` (`state.lifecycle.SIGHTED`), so it burns in the budget, shows in the attention list
and among the orphans, and `containers terminate` stops it again.


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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from parhelia.state.costs import (
    DEFAULT_RATES,
    NO_GPU,
    UnknownGpu,
    accrued_cost,
    hourly_rate,
    normalize_gpu,
)
from parhelia.state.enums import ContainerState as S
from parhelia.state.enums import EventLevel, EventSource, Health, TaskStatus
from parhelia.state.errors import ParheliaError
from parhelia.state.exit_codes import exit_text
from parhelia.state.lifecycle import ENDED_FIELDS, can_transition
from parhelia.state.models import Container, ReconcilerRun, Task, new_container_id
from parhelia.state.process_owner import this_process
from parhelia.state.settings import Settings
from parhelia.state.store import (
    FOREIGN_PREFIX,
    IN_GRACE_PREFIX,
    NewRow,
    RowChange,
    Store,
    make_event,
)
from parhelia.state.timeutil import age_seconds, as_utc, utcnow
from parhelia.workers.backends.base import (
    TAG_PLANE,
    Backend,
    Ownership,
    Resources,
    SandboxInfo,
    needs_a_person,
    ownership,
)

ACTOR = "reconciler"
SIGHTINGS_KEY = "reconciler.first_seen."
SRC = EventSource.RECONCILER
# A `created` row that never got a sandbox (the process died before create returned) is closed
# after this long; image builds can take minutes, so it is well beyond the orphan grace.
DISPATCH_LOST_SECONDS = 3600.0
MIN_DELAY_SECONDS = 1.0  # a grace about to end still waits this long: no busy loop
LIVE = (S.CREATED, S.RUNNING, S.ORPHANED, S.STOPPED)

Terminate = Callable[[str, str, str], object]
Row = Any  # a container row as `Store.container_rows` returns it (read-only, attribute access)


@dataclass
class ReconcileReport:
    """One cycle, as `parhelia reconciler run` prints it and the daemon logs it."""

    started_at: datetime
    acted: bool = True
    holder: str = ""
    backends: list[str] = field(default_factory=list)
    listed: int = 0
    known: int = 0
    adopted: int = 0
    orphans: int = 0
    in_grace: int = 0
    terminated: int = 0
    corrections: int = 0
    marked_stale: int = 0
    orphans_terminated: int = 0
    conflicts: int = 0
    foreign: int = 0  # running sandboxes of another control plane: counted, never touched
    duration_ms: float = 0.0
    backend_ms: float = 0.0
    error: str | None = None
    error_code: str | None = None
    next_delay_seconds: float = 0.0
    # the earliest moment a sandbox seen in grace can be recorded as an orphan (the next cycle's due)
    grace_ends_at: datetime | None = None
    # what the budget guard's pass after this cycle did (`reconciler run` says it in one answer)
    guard_actions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["grace_ends_at"] = self.grace_ends_at.isoformat() if self.grace_ends_at else None
        return out

    def summary(self) -> str:
        if not self.acted:
            return "reconcile: another process holds the lease; read-only"
        head = (
            f"reconcile: listed {self.listed} known {self.known} adopted {self.adopted} "
            f"orphans {self.orphans} terminated {self.terminated} corrections {self.corrections} "
            f"stale {self.marked_stale} in {self.duration_ms:.0f} ms"
        )
        if self.in_grace:
            head += f"; {self.in_grace} unrecorded in their orphan grace"
        if self.foreign:
            head += f"; {self.foreign} of another control plane (not touched)"
        return head + (f"; {self.error_code}: {self.error}" if self.error else "")


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
        return self.store.acquire_lease(
            self.holder,
            self.settings.reconciler.lease_seconds,
            now=self.clock(),
            owner=self.owner,
            renew_only=True,
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
        cfg = self.settings.reconciler
        report = ReconcileReport(started_at=started, holder=self.holder)
        # the real clock: the lease goes by the database's (the one clock a team shares)
        lease_now = None if self.clock is utcnow else started
        if not self.store.acquire_lease(
            self.holder,
            cfg.lease_seconds,
            now=lease_now,
            interval_seconds=cfg.interval_seconds,
            owner=self.owner,
            in_cycle=True,
        ):
            report.acted = False
            return report
        try:
            self._cycle(report, t0)
        except Exception:
            self.failures += 1
            with contextlib.suppress(Exception):  # the cycle is over, even when it failed
                self.store.acquire_lease(
                    self.holder,
                    cfg.lease_seconds,
                    now=None if self.clock is utcnow else self.clock(),
                    renew_only=True,
                    in_cycle=False,
                )
            raise
        self.failures = self.failures + 1 if report.error else 0
        self._grace_ends_at = report.grace_ends_at
        report.next_delay_seconds = self.next_delay()
        finished = self.clock()
        # renew only: a holder that lost the lease during the cycle must not take it back
        self.store.acquire_lease(
            self.holder,
            cfg.lease_seconds,
            now=None if self.clock is utcnow else finished,
            interval_seconds=cfg.interval_seconds,
            next_run_at=finished + timedelta(seconds=report.next_delay_seconds),
            renew_only=True,
            in_cycle=False,
        )
        return report

    def _cycle(self, report: ReconcileReport, t0: float) -> None:
        names = sorted(self.store.backends_in_use() | {self.configured_backend})
        report.backends = names
        snapshot_at = self.clock()
        snapshot = self.store.container_rows(LIVE)  # before the listing: see the module docstring
        listings, failures = self._list(names, report)
        now = self.clock()
        rows = [r for r in snapshot if r.backend in listings]
        report.known = sum(1 for r in rows if r.state != S.STOPPED)
        plan = _Plan(self, now, report, snapshot_at)
        for name, infos in listings.items():
            plan.diff(name, infos, [r for r in rows if r.backend == name])
        applied = self.store.apply_changes(
            list(plan.changes.values()), new_rows=plan.new_rows, new_tasks=plan.new_tasks
        )
        plan.count(applied.changed, applied.inserted)
        policy = self.store.get_setting("policy.orphans") or self.settings.policy.orphans
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
                    "reconciler.error",
                    f"listing {name} sandboxes failed ({exc.code}): {exc.message}; "
                    "no container was changed",
                    level=EventLevel.ERROR,
                    source=SRC,
                    actor=ACTOR,
                    details={"backend": name, "code": exc.code},
                    ts=now,
                )
            )
        if failures:
            first = next(iter(failures.values()))
            report.error = "; ".join(  # no "modal: modal list …": a message may name it already
                e.message if e.message.startswith(f"{n} ") else f"{n}: {e.message}"
                for n, e in failures.items()
            )
            report.error_code = first.code
        report.duration_ms = (time.perf_counter() - t0) * 1000.0
        self.store.record_run(_run_row(report, self.clock()), events)

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
        r = self.settings.rates
        rates = DEFAULT_RATES.with_overrides(r.cpu_core_hour, r.memory_gib_hour, r.gpu)
        if resources is not None:
            try:
                res = _canonical(resources)
                rate = hourly_rate(res.cpu, res.memory_mib, res.gpu, res.region, rates)
                return rate, f"recorded by the backend: {_describe(res)}", res
            except (UnknownGpu, ParheliaError):
                pass  # a record naming no GPU Modal sells: estimate instead of trusting it
        d = self.settings.defaults
        assumed = _canonical(Resources(d.cpu, d.memory_mib, d.gpu, d.region or None))
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


class _Plan:
    """The changes of one cycle, built from rows loaded once and indexed in dicts."""

    def __init__(
        self, rec: Reconciler, now: datetime, report: ReconcileReport, snapshot_at: datetime
    ) -> None:
        self.rec = rec
        self.now = now
        self.report = report
        self.snapshot_at = snapshot_at
        self.snapshot_ids: set[str] = set()
        self.sighted: set[str] = set()  # terminated rows whose sandbox was seen running
        self.changes: dict[str, RowChange] = {}
        self.kinds: dict[str, set[str]] = {}
        self.new_rows: list[NewRow] = []
        self.new_tasks: list[Task] = []
        self.extra_events: list = []
        self.grace = rec.settings.reconciler.orphan_grace_seconds
        self.stale = rec.settings.reconciler.stale_seconds
        self.plane = rec.store.plane_id
        # orphans recorded this cycle that no policy may terminate (no plane tag: `needs_a_person`)
        self.needs_a_person: set[str] = set()

    # -- building -------------------------------------------------------------------------

    def _change(self, row: Row, kind: str, fields: dict, *events) -> None:
        prev = self.changes.get(row.id)
        expect = (
            prev.expect
            if prev
            else {
                "state": row.state,
                "sandbox_id": row.sandbox_id,
                "updated_at": row.updated_at,
            }
        )
        merged = {**(prev.fields if prev else {}), **fields}
        evs = (*(prev.events if prev else ()), *events)
        self.changes[row.id] = RowChange(row.id, merged, expect, evs)
        self.kinds.setdefault(row.id, set()).add(kind)

    def _state(
        self, row: Row, new: str, kind: str, message: str, *, why: dict | None = None, **fields
    ) -> None:
        level = EventLevel.WARNING if new in (S.TERMINATED, S.ORPHANED) else EventLevel.INFO
        if new in (S.STOPPED, S.TERMINATED) and row.terminated_at is None:
            fields["terminated_at"] = self.now
            fields["cost_accrued_usd"] = max(
                row.cost_accrued_usd,
                accrued_cost(row.cost_rate_per_hour, row.started_at, self.now, self.now),
            )
        fields["state"] = new
        ev = _event(
            "container.state",
            message,
            level=level,
            source=SRC,
            actor=ACTOR,
            container_id=row.id,
            task_id=row.task_id,
            old_value=row.state,
            new_value=new,
            details={
                **{k: v for k, v in fields.items() if isinstance(v, (str, int, float))},
                **(why or {}),
            },
            ts=self.now,
        )
        self._change(row, kind, fields, ev)

    def diff(self, backend: str, infos: Sequence[SandboxInfo], rows: Sequence[Row]) -> None:
        by_sandbox = {r.sandbox_id: r for r in rows if r.sandbox_id}
        by_id = {r.id: r for r in rows}
        self.snapshot_ids.update(by_id)
        seen: set[str] = set()
        unmatched: list[SandboxInfo] = []
        foreign: list[SandboxInfo] = []
        for info in infos:
            kind = ownership(info.tags, self.plane)
            if kind is Ownership.NOT_PARHELIA:
                continue  # no mark, or a look-alike's container tag: never touched
            if kind is Ownership.OTHER_PLANE:
                foreign.append(info)  # another control plane's: counted apart, never touched
                continue
            row = by_sandbox.get(info.sandbox_id)
            if row is None:
                cand = by_id.get(info.container_id or "")
                if cand is not None and cand.sandbox_id is None and cand.id not in seen:
                    seen.add(cand.id)
                    self._adopt(cand, info)
                else:
                    unmatched.append(info)
                continue
            seen.add(row.id)
            self._drift(row, info)
        for row in rows:
            if row.id not in seen:
                self._gone(row)
        for row in rows:
            self._mark_stale(row)
        if unmatched:
            self._orphans(backend, unmatched)
        else:
            self._save_in_grace(backend, {})
        self._foreign(backend, [i for i in foreign if i.running])

    def _foreign(self, backend: str, infos: Sequence[SandboxInfo]) -> None:
        """Remember another plane's running sandboxes (only when the set changes), so the dashboard
        counts them and `containers terminate` can refuse them by sandbox or container id."""
        self.report.foreign += len(infos)
        key = FOREIGN_PREFIX + backend
        now = {
            i.sandbox_id: {
                "plane": i.tags.get(TAG_PLANE, ""),
                "container": i.container_id,
                "task": i.task_id,
            }
            for i in infos
        }
        if now != (self.rec.store.get_setting(key) or {}):
            self.rec.store.set_setting(key, now, actor=ACTOR)

    def _adopt(self, row: Row, info: SandboxInfo) -> None:
        fields: dict = {"sandbox_id": info.sandbox_id, "tags": dict(info.tags)}
        adopt = _event(
            "container.adopted",
            f"{row.id} adopted sandbox {info.sandbox_id} by its tag (dispatch did not finish)",
            level=EventLevel.WARNING,
            source=SRC,
            actor=ACTOR,
            container_id=row.id,
            task_id=row.task_id,
            new_value=info.sandbox_id[:64],
            ts=self.now,
        )
        self._change(row, "adopted", fields, adopt)
        self._live_state(row, info, "adopted")

    def _live_state(self, row: Row, info: SandboxInfo, kind: str) -> None:
        if info.running and row.state == S.CREATED:
            self._state(
                row,
                S.RUNNING,
                kind,
                f"{row.id} created → running: its sandbox {info.sandbox_id} is running",
                started_at=row.started_at or as_utc(info.created_at) or self.now,
            )
        elif not info.running and row.state in (S.CREATED, S.RUNNING, S.ORPHANED):
            new = S.TERMINATED if row.state == S.ORPHANED else S.STOPPED
            self._state(
                row,
                new,
                kind,
                f"{row.id} {row.state} → {new}: its sandbox {info.sandbox_id} "
                + (exit_text(info.exit_code) or "exited"),
                exit_code=info.exit_code,
                termination_reason=row.termination_reason or "exited",
            )

    def _drift(self, row: Row, info: SandboxInfo) -> None:
        self._live_state(row, info, "corrections")
        if dict(row.tags or {}) != dict(info.tags):
            ev = _event(
                "container.drift",
                f"{row.id} tags corrected from the backend",
                source=SRC,
                actor=ACTOR,
                container_id=row.id,
                task_id=row.task_id,
                old_value="tags",
                new_value="tags",
                details={"field": "tags", "old": dict(row.tags or {}), "new": dict(info.tags)},
                ts=self.now,
            )
            self._change(row, "corrections", {"tags": dict(info.tags)}, ev)

    def _gone(self, row: Row) -> None:
        if row.sandbox_id is None:
            age = age_seconds(row.created_at, self.now) or 0.0
            if row.state == S.CREATED and age > DISPATCH_LOST_SECONDS:
                self._state(
                    row,
                    S.TERMINATED,
                    "terminated",
                    f"{row.id} never got a sandbox in {age / 60:.0f} min; closed as dispatch_lost",
                    termination_reason="dispatch_lost",
                    terminated_by=ACTOR,
                )
            return
        if not can_transition(row.state, S.TERMINATED) or row.state == S.TERMINATED:
            return
        reason = row.termination_reason if row.state == S.STOPPED else None
        code = row.exit_code if row.exit_code is not None else self._exit_code(row)
        ended = "exited" if code is not None else "external"
        self._state(
            row,
            S.TERMINATED,
            "terminated",
            f"{row.id} ({row.sandbox_id}) is no longer listed by {row.backend}: "
            + (f"it {exit_text(code)}" if code is not None else "terminated externally"),
            termination_reason=reason or ended,
            terminated_by=row.terminated_by or "external",
            exit_code=code,
        )

    def _exit_code(self, row: Row) -> int | None:
        """Ask the backend how a sandbox it no longer lists ended (Modal lists only running ones);
        any failure is "unknown": the row ends all the same."""
        try:
            return self.rec.backends[row.backend].exit_code(row.sandbox_id)
        except Exception:
            return None

    def _mark_stale(self, row: Row) -> None:
        change = self.changes.get(row.id)
        state = change.fields.get("state", row.state) if change else row.state
        if state != S.RUNNING or row.health in (Health.UNHEALTHY, Health.DEAD):
            return
        ref = row.last_heartbeat_at or (change.fields.get("started_at") if change else None)
        ref = ref or row.started_at
        silent = age_seconds(ref, self.now)
        if silent is None or silent <= self.stale:
            return
        ev = _event(
            "container.health",
            f"{row.id} has sent no heartbeat for {silent / 60:.0f} min: unhealthy (stale)",
            level=EventLevel.WARNING,
            source=SRC,
            actor=ACTOR,
            container_id=row.id,
            task_id=row.task_id,
            old_value=row.health,
            new_value=Health.UNHEALTHY,
            details={"silent_seconds": round(silent, 1), "stale_seconds": self.stale},
            ts=self.now,
        )
        self._change(row, "marked_stale", {"health": Health.UNHEALTHY}, ev)

    def _sightings(self, backend: str) -> dict[str, datetime]:
        """When each unrecorded sandbox whose backend gives no creation time (Modal's listing does
        not) was first seen. Kept in the store, not in memory: a one-shot `reconciler run` or
        `tui --once` must count the grace from the first sighting by any process."""
        raw = self.rec.store.get_setting(SIGHTINGS_KEY + backend) or {}
        return {sid: as_utc(datetime.fromisoformat(ts)) for sid, ts in raw.items()}

    def _save_sightings(
        self, backend: str, before: dict[str, datetime], seen: dict[str, datetime], listed: set[str]
    ) -> None:
        kept = {sid: ts for sid, ts in seen.items() if sid in listed}
        if kept != before:
            self.rec.store.set_setting(
                SIGHTINGS_KEY + backend,
                {sid: ts.isoformat() for sid, ts in kept.items()},
                actor=ACTOR,
            )

    def _first_seen(self, backend: str) -> datetime:
        """When a sandbox first listed now (with no creation time) is taken to have appeared: at
        the start of the previous good listing, which did not show it, but never more than one
        interval ago. Counting the grace from there rather than from this sighting records an
        orphan within the grace of its creation (SPEC-21: 2 minutes) instead of up to an interval
        later; with no earlier listing in this process it is now, as before."""
        before = self.rec.unseen_since.get(backend)
        if before is None:
            return self.now
        floor = self.now - timedelta(seconds=self.rec.settings.reconciler.interval_seconds)
        return min(self.now, max(as_utc(before), floor))

    def _in_grace_until(self, ends: datetime) -> None:
        r = self.report
        r.grace_ends_at = ends if r.grace_ends_at is None else min(r.grace_ends_at, ends)

    def _orphans(self, backend: str, infos: Sequence[SandboxInfo]) -> None:
        """Running sandboxes no row of the snapshot knows. Rows of any state are looked up once:
        a row that holds the sandbox now, or a live row named by its tag that the snapshot did not
        have, appeared during the listing (the next cycle judges it); a row that had ended before
        the snapshot while its sandbox runs goes back to `orphaned` instead of being recorded twice."""
        running = [i for i in infos if i.running]
        old = self.rec.store.containers_matching(
            backend,
            ids=[i.container_id for i in running if i.container_id],
            sandbox_ids=[i.sandbox_id for i in running],
        )
        old_ids = {c.id for c in old}
        holders = {c.sandbox_id: c for c in old if c.sandbox_id}
        newcomers = {c.id for c in old if c.state != S.TERMINATED and c.id not in self.snapshot_ids}
        seen = self._sightings(backend)
        before = dict(seen)
        graced: dict[str, str] = {}
        for info in running:
            holder = holders.get(info.sandbox_id)
            if holder is not None and holder.state != S.TERMINATED:
                continue  # its row holds it now: recorded during the listing
            if holder is None and info.container_id in newcomers:
                continue  # its dispatch is writing the sandbox id right now
            born = as_utc(info.created_at) or seen.setdefault(
                info.sandbox_id, self._first_seen(backend)
            )
            if (age_seconds(born, self.now) or 0.0) < self.grace:
                self.report.in_grace += 1
                ends = born + timedelta(seconds=self.grace)
                self._in_grace_until(ends)
                graced[info.sandbox_id] = ends.isoformat()
                continue
            seen.pop(info.sandbox_id, None)
            if holder is not None:
                ended = as_utc(holder.terminated_at)
                if ended is None or ended <= self.snapshot_at:
                    self._sighted(holder, info)
                continue  # ended during the listing: the next cycle judges it
            tag_id = info.container_id
            cid = tag_id if tag_id and tag_id not in old_ids and len(tag_id) <= 32 else None
            self._orphan(backend, info, cid or new_container_id(), born)
        self._save_sightings(backend, before, seen, {i.sandbox_id for i in running})
        self._save_in_grace(backend, graced)

    def _save_in_grace(self, backend: str, graced: dict[str, str]) -> None:
        """The sandboxes not yet recorded because they are inside their orphan grace, each with
        the grace's end, so every view can show them (written only when the set changes)."""
        key = IN_GRACE_PREFIX + backend
        if graced != (self.rec.store.get_setting(key) or {}):
            self.rec.store.set_setting(key, graced, actor=ACTOR)

    def _sighted(self, row: Container, info: SandboxInfo) -> None:
        """A row that says terminated while its sandbox runs goes back to `orphaned` (a fire).
        Without a plane tag (made before plane ids) no policy may stop it: only a person."""
        self.sighted.add(row.id)
        if needs_a_person(info.tags):
            self.needs_a_person.add(row.id)
        self._state(
            row,
            S.ORPHANED,
            "conflicts",
            f"{row.id} said terminated ({row.termination_reason or '-'}) but {row.backend} "
            f"sandbox {info.sandbox_id} still runs: orphaned again, burning "
            f"${row.cost_rate_per_hour:.3f}/h; parhelia containers terminate {row.id}",
            why={
                "was_reason": row.termination_reason,
                "was_terminated_by": row.terminated_by,
                "sandbox_id": info.sandbox_id,
            },
            **dict.fromkeys(ENDED_FIELDS),
        )

    def _orphan(
        self,
        backend: str,
        info: SandboxInfo,
        cid: str,
        born: datetime,
    ) -> None:
        rate, rate_source, res = self.rec.orphan_rate(info.resources)
        task_id = info.task_id if info.task_id and len(info.task_id) <= 32 else None
        if task_id:
            self.new_tasks.append(
                Task(
                    id=task_id,
                    prompt=f"(unknown: task recorded from orphaned sandbox {info.sandbox_id})",
                    status=TaskStatus.RUNNING,
                    backend=backend,
                    created_at=born,
                    updated_at=self.now,
                    actor=ACTOR,
                )
            )
        by_hand = needs_a_person(info.tags)
        if by_hand:
            self.needs_a_person.add(cid)
        row = Container(
            id=cid,
            backend=backend,
            sandbox_id=info.sandbox_id,
            task_id=task_id,
            state=S.ORPHANED,
            health=Health.UNKNOWN,
            created_at=born,
            started_at=born,
            cpu_cores=res.cpu,
            memory_mib=res.memory_mib,
            gpu=res.gpu,
            region=res.region,
            cost_rate_per_hour=rate,
            cost_accrued_usd=accrued_cost(rate, born, None, self.now),
            tags=dict(info.tags),
            meta={"rate_source": rate_source, "recorded_by": ACTOR},
            updated_at=self.now,
        )
        ev = _event(
            "container.orphaned",
            f"orphan: {backend} sandbox {info.sandbox_id} runs with no record "
            f"(task {task_id or '-'}, ~${rate:.3f}/h); parhelia cleanup --orphans"
            + ("; no plane tag (made before plane ids): no policy stops it" if by_hand else ""),
            level=EventLevel.WARNING,
            source=SRC,
            actor=ACTOR,
            container_id=cid,
            task_id=task_id,
            new_value=S.ORPHANED,
            details={
                "sandbox_id": info.sandbox_id,
                "rate_per_hour": rate,
                "rate_source": rate_source,
                "sandbox_created_at": born.isoformat(),
            },
            ts=self.now,
        )
        self.new_rows.append(NewRow(row, (ev,)))

    # -- counting what was applied -----------------------------------------------------------

    def count(self, changed: frozenset[str], inserted: frozenset[str]) -> None:
        r = self.report
        for cid, kinds in self.kinds.items():
            if cid not in changed:
                continue
            for kind in kinds:
                setattr(r, kind, getattr(r, kind) + 1)
        r.orphans += len(inserted)


def _event(type: str, message: str, *, ts: datetime, details: dict | None = None, **kw) -> dict:
    """An event as a plain row for the bulk insert (see `Store.apply_changes`)."""
    return {
        "ts": ts,
        "type": type,
        "message": message,
        "level": str(kw.pop("level", EventLevel.INFO)),
        "source": str(kw.pop("source", SRC)),
        "details": details or {},
        "container_id": None,
        "task_id": None,
        "old_value": None,
        "new_value": None,
        "actor": None,
        **{
            k: (str(v) if v is not None and k in ("old_value", "new_value") else v)
            for k, v in kw.items()
        },
    }


def _terminate_failed(cid: str, exc: Exception, now: datetime):
    return make_event(
        "container.terminate_failed",
        f"auto-terminate of orphan {cid} failed: {type(exc).__name__}: {exc}",
        level=EventLevel.ERROR,
        source=SRC,
        actor=ACTOR,
        container_id=cid,
        ts=now,
    )


def _run_row(report: ReconcileReport, finished: datetime) -> ReconcilerRun:
    return ReconcilerRun(
        started_at=report.started_at,
        finished_at=finished,
        duration_ms=report.duration_ms,
        holder=report.holder[:128],
        backends=",".join(report.backends)[:64],
        listed=report.listed,
        known=report.known,
        adopted=report.adopted,
        orphans=report.orphans,
        terminated=report.terminated,
        corrections=report.corrections,
        marked_stale=report.marked_stale,
        error=report.error,
        error_code=report.error_code,
    )
