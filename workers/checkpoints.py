"""Checkpoints of an agent's workspace: create (on demand or before a loop's terminate), list,
diff, restore into a new container and task, and retention.

Why it looks like this:
- The snapshot is the backend's (`snapshot_workspace`: the local archive, or Modal's filesystem
  snapshot); the row is written only once the snapshot exists, with its event, in one
  transaction. A failure is E600 and changes nothing in the store but an error event.
- A restore is a dispatch: `ControlPlane.dispatch(..., restore_from=row)` records the task and
  container before the sandbox exists, exactly as `task create` does, and only the backend call
  differs (`restore` instead of `create`).
- `checkpoint_before_terminate` is what the control loops call before a terminate they decided
  (budget guard, orphan policy): it never raises, so a checkpoint can never block a terminate.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parhelia.state.checkpoint_store import (
    add_checkpoint,
    delete_checkpoints,
    get_checkpoint,
    list_checkpoints,
    restore_sources,
)
from parhelia.state.checkpoints import (
    Manifest,
    WorkspaceChanges,
    diff_manifests,
    unified_patch,
)
from parhelia.state.enums import ContainerState, EventLevel, EventSource
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.models import Checkpoint, Container
from parhelia.state.requests import TaskRequest
from parhelia.workers.checkpoint_archive import REF_PREFIX, ContentStore

if TYPE_CHECKING:
    from parhelia.workers.control import ControlPlane, DispatchResult

SOURCES = {"budget-guard": EventSource.BUDGET, "reconciler": EventSource.RECONCILER}


def checkpoint_dict(row: Checkpoint) -> dict:
    return {
        "id": row.id,
        "container_id": row.container_id,
        "task_id": row.task_id,
        "backend": row.backend,
        "ref": row.ref,
        "created_at": row.created_at,
        "trigger": row.trigger,
        "size_bytes": row.size_bytes,
        "files": row.files,
        "note": row.note,
        "actor": row.actor,
    }


# -- create ----------------------------------------------------------------------------------


def create_checkpoint(
    control: ControlPlane,
    container_ref: str,
    *,
    note: str | None = None,
    trigger: str = "manual",
    actor: str = "user",
) -> Checkpoint:
    """Snapshot the container's workspace and record it; E600 (with an error event) on failure."""
    c = control.owned_container(container_ref)
    if not c.sandbox_id:
        raise _failed(control, c, f"{c.id} never got a sandbox (state {c.state})", None, actor)
    # a local snapshot holds the archive's lock (shared) until its row is in: a cleanup running
    # meanwhile cannot collect its objects
    archive = getattr(control.backend_for(c.backend), "archive", None)
    held = (
        ContentStore(archive, control.store.plane_id).lock(exclusive=False)
        if c.backend == "local" and archive is not None
        else nullcontext()
    )
    try:
        with held:
            row = _snapshot(control, c, note=note, trigger=trigger, actor=actor)
    except ParheliaError as exc:
        if exc.code == "E600":
            raise
        raise _failed(control, c, exc.message, exc, actor) from exc
    except OSError as exc:  # the archive's lock could not be taken
        raise _failed(control, c, f"{type(exc).__name__}: {exc}", exc, actor) from exc
    enforce_keep(control, c.id, actor=actor)
    return row


def _snapshot(
    control: ControlPlane, c: Container, *, note: str | None, trigger: str, actor: str
) -> Checkpoint:
    source = SOURCES.get(actor, EventSource.USER)
    try:
        snap = control.backend_for(c.backend).snapshot_workspace(c.sandbox_id)
    except Exception as exc:
        why = exc.message if isinstance(exc, ParheliaError) else f"{type(exc).__name__}: {exc}"
        raise _failed(control, c, why, exc, actor) from exc
    row = Checkpoint(
        container_id=c.id,
        task_id=c.task_id,
        backend=c.backend,
        ref=snap.ref,
        trigger=trigger,
        size_bytes=snap.size_bytes,
        files=snap.files,
        note=note,
        actor=actor,
        created_at=control.clock(),
    )
    event = make_event(
        EventType.CHECKPOINT_CREATED,
        f"checkpoint {row.id} of {c.id} ({trigger}, {snap.files} files, {snap.size_bytes} bytes)"
        + (f": {note}" if note else ""),
        source=source,
        actor=actor,
        container_id=c.id,
        task_id=c.task_id,
        new_value=row.id,
        details={"ref": snap.ref, "trigger": trigger},
    )
    return add_checkpoint(control.store, row, [event])


