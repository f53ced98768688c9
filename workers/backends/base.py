"""The one protocol every sandbox backend implements, and the data that crosses it.

Backends raise `ParheliaError` with catalogue codes; `list()` raises on any failure and never
returns a partial or empty answer in place of an error, because "nothing listed" would read as
"nothing running" and that is how sandboxes get lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

# Tags every Parhelia sandbox carries. A sandbox without TAG_MARK is never Parhelia's.
TAG_MARK = "parhelia"
TAG_MARK_VALUE = "1"
TAG_CONTAINER = "parhelia_container"
TAG_TASK = "parhelia_task"
# The control plane (store) that made the sandbox: two Parhelias on one cloud never touch each
# other's sandboxes. Sandboxes made before plane ids existed lack it.
TAG_PLANE = "parhelia_plane"


def parhelia_tags(
    container_id: str, task_id: str | None, plane_id: str | None = None
) -> dict[str, str]:
    tags = {TAG_MARK: TAG_MARK_VALUE, TAG_CONTAINER: container_id}
    if task_id:
        tags[TAG_TASK] = task_id
    if plane_id:
        tags[TAG_PLANE] = plane_id
    return tags


def is_parhelia(tags: dict[str, str] | None) -> bool:
    """Carries Parhelia's mark (any plane's, or a look-alike): the first filter, not ownership."""
    return bool(tags) and tags.get(TAG_MARK) == TAG_MARK_VALUE


class Ownership(StrEnum):
    """Whose a listed sandbox is, as far as this control plane may act on it (`ownership`)."""

    OURS = "ours"  # this plane's: reconciled, adopted, orphaned, terminated by policy
    LEGACY = "legacy"  # Parhelia's but from before plane ids: flagged, terminated only by a person
    OTHER_PLANE = "other_plane"  # another control plane's: shown and counted, never touched
    NOT_PARHELIA = "not_parhelia"  # no mark or no well-formed container id: never touched


def ownership(tags: dict[str, str] | None, plane_id: str) -> Ownership:
    """A sandbox is ours only with the mark, a well-formed container id and this plane's id."""
    if not tags or tags.get(TAG_MARK) != TAG_MARK_VALUE:
        return Ownership.NOT_PARHELIA
    if not _is_container_id(tags.get(TAG_CONTAINER)):
        return Ownership.NOT_PARHELIA
    plane = tags.get(TAG_PLANE)
    if not plane:
        return Ownership.LEGACY
    return Ownership.OURS if plane == plane_id else Ownership.OTHER_PLANE


def _is_container_id(value: object) -> bool:
    # `state.models` is imported on first use, not with this module: the local sandbox supervisor
    # imports this module and must start fast, without SQLModel.
    global _is_container_id
    from parhelia.state.models import is_container_id

    _is_container_id = is_container_id
    return is_container_id(value)


def needs_a_person(tags: dict[str, str] | None) -> bool:
    """A Parhelia sandbox without a plane tag: no policy may terminate it on its own, since it may
    be another control plane's made before plane ids; only a confirmed cleanup or terminate."""
    return not (tags or {}).get(TAG_PLANE)


@dataclass(frozen=True)
class Resources:
    """What a sandbox was started with, as far as its backend can tell (prices an orphan)."""

    cpu: float
    memory_mib: int
    gpu: str | None = None
    region: str | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> Resources | None:
        """From a stored record; None when there is none or it is not one (never a guess)."""
        try:
            return cls(
                float(data["cpu"]), int(data["memory_mib"]), data.get("gpu"), data.get("region")
            )
        except (TypeError, KeyError, ValueError):
            return None


