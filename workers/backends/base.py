"""The one protocol every sandbox backend implements, and the data that crosses it.

Backends raise `ParheliaError` with catalogue codes; `list()` raises on any failure and never
returns a partial or empty answer in place of an error, because "nothing listed" would read as
"nothing running" and that is how sandboxes get lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

# Tags every Parhelia sandbox carries. A sandbox without TAG_MARK is never Parhelia's.
TAG_MARK = "parhelia"
TAG_MARK_VALUE = "1"
TAG_CONTAINER = "parhelia_container"
TAG_TASK = "parhelia_task"


def parhelia_tags(container_id: str, task_id: str | None) -> dict[str, str]:
    tags = {TAG_MARK: TAG_MARK_VALUE, TAG_CONTAINER: container_id}
    if task_id:
        tags[TAG_TASK] = task_id
    return tags


def is_parhelia(tags: dict[str, str] | None) -> bool:
    return bool(tags) and tags.get(TAG_MARK) == TAG_MARK_VALUE


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
        return parhelia_tags(self.container_id, self.task_id)

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


@dataclass(frozen=True)
class TerminateResult:
    sandbox_id: str
    exit_code: int | None
    already_gone: bool = False


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
