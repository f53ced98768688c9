"""A deadline on every backend call: a cloud that hangs makes a stale view, never a frozen one.

The SDKs' calls are blocking and cannot be cancelled, so each runs on its own daemon thread and
the caller waits at most `timeout` seconds; past it the caller gets E501 and goes on (the
reconciler records the event and the view goes stale, dispatch and terminate record their
failure), while the abandoned call finishes or hangs on its own without keeping the process
alive. A listing still hanging from an earlier call is not started again (E501 at once), so a
workspace that never answers costs one thread, not one per cycle.

`create` may build an image first, so its deadline is `CREATE_FACTOR` times longer;
`snapshot_workspace` gets `SNAPSHOT_FACTOR` times. `probe` is
passed straight through: the heartbeat poller already abandons a probe after
`[heartbeat] probe_timeout_seconds`.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

from parhelia.state.errors import ParheliaError
from parhelia.workers.backends.base import (
    Backend,
    LogChunk,
    ProbeSample,
    SandboxInfo,
    SandboxSpec,
    TerminateResult,
    WorkspaceSnapshot,
)

T = TypeVar("T")
CREATE_FACTOR = 30  # 10 s -> 5 min: image builds on first use
# 10 s -> 1 min (Modal's own snapshot timeout is 55 s): a snapshot before a terminate the budget
# guard decided holds that terminate back at most this long
SNAPSHOT_FACTOR = 6


class DeadlineBackend:
    """Wraps a backend; same protocol, each call bounded by `timeout` seconds."""

    def __init__(self, inner: Backend, timeout: float, *, terminate_grace: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.timeout = timeout
        self.terminate_grace = terminate_grace  # a local terminate waits this long before SIGKILL
        self._listing: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def create(self, spec: SandboxSpec) -> SandboxInfo:
        return self._call("create", lambda: self.inner.create(spec), self.timeout * CREATE_FACTOR)

    def list(self) -> list[SandboxInfo]:
        return self._call("list", lambda: list(self.inner.list()), self.timeout, single=True)

    def list_all(self) -> list[SandboxInfo]:
        return self._call(
            "list_all", lambda: list(self.inner.list_all()), self.timeout, single=True
        )

    def terminate(self, sandbox_id: str) -> TerminateResult:
        return self._call(
            "terminate",
            lambda: self.inner.terminate(sandbox_id),
            self.timeout + self.terminate_grace,
        )

    def exit_code(self, sandbox_id: str) -> int | None:
        return self._call("exit_code", lambda: self.inner.exit_code(sandbox_id), self.timeout)

    def probe(self, sandbox_id: str) -> ProbeSample:
        return self.inner.probe(sandbox_id)

    def shell_argv(self, sandbox_id: str) -> list[str]:
        return self.inner.shell_argv(sandbox_id)

    def read_log(self, sandbox_id: str, offset: int = 0) -> LogChunk:
        return self._call("read_log", lambda: self.inner.read_log(sandbox_id, offset), self.timeout)

    def snapshot_workspace(self, sandbox_id: str) -> WorkspaceSnapshot:
        snap = lambda: self.inner.snapshot_workspace(sandbox_id)  # noqa: E731
        return self._call("snapshot_workspace", snap, self.timeout * SNAPSHOT_FACTOR)

    def restore(self, spec: SandboxSpec, ref: str) -> SandboxInfo:
        return self._call(
            "restore", lambda: self.inner.restore(spec, ref), self.timeout * CREATE_FACTOR
        )

    def __getattr__(self, name: str):  # anything else a backend offers (tests, local helpers)
        return getattr(self.inner, name)

    def _call(self, op: str, fn: Callable[[], T], timeout: float, *, single: bool = False) -> T:
        if single:
            with self._lock:
                running = self._listing.get(op)
                if running is not None and not running.is_set():
                    raise self._late(op, timeout, "the previous call has not returned yet")
                done = self._listing[op] = threading.Event()
        else:
            done = threading.Event()
        box: dict = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                done.set()

        context = contextvars.copy_context()  # the caller's, so a backend's progress reaches it
        threading.Thread(
            target=context.run, args=(run,), name=f"parhelia-{self.name}-{op}", daemon=True
        ).start()
        if not done.wait(timeout):
            raise self._late(op, timeout, "abandoned; it may still finish on its own")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _late(self, op: str, timeout: float, why: str) -> ParheliaError:
        return ParheliaError(
            "E501",
            f"{self.name} {op} did not answer within {timeout:g} s ({why})",
            [
                "parhelia reconciler status",
                f"PARHELIA_{self.name.upper()}_TIMEOUT_SECONDS=30 parhelia reconciler run",
                "parhelia config show",
            ],
        )
