"""One reconcile cycle's plan: judge the rows of a snapshot against each backend's listing.

`ReconcilePlan` collects row changes, new rows and events; the `Reconciler` applies them in one
guarded write (`Store.apply_changes`). Besides the rows it is given, the plan reads the store only
to look up rows matching a listed sandbox, asks a backend how a no-longer-listed sandbox ended, and
keeps three small memos in the store's settings (first sightings, sandboxes in their grace, other
planes' sandboxes), so every process and view sees them. What it judges:

- a listed Parhelia sandbox whose row has no sandbox id yet (a crash during dispatch) is adopted by
  its container-id tag; a listed sandbox's row whose state or tags drifted is corrected;
- a row whose sandbox is no longer listed is `terminated` (reason `external`, or how it exited
  when the backend can tell); a `created` row that never got a sandbox is closed after
  `DISPATCH_LOST_SECONDS`; a running row silent past `[reconciler] stale_seconds` turns unhealthy;
- a listed running sandbox with no row is recorded as `orphaned` once its grace has passed (counted
  from the previous good listing when the backend gives no creation time);
- a listed running sandbox whose row says `terminated` is a fire, not a footnote: the row goes back
  to `orphaned` (`state.lifecycle.SIGHTED`), so it burns in the budget, shows in the attention list
  and among the orphans, and `containers terminate` stops it again;
- another control plane's sandboxes are counted and remembered, never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parhelia.state.bulk import NewRow, RowChange
from parhelia.state.costs import accrued_cost
from parhelia.state.enums import ContainerState, EventLevel, EventSource, Health, TaskStatus
from parhelia.state.event_log import event_fields
from parhelia.state.event_types import EventType
from parhelia.state.exit_codes import exit_text
from parhelia.state.keys import FOREIGN_PREFIX, IN_GRACE_PREFIX
from parhelia.state.lifecycle import ENDED_FIELDS, can_transition, end_of_life
from parhelia.state.models import Container, Task, new_container_id
from parhelia.state.timeutil import age_seconds, as_utc
from parhelia.workers.backends.base import (
    TAG_PLANE,
    Ownership,
    SandboxInfo,
    needs_a_person,
    ownership,
)
from parhelia.workers.reconcile_report import ReconcileReport

if TYPE_CHECKING:
    from parhelia.workers.reconciler import Reconciler

ACTOR = "reconciler"
SIGHTINGS_KEY = "reconciler.first_seen."
SOURCE = EventSource.RECONCILER
# A `created` row that never got a sandbox (the process died before create returned) is closed
# after this long; image builds can take minutes, so it is well beyond the orphan grace.
DISPATCH_LOST_SECONDS = 3600.0

Row = Any  # a container row as `Store.container_snapshot` returns it (read-only, attribute access)


class ReconcilePlan:
    """The changes of one cycle, built from rows loaded once and indexed in dicts."""

    def __init__(
        self, reconciler: Reconciler, now: datetime, report: ReconcileReport, snapshot_at: datetime
    ) -> None:
        self.reconciler = reconciler
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
        self.grace = reconciler.settings.reconciler.orphan_grace_seconds
        self.stale = reconciler.settings.reconciler.stale_seconds
        self.plane = reconciler.store.plane_id
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
        level = (
            EventLevel.WARNING
            if new in (ContainerState.TERMINATED, ContainerState.ORPHANED)
            else EventLevel.INFO
        )
        fields.update(end_of_life(row, new, self.now))
        fields["state"] = new
        ev = _event_row(
            EventType.CONTAINER_STATE,
            message,
            level=level,
            source=SOURCE,
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
                candidate = by_id.get(info.container_id or "")
                if (
                    candidate is not None
                    and candidate.sandbox_id is None
                    and candidate.id not in seen
                ):
                    seen.add(candidate.id)
                    self._adopt(candidate, info)
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
        if now != (self.reconciler.store.get_setting(key) or {}):
            self.reconciler.store.set_setting(key, now, actor=ACTOR)

    def _adopt(self, row: Row, info: SandboxInfo) -> None:
        fields: dict = {"sandbox_id": info.sandbox_id, "tags": dict(info.tags)}
        adopt = _event_row(
            EventType.CONTAINER_ADOPTED,
            f"{row.id} adopted sandbox {info.sandbox_id} by its tag (dispatch did not finish)",
            level=EventLevel.WARNING,
            source=SOURCE,
            actor=ACTOR,
            container_id=row.id,
            task_id=row.task_id,
            new_value=info.sandbox_id[:64],
            ts=self.now,
        )
        self._change(row, "adopted", fields, adopt)
        self._live_state(row, info, "adopted")

    def _live_state(self, row: Row, info: SandboxInfo, kind: str) -> None:
        if info.running and row.state == ContainerState.CREATED:
            self._state(
                row,
                ContainerState.RUNNING,
                kind,
                f"{row.id} created → running: its sandbox {info.sandbox_id} is running",
                started_at=row.started_at or as_utc(info.created_at) or self.now,
            )
        elif not info.running and row.state in (
            ContainerState.CREATED,
            ContainerState.RUNNING,
            ContainerState.ORPHANED,
        ):
            new = (
                ContainerState.TERMINATED
                if row.state == ContainerState.ORPHANED
                else ContainerState.STOPPED
            )
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
            ev = _event_row(
                EventType.CONTAINER_DRIFT,
                f"{row.id} tags corrected from the backend",
                source=SOURCE,
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
            if row.state == ContainerState.CREATED and age > DISPATCH_LOST_SECONDS:
                self._state(
                    row,
                    ContainerState.TERMINATED,
                    "terminated",
                    f"{row.id} never got a sandbox in {age / 60:.0f} min; closed as dispatch_lost",
                    termination_reason="dispatch_lost",
                    terminated_by=ACTOR,
                )
            return
        if (
            not can_transition(row.state, ContainerState.TERMINATED)
            or row.state == ContainerState.TERMINATED
        ):
            return
        reason = row.termination_reason if row.state == ContainerState.STOPPED else None
        code = row.exit_code if row.exit_code is not None else self._exit_code(row)
        ended = "exited" if code is not None else "external"
        self._state(
            row,
            ContainerState.TERMINATED,
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
            return self.reconciler.backends[row.backend].exit_code(row.sandbox_id)
        except Exception:
            return None

    def _mark_stale(self, row: Row) -> None:
        change = self.changes.get(row.id)
        state = change.fields.get("state", row.state) if change else row.state
        if state != ContainerState.RUNNING or row.health in (Health.UNHEALTHY, Health.DEAD):
            return
        ref = row.last_heartbeat_at or (change.fields.get("started_at") if change else None)
        ref = ref or row.started_at
        silent = age_seconds(ref, self.now)
        if silent is None or silent <= self.stale:
            return
        ev = _event_row(
            EventType.CONTAINER_HEALTH,
            f"{row.id} has sent no heartbeat for {silent / 60:.0f} min: unhealthy (stale)",
            level=EventLevel.WARNING,
            source=SOURCE,
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
        raw = self.reconciler.store.get_setting(SIGHTINGS_KEY + backend) or {}
        return {sid: as_utc(datetime.fromisoformat(ts)) for sid, ts in raw.items()}

    def _save_sightings(
        self, backend: str, before: dict[str, datetime], seen: dict[str, datetime], listed: set[str]
    ) -> None:
        kept = {sid: ts for sid, ts in seen.items() if sid in listed}
        if kept != before:
            self.reconciler.store.set_setting(
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
        before = self.reconciler.unseen_since.get(backend)
        if before is None:
            return self.now
        floor = self.now - timedelta(seconds=self.reconciler.settings.reconciler.interval_seconds)
        return min(self.now, max(as_utc(before), floor))

    def _in_grace_until(self, ends: datetime) -> None:
        report = self.report
        report.grace_ends_at = (
            ends if report.grace_ends_at is None else min(report.grace_ends_at, ends)
        )

    def _orphans(self, backend: str, infos: Sequence[SandboxInfo]) -> None:
        """Running sandboxes no row of the snapshot knows. Rows of any state are looked up once:
        a row that holds the sandbox now, or a live row named by its tag that the snapshot did not
        have, appeared during the listing (the next cycle judges it); a row that had ended before
        the snapshot while its sandbox runs goes back to `orphaned` instead of being recorded twice."""
        running = [i for i in infos if i.running]
        old = self.reconciler.store.containers_matching(
            backend,
            ids=[i.container_id for i in running if i.container_id],
            sandbox_ids=[i.sandbox_id for i in running],
        )
        old_ids = {c.id for c in old}
        holders = {c.sandbox_id: c for c in old if c.sandbox_id}
        newcomers = {
            c.id
            for c in old
            if c.state != ContainerState.TERMINATED and c.id not in self.snapshot_ids
        }
        seen = self._sightings(backend)
        before = dict(seen)
        graced: dict[str, str] = {}
        for info in running:
            holder = holders.get(info.sandbox_id)
            if holder is not None and holder.state != ContainerState.TERMINATED:
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
        if graced != (self.reconciler.store.get_setting(key) or {}):
            self.reconciler.store.set_setting(key, graced, actor=ACTOR)

    def _sighted(self, row: Container, info: SandboxInfo) -> None:
        """A row that says terminated while its sandbox runs goes back to `orphaned` (a fire).
        Without a plane tag (made before plane ids) no policy may stop it: only a person."""
        self.sighted.add(row.id)
        if needs_a_person(info.tags):
            self.needs_a_person.add(row.id)
        self._state(
            row,
            ContainerState.ORPHANED,
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
        rate, rate_source, res = self.reconciler.orphan_rate(info.resources)
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
        row = {  # the row's columns (`NewRow`), no model: hundreds of orphans are recorded at once
            "id": cid,
            "backend": backend,
            "sandbox_id": info.sandbox_id,
            "task_id": task_id,
            "state": ContainerState.ORPHANED.value,
            "health": Health.UNKNOWN.value,
            "created_at": born,
            "started_at": born,
            "cpu_cores": res.cpu,
            "memory_mib": res.memory_mib,
            "gpu": res.gpu,
            "region": res.region,
            "cost_rate_per_hour": rate,
            "cost_accrued_usd": accrued_cost(rate, born, None, self.now),
            "tags": dict(info.tags),
            "metadata": {"rate_source": rate_source, "recorded_by": ACTOR},
            "updated_at": self.now,
        }
        ev = _event_row(
            EventType.CONTAINER_ORPHANED,
            f"orphan: {backend} sandbox {info.sandbox_id} runs with no record "
            f"(task {task_id or '-'}, ~${rate:.3f}/h); parhelia cleanup --orphans"
            + ("; no plane tag (made before plane ids): no policy stops it" if by_hand else ""),
            level=EventLevel.WARNING,
            source=SOURCE,
            actor=ACTOR,
            container_id=cid,
            task_id=task_id,
            new_value=ContainerState.ORPHANED,
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
        """Count in the report only what the store applied (a change whose row moved is dropped)."""
        report = self.report
        for cid, kinds in self.kinds.items():
            if cid not in changed:
                continue
            for kind in kinds:
                setattr(report, kind, getattr(report, kind) + 1)
        report.orphans += len(inserted)


def _event_row(type: str, message: str, *, ts: datetime, **fields) -> dict:
    """An event as a plain row for the bulk insert (see `Store.apply_changes`), the reconciler's by default."""
    return event_fields(type, message, ts=ts, **{"source": SOURCE, **fields})
