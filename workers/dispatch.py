"""Dispatch, the half of `ControlPlane` that starts work: price a task, check the budget, record
before creating.

The task and a `created` container row are written first, the sandbox is created carrying the
container id in its tags, then the sandbox id is filled in. A crash in between leaves a row the
reconciler can match by tag; an error after the sandbox exists terminates it, so no error path
leaves a running sandbox without a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from parhelia.state.costs import estimate_task, hourly_rate
from parhelia.state.enums import ContainerState, EventLevel, EventSource, TaskStatus
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.models import Checkpoint, Container, Task, new_container_id, new_task_id
from parhelia.state.requests import TaskRequest, budget_warnings, proactive_warnings, validate

if TYPE_CHECKING:  # loaded by a dispatch, not by every command that builds a `ControlPlane`
    from parhelia.workers.progress import Progress


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


class Dispatching:
    """`ControlPlane.estimate`, `dispatch` and `retry_task` (mixed into `ControlPlane`, whose store,
    settings, backends and budget guard they use)."""

    def _resolved(self, request: TaskRequest) -> TaskRequest:
        """The request with its backend named (the default when none was), then validated: the
        backend's own rules (no GPU on local) hold for the default exactly as for `--backend`."""
        return validate(replace(request, backend=request.backend or self.default_backend))

    def estimate(self, request: TaskRequest) -> Estimate:
        req = self._resolved(request)
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
        self,
        request: TaskRequest,
        *,
        actor: str = "user",
        restore_from: Checkpoint | None = None,
        progress: Progress | None = None,
    ) -> DispatchResult:
        """`restore_from`: the workspace starts as that checkpoint's (`workers/checkpoints.py`).
        `progress(stage)` hears each stage: `recording`, then the backend's own (`workers/progress.py`)."""
        from parhelia.workers.agent_command import build_argv
        from parhelia.workers.backends.base import SandboxSpec
        from parhelia.workers.progress import reporting

        req = self._resolved(request)
        backend_name = req.backend
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
                EventType.TASK_CREATED,
                f"task {task.id} created by {actor}: {req.prompt[:80]}",
                source=src,
                actor=actor,
                task_id=task.id,
                details={"estimate_usd": round(est.cost_usd, 4), "retry_of": req.retry_of},
            ),
            make_event(
                EventType.CONTAINER_CREATED,
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
                EventType.BUDGET_WARNING,
                w,
                level=EventLevel.WARNING,
                source=EventSource.BUDGET,
                actor=actor,
                task_id=task.id,
            )
            for w in est.warnings
            if "budget" in w or "ceiling" in w
        ]
        if progress is not None:
            progress("recording")
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
            with reporting(progress):
                info = (
                    backend.restore(spec, restore_from.ref)
                    if restore_from
                    else backend.create(spec)
                )
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
        self.guard.check_dispatch()
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

    def retry_task(
        self, task_id: str, *, actor: str = "user", progress: Progress | None = None
    ) -> DispatchResult:
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
            progress=progress,
        )