def _failed(
    control: ControlPlane, c: Container, why: str, exc: Exception | None, actor: str
) -> ParheliaError:
    """The E600 for a failed checkpoint of `c`, after recording it as an error event."""
    cause = exc.code if isinstance(exc, ParheliaError) else None
    err = ParheliaError(
        "E600",
        f"checkpoint of {c.id} failed: {why}",
        [
            f"parhelia containers show {c.id}",
            f"parhelia events list --container {c.id} --type checkpoint.failed",
            "parhelia checkpoint list",
        ],
        attempted=f"checkpoint {c.id}",
    )
    with contextlib.suppress(ParheliaError):  # the store is down: the caller still gets the E600
        control.store.add_event(
            EventType.CHECKPOINT_FAILED,
            f"E600 {err.message}",
            level=EventLevel.ERROR,
            source=SOURCES.get(actor, EventSource.USER),
            actor=actor,
            container_id=c.id,
            task_id=c.task_id,
            details={"code": "E600", "cause": cause},
        )
    return err


def checkpoint_before_terminate(
    control: ControlPlane, container_id: str, actor: str, reason: str
) -> Checkpoint | None:
    """A checkpoint before a terminate the loops decided, when `[checkpoint] on_terminate`.

    Never raises: a failure is an E600 event and the terminate goes ahead."""
    if not control.settings.checkpoint.on_terminate:
        return None
    try:
        c = control.store.get_container(container_id)
        if not c.sandbox_id or c.state == ContainerState.TERMINATED:
            return None
        return create_checkpoint(
            control,
            c.id,
            trigger="terminate",
            actor=actor,
            note=f"before terminate by {actor} ({reason})",
        )
    except ParheliaError as exc:
        if exc.code != "E600":  # an E600 has its event already
            _record_quietly(control, container_id, actor, f"{exc.code} {exc.message}")
    except Exception as exc:  # a bug must not stop the terminate either
        _record_quietly(control, container_id, actor, f"{type(exc).__name__}: {exc}")
    return None


def checkpoint_on_detach(
    control: ControlPlane, container_id: str, session_id: str, *, actor: str = "user"
) -> Checkpoint | None:
    """A checkpoint when a user detaches from an agent's session (the agent goes on), when
    `[checkpoint] on_detach`. A failure is E600 (with its event), naming the commands to take it
    by hand or look again; it touches nothing of the session."""
    if not control.settings.checkpoint.on_detach:
        return None
    try:
        return create_checkpoint(
            control,
            container_id,
            trigger="detach",
            actor=actor,
            note=f"on detach from {session_id}",
        )
    except Exception as exc:
        if not isinstance(exc, ParheliaError) or exc.code != "E600":
            why = exc.message if isinstance(exc, ParheliaError) else f"{type(exc).__name__}: {exc}"
            _record_quietly(control, container_id, actor, why, when="on detach")
            message = f"checkpoint of {container_id} on detach failed: {why}"
        else:
            message = f"{exc.message} (on detach; the agent goes on)"
        raise ParheliaError(
            "E600",
            message,
            [
                f"parhelia checkpoint create {container_id}",
                f"parhelia session attach {session_id}",
                f"parhelia events list --container {container_id} --type checkpoint.failed",
            ],
            attempted=f"checkpoint {container_id} on detach from {session_id}",
        ) from exc


def _record_quietly(
    control: ControlPlane, container_id: str, actor: str, why: str, when: str = "before terminate"
) -> None:
    with contextlib.suppress(Exception):  # never raises: the terminate must go ahead
        control.store.add_event(
            EventType.CHECKPOINT_FAILED,
            f"E600 checkpoint of {container_id} {when} failed: {why}",
            level=EventLevel.ERROR,
            source=SOURCES.get(actor, EventSource.USER),
            actor=actor,
            container_id=container_id,
            details={"code": "E600"},
        )


# -- read: list and diff --------------------------------------------------------------------


def checkpoints(
    control: ControlPlane,
    *,
    container: str | None = None,
    task: str | None = None,
    limit: int = 100,
) -> list[Checkpoint]:
    if container:
        container = control.store.get_container(container).id  # E204, prefixes as elsewhere
    if task:
        task = control.store.get_task(task).id
    return list_checkpoints(control.store, container=container, task=task, limit=limit)


def archive_of(control: ControlPlane, row: Checkpoint) -> ContentStore:
    """The local archive holding `row`; E901 for a backend whose snapshots have no manifest."""
    if not row.ref.startswith(REF_PREFIX):
        raise ParheliaError(
            "E901",
            f"checkpoint {row.id} is a {row.backend} filesystem image ({row.ref}); "
            "only local checkpoints have a file list to compare",
            ["parhelia checkpoint list --json", f"parhelia checkpoint restore {row.id}"],
        )
    return local_archive(control)


def local_archive(control: ControlPlane) -> ContentStore:
    return ContentStore(control.backend_for("local").archive, control.store.plane_id)