@dataclass(frozen=True)
class SandboxSpec:
    """What to start: the agent argv and the resources, with Parhelia's ids for the tags."""

    container_id: str
    task_id: str | None
    argv: list[str]
    plane_id: str | None = None  # the store's control-plane id, carried as `parhelia_plane`
    cpu: float = 1.0
    memory_mib: int = 2048
    gpu: str | None = None
    region: str | None = None
    timeout_seconds: int = 3600
    idle_timeout_seconds: int | None = None
    image: str | None = None
    secrets: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, str]:
        return parhelia_tags(self.container_id, self.task_id, self.plane_id)

    @property
    def resources(self) -> Resources:
        return Resources(self.cpu, self.memory_mib, self.gpu, self.region)


@dataclass(frozen=True)
class SandboxInfo:
    """One sandbox as the backend sees it."""

    sandbox_id: str
    backend: str
    tags: dict[str, str]
    created_at: datetime | None = None
    running: bool = True
    exit_code: int | None = None
    resources: Resources | None = None  # None: the backend cannot tell (Modal's listing)

    @property
    def container_id(self) -> str | None:
        return self.tags.get(TAG_CONTAINER)

    @property
    def task_id(self) -> str | None:
        return self.tags.get(TAG_TASK)


@dataclass(frozen=True)
class ProbeSample:
    """One heartbeat reading of a sandbox's process tree."""

    cpu_percent: float | None
    memory_mib: float | None
    memory_percent: float | None
    disk_percent: float | None
    uptime_seconds: float | None
    agent_alive: bool
    # why the agent is not alive: its process exists but is stopped (SIGSTOP: "not responding",
    # not "gone"), or it has exited and the sandbox is finishing (no missed heartbeat for that)
    agent_stopped: bool = False
    agent_exited: bool = False


@dataclass(frozen=True)
class TerminateResult:
    sandbox_id: str
    exit_code: int | None
    already_gone: bool = False


@dataclass(frozen=True)
class LogChunk:
    """Agent output read from `offset`; `next_offset` is where the following read starts."""

    text: str
    offset: int
    next_offset: int
    ended: bool = False  # the agent has exited: no more output will come (a follower stops)


@dataclass(frozen=True)
class WorkspaceSnapshot:
    """A checkpoint as its backend made it: `ref` restores it (a local archive manifest's
    `sha256:…`, a Modal image id); size and file count are 0 when the backend cannot tell."""

    ref: str
    size_bytes: int = 0
    files: int = 0


LOG_READ_LIMIT = 1 << 20  # one read returns at most 1 MiB; a follower reads again


@runtime_checkable
class Backend(Protocol):
    name: str

    def create(self, spec: SandboxSpec) -> SandboxInfo: ...

    def list(self) -> list[SandboxInfo]:
        """Every Parhelia sandbox this backend runs (tag `parhelia=1`), paged to the end."""
        ...

    def list_all(self) -> list[SandboxInfo]:
        """Every sandbox in Parhelia's scope, tagged or not (foreign ones are shown, never touched)."""
        ...

    def terminate(self, sandbox_id: str) -> TerminateResult: ...

    def exit_code(self, sandbox_id: str) -> int | None:
        """How an ended sandbox ended (None while it runs, or if nobody knows): for a row whose
        sandbox a listing no longer shows (Modal lists only running ones), so its task ends right."""
        ...

    def probe(self, sandbox_id: str) -> ProbeSample: ...

    def shell_argv(self, sandbox_id: str) -> list[str]:
        """The argv that attaches an interactive shell to the sandbox (for `a` in the dashboard)."""
        ...

    def read_log(self, sandbox_id: str, offset: int = 0) -> LogChunk:
        """The agent's output (stdout and stderr) from byte `offset` on, also after it ended."""
        ...

    def snapshot_workspace(self, sandbox_id: str) -> WorkspaceSnapshot:
        """A checkpoint of the sandbox's workspace (`workers/checkpoints.py`); E600 on failure."""
        ...

    def restore(self, spec: SandboxSpec, ref: str) -> SandboxInfo:
        """`create`, with the workspace of the snapshot `ref` in place before the agent starts."""
        ...
