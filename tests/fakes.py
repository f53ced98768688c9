"""An in-memory backend for control-plane tests: real protocol, programmable faults."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from parhelia.state.errors import ParheliaError
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.base import (
    ProbeSample,
    SandboxInfo,
    SandboxSpec,
    TerminateResult,
    is_parhelia,
)


@dataclass
class MemoryBackend:
    name: str = "local"
    sandboxes: dict[str, SandboxInfo] = field(default_factory=dict)
    specs: dict[str, SandboxSpec] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)
    fail_create: ParheliaError | Exception | None = None
    fail_list: ParheliaError | None = None
    fail_terminate: ParheliaError | None = None
    on_create: object = None  # callable(spec) run before the sandbox exists
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def create(self, spec: SandboxSpec) -> SandboxInfo:
        if self.on_create:
            self.on_create(spec)
        if self.fail_create:
            raise self.fail_create
        sid = f"sb-{next(self._ids):04d}"
        info = SandboxInfo(sandbox_id=sid, backend=self.name, tags=spec.tags, created_at=utcnow())
        self.sandboxes[sid] = info
        self.specs[sid] = spec
        return info

    def list(self) -> list[SandboxInfo]:
        if self.fail_list:
            raise self.fail_list
        return [s for s in self.sandboxes.values() if is_parhelia(s.tags)]

    def list_all(self) -> list[SandboxInfo]:
        if self.fail_list:
            raise self.fail_list
        return list(self.sandboxes.values())

    def terminate(self, sandbox_id: str) -> TerminateResult:
        if self.fail_terminate:
            raise self.fail_terminate
        info = self.sandboxes.get(sandbox_id)
        if info is None:
            return TerminateResult(sandbox_id, None, already_gone=True)
        if not is_parhelia(info.tags):
            raise ParheliaError(
                "E401",
                f"{sandbox_id} is not Parhelia's",
                ["parhelia containers list", "parhelia help E401"],
            )
        del self.sandboxes[sandbox_id]
        self.terminated.append(sandbox_id)
        return TerminateResult(sandbox_id, 137)

    def probe(self, sandbox_id: str) -> ProbeSample:
        if sandbox_id not in self.sandboxes:
            raise ParheliaError(
                "E205",
                f"no sandbox {sandbox_id}",
                ["parhelia reconciler run", "parhelia containers list"],
            )
        return ProbeSample(12.0, 256.0, 3.0, 10.0, 60.0, True)

    def shell_argv(self, sandbox_id: str) -> list[str]:
        return ["sh"]