def manifest_of(control: ControlPlane, row: Checkpoint) -> tuple[ContentStore, Manifest]:
    content = archive_of(control, row)
    try:
        return content, content.manifest(row.ref)
    except (OSError, ValueError) as exc:
        raise ParheliaError(
            "E202",
            f"checkpoint {row.id} is recorded but its files are gone from {content.root}: {exc}",
            ["parhelia checkpoint list", f"parhelia checkpoint create {row.container_id}"],
        ) from exc


@dataclass(frozen=True)
class CheckpointDiff:
    a: Checkpoint
    b: Checkpoint
    diff: object  # state.checkpoints.ManifestDiff
    patch: str | None

    def to_dict(self) -> dict:
        out = {"a": self.a.id, "b": self.b.id, **self.diff.to_dict()}
        if self.patch is not None:
            out["patch"] = self.patch
        return out


def diff_checkpoints(control: ControlPlane, a: str, b: str, *, patch: bool = False):
    """Files added, removed and changed from checkpoint `a` to `b` (and a unified patch)."""
    row_a, row_b = get_checkpoint(control.store, a), get_checkpoint(control.store, b)
    content, man_a = manifest_of(control, row_a)
    _, man_b = manifest_of(control, row_b)
    text = None
    if patch:
        try:
            text = unified_patch(man_a, man_b, content.read, labels=(row_a.id, row_b.id))
        except (OSError, ValueError) as exc:
            raise ParheliaError(
                "E202",
                f"a file of {row_a.id} or {row_b.id} is missing or damaged in {content.root}: {exc}",
                ["parhelia checkpoint list", f"parhelia checkpoint diff {row_a.id} {row_b.id}"],
            ) from exc
    return CheckpointDiff(row_a, row_b, diff_manifests(man_a, man_b), text)


def changes_since_start(
    control: ControlPlane, container_ref: str, *, actor: str = "user"
) -> WorkspaceChanges:
    """What the container's agent changed since its task began: a checkpoint now (the on-demand
    trigger), diffed against the checkpoint it was restored from, or an empty workspace."""
    c = control.owned_container(container_ref)
    now = create_checkpoint(control, c.id, note="diff view", actor=actor)
    content, after = manifest_of(control, now)
    baseline_id = (c.meta or {}).get("restored_from")
    before = Manifest()
    if baseline_id:
        _, before = manifest_of(control, get_checkpoint(control.store, baseline_id))
    try:
        patch = unified_patch(before, after, content.read, labels=(baseline_id or "start", now.id))
    except (OSError, ValueError) as exc:
        raise ParheliaError(
            "E202",
            f"a file of {now.id} is missing or damaged in {content.root}: {exc}",
            ["parhelia checkpoint list", f"parhelia checkpoint create {c.id}"],
        ) from exc
    return WorkspaceChanges(c.id, now.id, baseline_id, diff_manifests(before, after), patch)


# -- restore ---------------------------------------------------------------------------------


def restore_request(
    control: ControlPlane, ref: str, *, prompt: str | None = None
) -> tuple[Checkpoint, TaskRequest]:
    """The checkpoint and the task request that restores it: its task's prompt and resources on
    its own backend (a local archive cannot start a Modal sandbox); E202 if its files are gone."""
    row = get_checkpoint(control.store, ref)
    if row.ref.startswith(REF_PREFIX):
        manifest_of(control, row)  # fail before anything is recorded
    task = control.store.get_task(row.task_id) if row.task_id else None
    c = control.store.get_container(row.container_id)
    prompt = prompt or (task.prompt if task else None)
    if not prompt:
        raise ParheliaError(
            "E102",
            f"checkpoint {row.id} belongs to no task (its container was adopted); "
            "give the agent's prompt",
            [f"parhelia checkpoint restore {row.id} --prompt PROMPT", "parhelia checkpoint list"],
        )
    request = TaskRequest(
        prompt=prompt,
        backend=row.backend,
        gpu=(task.gpu if task else c.gpu) or "none",
        cpu=task.cpu if task else c.cpu_cores,
        memory_mib=task.memory_mib if task else c.memory_mib,
        timeout_minutes=task.timeout_minutes if task else 60,
        region=(task.region if task else c.region) or None,
    )
    return row, request


def restore_checkpoint(
    control: ControlPlane,
    ref: str,
    *,
    prompt: str | None = None,
    actor: str = "user",
    request: TaskRequest | None = None,
) -> DispatchResult:
    """A new task and container whose workspace starts as the checkpoint's, dispatched through
    the crash-safe path `task create` uses."""
    if request is None:
        row, request = restore_request(control, ref, prompt=prompt)
    else:  # already made (and shown with its estimate) by the caller
        row = get_checkpoint(control.store, ref)
    result = control.dispatch(request, actor=actor, restore_from=row)
    control.store.add_event(
        EventType.CHECKPOINT_RESTORED,
        f"checkpoint {row.id} of {row.container_id} restored as {result.container_id} "
        f"(task {result.task_id})",
        source=SOURCES.get(actor, EventSource.USER),
        actor=actor,
        container_id=result.container_id,
        task_id=result.task_id,
        old_value=row.container_id,
        new_value=row.id,
        details={"checkpoint": row.id, "from_container": row.container_id},
    )
    return result


