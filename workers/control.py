"""`ControlPlane`: the facade every front end (CLI, dashboard, MCP) calls to act.

Dispatch records before it creates: the task and a `created` container row are written first,
the sandbox is created carrying the container id in its tags, then the sandbox id is filled in.
A crash in between leaves a row the reconciler can match by tag; an error after the sandbox
exists terminates it, so no error path leaves a running sandbox without a row.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from parhelia.state.budget import BudgetConfig
from parhelia.state.costs import DEFAULT_RATES, RateTable, estimate_task, hourly_rate
from parhelia.state.enums import ContainerState, EventLevel, EventSource, TaskStatus
from parhelia.state.errors import ParheliaError
from parhelia.state.models import Checkpoint, Container, Task, new_container_id, new_task_id
from parhelia.state.requests import TaskRequest, budget_warnings, proactive_warnings, validate
from parhelia.state.settings import Settings
from parhelia.state.store import Store, make_event
from parhelia.state.timeutil import utcnow
from parhelia.state.views import ContainerDetail, ContainerView, DashboardView
from parhelia.workers.agent_command import build_argv
from parhelia.workers.backends import make_backend
from parhelia.workers.backends.base import (
    TAG_PLANE,
    Backend,
    LogChunk,
    Ownership,
    SandboxSpec,
    ownership,
)

ACTOR_SOURCES = {
    "reconciler": EventSource.RECONCILER,
    "budget-guard": EventSource.BUDGET,
    "heartbeat": EventSource.HEARTBEAT,
    "dispatcher": EventSource.DISPATCHER,
}


@dataclass(frozen=True)
class Estimate:
    rate_per_hour: float
    cost_usd: float
    spent_usd: float
    ceiling_usd: float
    warnings: list[str] = field(default_factory=list)

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.ceiling_usd - self.spent_usd)


@dataclass(frozen=True)
class DispatchResult:
    task_id: str
    container_id: str
    sandbox_id: str
    backend: str
    estimate: Estimate
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["estimate"]["remaining_usd"] = self.estimate.remaining_usd
        out["budget_left_after_usd"] = max(
            0.0, self.estimate.remaining_usd - self.estimate.cost_usd
        )
        return out


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ControlPlane:
    """Dispatch, terminate, cancel, retry, and the control loops, over one store and the backends."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        default_backend: str = "local",
        data_dir: Path | None = None,
        backends: Mapping[str, Backend] | None = None,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.default_backend = default_backend
        self.data_dir = data_dir or Path.cwd()
        self.clock = clock
        self.holder = holder or default_holder()
        self._backends: dict[str, Backend] = dict(backends or {})
        self._loops = None
        self._runner = None

    # -- backends and money ---------------------------------------------------------------

    def backend_for(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = make_backend(name, self.settings, self.data_dir)
        return self._backends[name]

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

    def budget_config(self) -> BudgetConfig:
        from parhelia.workers.budget_guard import budget_config

        return budget_config(self.store, self.settings)

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
                    "budget.ceiling",
                    f"budget ceiling set to ${amount:.2f} (was ${old:.2f})",
                    source=ACTOR_SOURCES.get(actor, EventSource.USER),
                    actor=actor,
                    old_value=f"{old:.2f}",
                    new_value=f"{amount:.2f}",
                )
            ],
        )
        return amount, old

    def dashboard(self, *, event_limit: int | None = None) -> DashboardView:
        return self.store.dashboard(
            now=self.clock(),
            budget=self.budget_config(),
            event_limit=self.settings.tui.event_rows if event_limit is None else event_limit,
            reconcile_interval=self.settings.reconciler.interval_seconds,
            backend_label=self.default_backend,
        )

    def container_detail(self, ref: str) -> ContainerDetail:
        return self.store.container_detail(ref, now=self.clock())

    def estimate(self, request: TaskRequest) -> Estimate:
        req = validate(request)
        rate = hourly_rate(req.cpu, req.memory_mib, req.gpu, req.region, self.rates)
        cost = estimate_task(
            req.cpu, req.memory_mib, req.gpu, req.region, req.timeout_minutes, self.rates
        )
        budget = self.dashboard(event_limit=0).budget
        warnings = proactive_warnings(req) + budget_warnings(
            cost, budget.spent_usd, budget.ceiling_usd
        )
        return Estimate(rate, cost, budget.spent_usd, budget.ceiling_usd, warnings)

    # -- dispatch -------------------------------------------------------------------------

    def dispatch(
        self, request: TaskRequest, *, actor: str = "user", restore_from: Checkpoint | None = None
    ) -> DispatchResult:
        """`restore_from`: the workspace starts as that checkpoint's (`workers/checkpoints.py`)."""
        req = validate(request)
        backend_name = req.backend or self.default_backend
        est = self.estimate(req)
        self._check_budget(req, est)
        argv = build_argv(self.settings.agent.command, req.prompt, self.settings.agent.max_turns)
        backend = self.backend_for(backend_name)
        previous = self.store.get_task(req.retry_of) if req.retry_of else None

        task = Task(
            id=new_task_id(),
            prompt=req.prompt,
            status=TaskStatus.PENDING,
            backend=backend_name,
            cpu=req.cpu,
            memory_mib=req.memory_mib,
            gpu=req.gpu,
            region=req.region,
            timeout_minutes=req.timeout_minutes,
            estimated_cost_usd=round(est.cost_usd, 4),
            retry_of=req.retry_of,
            attempt=(previous.attempt + 1) if previous else 1,
            actor=actor,
        )
        container = Container(
            id=new_container_id(),
            backend=backend_name,
            task_id=task.id,
            cpu_cores=req.cpu,
            memory_mib=req.memory_mib,
            gpu=req.gpu,
            region=req.region,
            cost_rate_per_hour=est.rate_per_hour,
            meta={"argv": argv, **({"restored_from": restore_from.id} if restore_from else {})},
        )
        src = EventSource.DISPATCHER
        events = [
            make_event(
                "task.created",
                f"task {task.id} created by {actor}: {req.prompt[:80]}",
                source=src,
                actor=actor,
                task_id=task.id,
                details={"estimate_usd": round(est.cost_usd, 4), "retry_of": req.retry_of},
            ),
            make_event(
                "container.created",
                f"{container.id} recorded before its sandbox exists ({backend_name})",
                source=src,
                actor=actor,
                container_id=container.id,
                task_id=task.id,
                new_value=ContainerState.CREATED,
            ),
        ]
        events += [
            make_event(
                "budget.warning",
                w,
                level=EventLevel.WARNING,
                source=EventSource.BUDGET,
                actor=actor,
                task_id=task.id,
            )
            for w in est.warnings
            if "budget" in w or "ceiling" in w
        ]
        self.store.add_container(container, task=task, events=events)

        spec = SandboxSpec(
            container_id=container.id,
            task_id=task.id,
            argv=argv,
            cpu=req.cpu,
            memory_mib=req.memory_mib,
            gpu=req.gpu,
            region=req.region,
            timeout_seconds=req.timeout_minutes * 60,
            idle_timeout_seconds=self.settings.modal.idle_timeout_seconds or None,
            image=self.settings.modal.image,
            secrets=list(self.settings.modal.secrets),
            env={"PARHELIA_CONTAINER_ID": container.id, "PARHELIA_TASK_ID": task.id},
            plane_id=self.store.plane_id,
        )
        try:
            info = backend.restore(spec, restore_from.ref) if restore_from else backend.create(spec)
        except Exception as exc:
            self._dispatch_failed(container, task, exc, actor)
            raise self._as_dispatch_error(exc, task.id) from exc
        try:
            self.store.record_sandbox(
                container.id,
                info.sandbox_id,
                source=src,
                actor=actor,
                tags=dict(info.tags),
                message=f"{container.id} running as {backend_name} sandbox {info.sandbox_id}",
            )
        except Exception as exc:
            # The sandbox exists but the store could not record it: stop it rather than leave it unseen.
            try:
                backend.terminate(info.sandbox_id)
            finally:
                self._dispatch_failed(container, task, exc, actor)
            raise self._as_dispatch_error(exc, task.id) from exc
        return DispatchResult(
            task.id, container.id, info.sandbox_id, backend_name, est, est.warnings
        )

    def _check_budget(self, req: TaskRequest, est: Estimate) -> None:
        allowed, reason = self.guard.dispatch_allowed()
        if not allowed:
            raise ParheliaError(
                "E603",
                reason.removeprefix("E603: "),
                ["parhelia budget show", "parhelia budget set AMOUNT", "parhelia config show"],
                attempted="dispatch a task",
            )
        if est.cost_usd > est.remaining_usd:
            raise ParheliaError(
                "E300",
                f"the estimate ${est.cost_usd:.2f} ({req.timeout_minutes} min at ${est.rate_per_hour:.3f}/h) exceeds "
                f"the ${est.remaining_usd:.2f} left of the ${est.ceiling_usd:.2f} budget",
                [
                    "parhelia budget show",
                    "parhelia budget set AMOUNT",
                    f"parhelia task create PROMPT --timeout {max(1, int(req.timeout_minutes * est.remaining_usd / max(est.cost_usd, 1e-9)))}",
                ],
                attempted="dispatch a task",
            )

    def _dispatch_failed(
        self, container: Container, task: Task, exc: Exception, actor: str
    ) -> None:
        code = exc.code if isinstance(exc, ParheliaError) else "E602"
        self.store.transition(
            container.id,
            ContainerState.TERMINATED,
            source=EventSource.DISPATCHER,
            actor=actor,
            level=EventLevel.ERROR,
            termination_reason="dispatch_failed",
            terminated_by=actor,
            message=f"dispatch of {container.id} failed ({code}): {getattr(exc, 'message', exc)}",
            details={"code": code},
        )  # its task fails with it (`Store.transition` applies `state.task_end`)

    @staticmethod
    def _as_dispatch_error(exc: Exception, task_id: str) -> ParheliaError:
        if isinstance(exc, ParheliaError):
            return exc
        return ParheliaError(
            "E602",
            f"dispatch of task {task_id} failed: {exc}",
            [f"parhelia task retry {task_id}", "parhelia reconciler run", "parhelia config show"],
        )

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
            "container.terminate_failed",
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
                "container.terminated_again",
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
            "task.cancelled",
            f"task {task.id} cancelled by {actor}",
            source=ACTOR_SOURCES.get(actor, EventSource.USER),
            actor=actor,
            task_id=task.id,
        )
        return stopped

    def retry_task(self, task_id: str, *, actor: str = "user") -> DispatchResult:
        old = self.store.get_task(task_id)
        return self.dispatch(
            TaskRequest(
                prompt=old.prompt,
                backend=old.backend,
                gpu=old.gpu,
                cpu=old.cpu,
                memory_mib=old.memory_mib,
                timeout_minutes=old.timeout_minutes,
                region=old.region,
                retry_of=old.id,
            ),
            actor=actor,
        )

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

    def heartbeat_once(self):
        return self.poller.run_once()

    def budget_check(self):
        return self.guard.check()

    @property
    def loops(self):
        """The one loop runner over this plane's reconciler, poller and guard."""
        if self._runner is None:
            from parhelia.workers.loops import LoopRunner

            self._runner = LoopRunner(self.reconciler, self.poller, self.guard, self.settings)
        return self._runner

    def refresh_once(self):
        """One pass of every loop, as `parhelia tui --once` and `reconciler run` want it; the
        lease is released at the end (a one-shot command holds nothing once it has answered).
        The report carries what the budget guard did in the same pass."""
        guard: list[str] = []

        def seen(name: str, result) -> None:
            if name == "budget" and result:
                guard.extend(result)

        report = self.loops.once(on_cycle=seen)
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
