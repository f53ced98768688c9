"""`ControlPlane`: the facade every front end (CLI, dashboard, MCP) calls to act and to read.

Dispatch (record before create) lives in `workers/dispatch.py`, mixed in here; terminate, cancel,
the questions front ends ask and the control loops live here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parhelia.state.costs import DEFAULT_RATES, RateTable
from parhelia.state.enums import ContainerState, EventLevel, EventSource, TaskStatus
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.models import Container, Event, Task
from parhelia.state.settings import STORED_SETTINGS, Settings
from parhelia.state.store import Store
from parhelia.state.views import (
    ContainerDetail,
    ContainerView,
)
from parhelia.workers.dispatch import Dispatching
from parhelia.workers.read_plane import ReadPlane

if TYPE_CHECKING:  # the backends load when one is used: a read command never needs them
    from parhelia.workers.backends.base import Backend, LogChunk

ACTOR_SOURCES = {
    "reconciler": EventSource.RECONCILER,
    "budget-guard": EventSource.BUDGET,
    "heartbeat": EventSource.HEARTBEAT,
    "dispatcher": EventSource.DISPATCHER,
}


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ControlPlane(ReadPlane, Dispatching):
    """Dispatch, terminate, cancel, retry, and the control loops, over one store and the backends."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        default_backend: str = "local",
        data_dir: Path | None = None,
        backends: Mapping[str, Backend] | None = None,
        clock: Callable[[], datetime] | None = None,
        holder: str | None = None,
    ) -> None:
        super().__init__(
            store, settings, default_backend=default_backend, data_dir=data_dir, clock=clock
        )
        self.holder = holder or default_holder()
        self._backends.update(backends or {})
        self._loops = None
        self._runner = None

    # -- backends and money ---------------------------------------------------------------

    @property
    def backends(self) -> dict[str, Backend]:
        """Every backend in use: those with active rows, plus the configured one."""
        for name in self.store.backends_in_use() | {self.default_backend}:
            self.backend_for(name)
        return self._backends

    @property
    def rates(self) -> RateTable:
        r = self.settings.rates
        return DEFAULT_RATES.with_overrides(r.cpu_core_hour, r.memory_gib_hour, r.gpu)

    def set_budget_ceiling(self, amount: float, *, actor: str = "user") -> tuple[float, float]:
        """Persist a new ceiling for the period with its event (who, old, new); (new, old)."""
        from parhelia.state.settings import RANGES

        if amount not in RANGES["budget.ceiling_usd"]:
            raise ParheliaError(
                "E101",
                f"ceiling ${amount:g} is out of range; valid: {RANGES['budget.ceiling_usd']}",
                ["parhelia budget set 50", "parhelia budget show"],
            )
        try:
            old = self.budget_config().ceiling_usd
        except ParheliaError:  # a bad stored ceiling: setting a new one is how it gets fixed
            old = self.settings.budget.ceiling_usd
        self.store.set_setting(
            "budget.ceiling_usd",
            amount,
            actor=actor,
            events=[
                make_event(
                    EventType.BUDGET_CEILING,
                    f"budget ceiling set to ${amount:.2f} (was ${old:.2f})",
                    source=ACTOR_SOURCES.get(actor, EventSource.USER),
                    actor=actor,
                    old_value=f"{old:.2f}",
                    new_value=f"{amount:.2f}",
                )
            ],
        )
        return amount, old

    def container_detail(self, ref: str) -> ContainerDetail:
        return self.store.container_detail(ref, now=self.clock())

    # -- terminate, cancel, retry ---------------------------------------------------------

    def terminate(self, ref: str, *, actor: str = "user", reason: str = "user") -> ContainerView:
        """Stop a container's sandbox and record why, by whom, its exit code and final cost.

        Idempotent on the sandbox, not just the row: a row already `terminated` still has its
        sandbox stopped (a row can say ended while its sandbox runs), and the row is left as it was.
        Refuses (E401) a sandbox of another control plane, by row or by what the listing saw."""
        c = self.owned_container(ref)
        source = ACTOR_SOURCES.get(actor, EventSource.USER)
        if c.state == ContainerState.TERMINATED:
            self._make_sure_gone(c, actor, source)
            return self._view(c.id)
        exit_code = c.exit_code
        if c.sandbox_id:
            backend = self.backend_for(c.backend)
            try:
                result = backend.terminate(c.sandbox_id)
                exit_code = result.exit_code if result.exit_code is not None else exit_code
                if result.already_gone and result.exit_code is not None:
                    # it had ended on its own first: its task ends from its exit code
                    reason = c.termination_reason or "exited"
            except ParheliaError as exc:
                if exc.code != "E205":  # already gone; anything else leaves the store as it was
                    self._terminate_failed(c, exc, actor, source)
                    raise
        self.store.transition(
            c.id,
            ContainerState.TERMINATED,
            source=source,
            actor=actor,
            termination_reason=reason,
            terminated_by=actor,
            exit_code=exit_code,
            now=self.clock(),
            message=f"{c.id} terminated by {actor} ({reason})",
        )  # its task ends with it (`Store.transition` applies `state.task_end`)
        return self._view(c.id)

    def _terminate_failed(self, c: Container, exc: ParheliaError, actor: str, source: str) -> None:
        self.store.add_event(
            EventType.CONTAINER_TERMINATE_FAILED,
            f"terminate {c.id} failed: {exc.message}",
            level=EventLevel.ERROR,
            source=source,
            actor=actor,
            container_id=c.id,
            task_id=c.task_id,
            details={"code": exc.code},
        )

    def _make_sure_gone(self, c: Container, actor: str, source: str) -> None:
        """Stop the sandbox of a row that already says terminated; record it if it still ran."""
        if not c.sandbox_id:
            return
        try:
            result = self.backend_for(c.backend).terminate(c.sandbox_id)
        except ParheliaError as exc:
            if exc.code == "E205":
                return  # gone, as the row says
            self._terminate_failed(c, exc, actor, source)
            raise
        if not result.already_gone:
            self.store.add_event(
                EventType.CONTAINER_TERMINATED_AGAIN,
                f"{c.id} said terminated but its sandbox {c.sandbox_id} still ran; "
                f"stopped now by {actor}",
                level=EventLevel.WARNING,
                source=source,
                actor=actor,
                container_id=c.id,
                task_id=c.task_id,
                details={"exit_code": result.exit_code},
            )

    def owned_container(self, ref: str) -> Container:
        """The row for `ref`, or E401 when `ref` names another control plane's sandbox: by a row
        whose tags carry another plane's id, or by the sandbox or container id the last listing
        saw with one (such sandboxes have no row here)."""
        from parhelia.workers.backends.base import TAG_PLANE, Ownership, ownership

        plane = self.store.plane_id
        try:
            c = self.store.get_container(ref)
        except ParheliaError as exc:
            theirs = next(
                (
                    f
                    for f in self.store.foreign_sandboxes()
                    if ref in (f.sandbox_id, f.container_id)
                ),
                None,
            )
            if theirs is None:
                raise
            raise _other_plane(ref, theirs.plane_id, plane) from exc
        if c.tags and ownership(c.tags, plane) is Ownership.OTHER_PLANE:
            raise _other_plane(ref, c.tags.get(TAG_PLANE, ""), plane)
        return c

    def cancel_task(self, task_id: str, *, actor: str = "user") -> list[ContainerView]:
        task = self.store.get_task(task_id)
        stopped = [
            self.terminate(c.id, actor=actor, reason="task_cancelled")
            for c in self.store.containers_for_task(task.id)
            if c.state != ContainerState.TERMINATED
        ]
        if task.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
            self.store.update_task(task.id, status=TaskStatus.CANCELLED, finished_at=self.clock())
        self.store.add_event(
            EventType.TASK_CANCELLED,
            f"task {task.id} cancelled by {actor}",
            source=ACTOR_SOURCES.get(actor, EventSource.USER),
            actor=actor,
            task_id=task.id,
        )
        return stopped

    def shell_argv(self, ref: str) -> list[str]:
        c = self.store.get_container(ref)
        if not c.sandbox_id or c.state not in (ContainerState.RUNNING, ContainerState.ORPHANED):
            raise ParheliaError(
                "E601",
                f"{c.id} has no running sandbox to attach to (state {c.state})",
                [f"parhelia containers show {c.id}", "parhelia containers list"],
            )
        return self.backend_for(c.backend).shell_argv(c.sandbox_id)

    def container_logs(self, ref: str, offset: int = 0) -> tuple[Container, LogChunk]:
        """A container's agent output from byte `offset` (the logs screen and `containers logs`
        read on from `next_offset`), with the row so a follower knows when it has ended."""
        c = self.store.get_container(ref)
        if not c.sandbox_id:
            raise ParheliaError(
                "E205",
                f"{c.id} never got a sandbox (state {c.state}), so it has no agent output",
                [f"parhelia containers show {c.id}", f"parhelia containers events {c.id}"],
            )
        return c, self.backend_for(c.backend).read_log(c.sandbox_id, offset)

    def _view(self, container_id: str) -> ContainerView:
        return self.store.container_views(now=self.clock(), ids=[container_id])[0]

    # -- what front ends read (commands and the MCP server ask here, never the store) ------

    @property
    def plane_id(self) -> str:
        """This control plane's id (made on the store's first open), the tag its sandboxes carry."""
        return self.store.plane_id

    @property
    def store_label(self) -> str:
        return self.store.label

    def stored_settings(self) -> dict[str, Any]:
        """The settings a command stored in the database (`state.settings.STORED_SETTINGS`)."""
        stored = self.store.settings_with_prefix("")
        return {k: stored[k] for k in STORED_SETTINGS if stored.get(k) is not None}

    def orphans(self) -> list[Container]:
        return self.store.orphans()

    def task(self, ref: str) -> Task:
        return self.store.get_task(ref)

    def tasks(self, *, status: str | None = None, limit: int = 100) -> list[Task]:
        return self.store.list_tasks(status=status, limit=limit)

    def task_containers(self, task_id: str) -> list[Container]:
        return self.store.containers_for_task(task_id)

    def events_oldest_first(self, **filters: Any) -> list[Event]:
        return self.store.events(oldest_first=True, **filters)

    def count_events(self, **filters: Any) -> int:
        return self.store.count_events(**filters)

    def event_batches(self, **filters: Any) -> Iterator[list[tuple]]:
        """Matching events oldest first as plain tuples (`EVENT_ROW_COLUMNS`), in lists: exports."""
        return self.store.event_batches(**filters)

    def event_follower(self, **kwargs: Any):
        """An `EventFollower` over this store: news from any process (`events watch`)."""
        from parhelia.workers.event_follow import EventFollower

        return EventFollower(self.store, **kwargs)

    def event_tail(self):
        """An `EventTail` over this store: the rows committed since the last read (MCP push)."""
        from parhelia.workers.event_tail import EventTail

        return EventTail(self.store)

    def changes(self):
        """A `Changes` over this store: wakes a watch command when the store may have changed."""
        from parhelia.workers.event_follow import Changes

        return Changes(self.store)

    @property
    def can_watch_changes(self) -> bool:
        """Whether `watch_changes` delivers changes for this store (not an in-memory SQLite)."""
        from parhelia.workers.db_watch import can_watch

        return can_watch(self.store.url)

    def watch_changes(self, on_change: Callable[[], None], stop) -> bool:
        """Call `on_change` whenever the store changes until `stop`, when the database can be
        watched (the SQLite file watcher, or LISTEN/NOTIFY); False at once when it cannot."""
        from parhelia.workers.db_watch import can_watch, watch_store

        if not can_watch(self.store.url):
            return False
        watch_store(self.store.url, on_change, stop)
        return True

    def lease_holder(self) -> str | None:
        """Who holds the reconciler lease now, if anyone."""
        lease = self.store.get_lease()
        return lease.holder if lease else None

    # -- the control loops ----------------------------------------------------------------

    def _terminate_for_loops(self, container_id: str, actor: str, reason: str) -> ContainerView:
        """Every terminate the budget guard or the reconciler's orphan policy decides comes here:
        a checkpoint first (`[checkpoint] on_terminate`), which never raises or blocks it."""
        from parhelia.workers.checkpoints import checkpoint_before_terminate

        checkpoint_before_terminate(self, container_id, actor, reason)
        return self.terminate(container_id, actor=actor, reason=reason)

    @property
    def reconciler(self):
        if self._loops is None:
            self._build_loops()
        return self._loops[0]

    @property
    def poller(self):
        if self._loops is None:
            self._build_loops()
        return self._loops[1]

    @property
    def guard(self):
        if self._loops is None:
            self._build_loops()
        return self._loops[2]

    def _build_loops(self) -> None:
        from parhelia.workers.budget_guard import BudgetGuard
        from parhelia.workers.heartbeat import HeartbeatPoller
        from parhelia.workers.reconciler import Reconciler

        backends = _LiveBackends(self)
        self._loops = (
            Reconciler(
                self.store,
                backends,
                self.settings,
                configured_backend=self.default_backend,
                holder=self.holder,
                terminate=self._terminate_for_loops,
                clock=self.clock,
            ),
            HeartbeatPoller(self.store, backends, self.settings, clock=self.clock),
            BudgetGuard(
                self.store, self.settings, terminate=self._terminate_for_loops, clock=self.clock
            ),
        )

    def reconcile_once(self):
        return self.reconciler.run_once()

    @property
    def loops(self):
        """The one loop runner over this plane's reconciler, poller and guard."""
        if self._runner is None:
            from parhelia.workers.loops import LoopRunner

            self._runner = LoopRunner(self.reconciler, self.poller, self.guard, self.settings)
        return self._runner

    def refresh_once(self, *, heartbeat_within: float | None = None):
        """One pass of every loop, as `parhelia tui --once` and `reconciler run` want it; the
        lease is released at the end (a one-shot command holds nothing once it has answered).
        The report carries what the budget guard did in the same pass. `heartbeat_within`: the
        seconds its probes may take (a view's pass; `reconciler run` probes every row)."""
        guard: list[str] = []

        def seen(name: str, result) -> None:
            if name == "budget" and result:
                guard.extend(result)

        report = self.loops.once(on_cycle=seen, heartbeat_within=heartbeat_within)
        report.guard_actions = guard
        return report

    def run_loops(self, stop, log=None) -> bool:
        """The daemon: the loops on their own thread until `stop`; False if a call outlived the grace."""
        from parhelia.workers.daemon import run_daemon

        return run_daemon(self.loops, stop, log=log)


def _other_plane(ref: str, theirs: str, ours: str) -> ParheliaError:
    return ParheliaError(
        "E401",
        f"{ref} belongs to another control plane ({theirs}; this one is {ours}); "
        "Parhelia never touches another plane's sandboxes: stop it from the Parhelia that made it",
        ["parhelia containers orphans", "parhelia config show", "parhelia containers list"],
        attempted=f"terminate {ref}",
    )


class _LiveBackends(Mapping):
    """The backends in use, looked up at each access so a new backend in the store is picked up."""

    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def __getitem__(self, name: str) -> Backend:
        return self._control.backend_for(name)

    def __iter__(self):
        return iter(self._control.backends)

    def __len__(self) -> int:
        return len(self._control.backends)