def restored_dict(row: Checkpoint, result: DispatchResult) -> dict:
    """What a restore answers (CLI `--json` and MCP): the dispatch, and where it came from."""
    return {**result.to_dict(), "checkpoint": row.id, "from_container": row.container_id}


# -- retention --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupPlan:
    """What retention deletes: each container's checkpoints past its newest `keep`, oldest
    first, never its newest; `held` are past `keep` but kept, as live containers were restored
    from them (a restore in flight, or a running agent's diff baseline)."""

    keep: int
    delete: list[Checkpoint]
    freed_bytes: int = 0  # archive bytes removed (or, planned, that would be)
    held: list[Checkpoint] = field(default_factory=list)


def plan_cleanup(
    control: ControlPlane,
    keep: int | None = None,
    *,
    container: str | None = None,
    measure: bool = True,
) -> CleanupPlan:
    """The checkpoints past the newest `keep` of each container (`[checkpoint] keep`), with the
    archive bytes deleting them would free (`measure`: one walk of the archive)."""
    from parhelia.state.settings import RANGES

    keep = control.settings.checkpoint.keep if keep is None else keep
    if keep not in RANGES["checkpoint.keep"]:
        raise ParheliaError(
            "E101",
            f"--keep {keep} is out of range; allowed: {RANGES['checkpoint.keep']}",
            ["parhelia checkpoint cleanup --keep 10", "parhelia config show checkpoint"],
        )
    if container:
        container = control.store.get_container(container).id
    per: dict[str, list[Checkpoint]] = defaultdict(list)
    for row in list_checkpoints(control.store, container=container, limit=10**9):  # newest first
        per[row.container_id].append(row)
    sources = restore_sources(control.store)
    delete, held = [], []
    for rows in per.values():
        for r in reversed(rows[max(1, keep) :]):  # oldest first; rows[0], the newest, stays
            (held if r.id in sources else delete).append(r)
    freed = _freed(control, delete, dry_run=True) if measure and delete else 0
    return CleanupPlan(keep, delete, freed, held)


def _freed(control: ControlPlane, delete: list[Checkpoint], *, dry_run: bool) -> int:
    """Archive bytes no checkpoint but those in `delete` reaches: counted, or removed."""
    gone = {r.id for r in delete}
    kept = [r.ref for r in list_checkpoints(control.store, limit=10**9) if r.id not in gone]
    kept = [ref for ref in kept if ref.startswith(REF_PREFIX)]
    content = local_archive(control)
    return content.collect(kept, grace=0, dry_run=dry_run)


def apply_cleanup(
    control: ControlPlane, plan: CleanupPlan, *, actor: str = "user", wait: bool = True
) -> CleanupPlan:
    """Delete the planned rows (with one event each), then the archive objects no remaining
    checkpoint reaches. Under the archive's lock held alone: no checkpoint is being written,
    and which checkpoints live containers were restored from is read again here. Without
    `wait`, a lock held elsewhere (a checkpoint being taken) is BlockingIOError at once."""
    with local_archive(control).lock(exclusive=True, wait=wait):
        sources = restore_sources(control.store)
        delete = [r for r in plan.delete if r.id not in sources]
        held = plan.held + [r for r in plan.delete if r.id in sources]
        events = [
            make_event(
                EventType.CHECKPOINT_DELETED,
                f"checkpoint {r.id} of {r.container_id} deleted "
                f"(retention: newest {plan.keep} kept)",
                source=EventSource.USER if actor == "user" else EventSource.SYSTEM,
                actor=actor,
                container_id=r.container_id,
                task_id=r.task_id,
                old_value=r.id,
            )
            for r in delete
        ]
        delete_checkpoints(control.store, [r.id for r in delete], events)
        freed = _freed(control, delete, dry_run=False)
    return CleanupPlan(plan.keep, delete, freed, held)


def enforce_keep(control: ControlPlane, container_id: str, *, actor: str = "user") -> None:
    """`[checkpoint] keep` after each new checkpoint of a container: its oldest past the newest
    `keep` go, with their archive files. It never waits for another checkpoint being taken (a
    guard's terminate may be behind this one), and a failure never fails the checkpoint just
    taken: the next one, or `parhelia checkpoint cleanup`, does it later."""
    with contextlib.suppress(ParheliaError, OSError):
        plan = plan_cleanup(control, container=container_id, measure=False)
        if plan.delete:
            apply_cleanup(control, plan, actor=actor, wait=False)
