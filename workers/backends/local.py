"""The local-process backend: each sandbox is a detached process group on this machine.

Why it looks like this:
- A sandbox must outlive the CLI that started it, so it runs in its own session
  (`start_new_session`), with stdin from /dev/null and stdout+stderr in `<root>/<id>/agent.log`.
- Any Parhelia process must see, probe and stop sandboxes another one started, so each sandbox
  has a JSON entry in `<root>/registry/` (written atomically). Identity is pid + process start
  time: a reused pid is never mistaken for a sandbox.
- The group leader is a tiny supervisor (`local_supervisor`, run with `-m`) that starts the agent
  as its child, enforces `timeout_seconds` even when no Parhelia process is running (SIGTERM, then
  SIGKILL after the grace, exit code 124), writes the agent's exit code to `<id>.exit`, and stops
  whatever the agent left behind in its group. Without it a finished sandbox's exit code would be
  unknowable (only a parent can wait for a process) and a forgotten one would run forever.
- Exit codes are reported as a shell would: killed by signal N -> 128+N (SIGTERM 143, SIGKILL 137).
- Finished sandboxes stay listed (running=False) for `retention_seconds` so the reconciler can
  mark their rows stopped; then their entry and workdir are removed.
- The resource fields of a spec (cpu, memory, gpu, region, image, secrets, idle timeout) are
  Modal's; this backend enforces none of them. It records cpu, memory, gpu and region in the
  registry entry, so a sandbox whose row is lost is priced from what it asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from parhelia.state.errors import ParheliaError
from parhelia.state.private import DIR_MODE, open_private_append, private_dir
from parhelia.state.timeutil import utcnow
from parhelia.workers import sessions
from parhelia.workers.agent_command import check_agent_binary
from parhelia.workers.agent_env import agent_environment
from parhelia.workers.backends.base import (
    LOG_READ_LIMIT,
    TAG_PLANE,
    LogChunk,
    ProbeSample,
    Resources,
    SandboxInfo,
    SandboxSpec,
    TerminateResult,
    WorkspaceSnapshot,
    is_parhelia,
)
from parhelia.workers.backends.local_supervisor import (
    SUPERVISOR_MODULE,
    process_status,
    write_json_atomic,
)
from parhelia.workers.progress import report

ID_PREFIX = "lp-"
LOG_NAME = "agent.log"
NOT_ALIVE = {
    psutil.STATUS_ZOMBIE,
    psutil.STATUS_DEAD,
    psutil.STATUS_STOPPED,
    psutil.STATUS_TRACING_STOP,
}
STOPPED = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP}
_POLL = 0.02


@dataclass
class RegistryEntry:
    sandbox_id: str
    pid: int
    pgid: int
    create_time: float
    tags: dict[str, str]
    created_at: str
    argv: list[str]
    workdir: str
    log: str
    timeout_seconds: int = 0
    deadline: str | None = None
    exit_code: int | None = None
    ended_at: str | None = None
    terminated: bool = False
    resources: dict | None = None  # the spec's cpu, memory_mib, gpu, region

    @classmethod
    def from_json(cls, data: dict) -> RegistryEntry:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LocalBackend:
    """Sandboxes as local process groups, shared between processes through an on-disk registry."""

    name = "local"

    def __init__(
        self,
        root: Path,
        terminate_grace: float = 5.0,
        retention_seconds: float = 86400.0,
        agent_env: Iterable[str] = (),
        archive: Path | None = None,
        tmux: bool | None = None,
    ) -> None:
        self.tmux = sessions.tmux_available() if tmux is None else tmux  # agents in tmux sessions
        self.root = Path(root)
        self.archive = Path(archive) if archive else self.root.parent / "checkpoints"
        self.agent_env = tuple(agent_env)  # `[agent] env`: names passed on besides the allowlist
        self.registry = self.root / "registry"
        self.terminate_grace = terminate_grace
        self.retention_seconds = retention_seconds
        self._children: dict[str, subprocess.Popen] = {}
        self._cpu_cache: dict[str, dict[tuple[int, float], psutil.Process]] = {}
        self._lock = threading.Lock()

    # -- create ---------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, seed: Callable[[Path], None] | None = None) -> SandboxInfo:
        """Start the sandbox; `seed(workdir)` fills its workspace first (a restore)."""
        if not spec.argv:
            raise ParheliaError(
                "E102", "the sandbox spec has no agent command", attempted="create a local sandbox"
            )
        check_agent_binary(spec.argv)
        sandbox_id = ID_PREFIX + secrets.token_hex(5)
        workdir = self.root / sandbox_id
        log = workdir / LOG_NAME
        try:
            private_dir(self.root)
            private_dir(self.registry)
            workdir.mkdir(mode=DIR_MODE)
            os.chmod(workdir, DIR_MODE)
        except OSError as exc:
            raise self._dispatch_error(f"cannot create {workdir}: {exc}") from exc
        if seed is not None:
            try:
                seed(workdir)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        created = utcnow()
        deadline = time.time() + spec.timeout_seconds if spec.timeout_seconds > 0 else 0.0
        env = {
            **agent_environment(os.environ, self.agent_env),
            "PARHELIA_CONTAINER_ID": spec.container_id,
            "PARHELIA_TASK_ID": spec.task_id or "",
            "PARHELIA_SANDBOX_ID": sandbox_id,
            **spec.env,
        }
        argv = [
            sys.executable, "-m", SUPERVISOR_MODULE,
            "--exit-file", str(self._exit_path(sandbox_id)),
            "--deadline", repr(deadline),
            "--grace", repr(self.terminate_grace),
            "--", *self._agent_argv(spec, sandbox_id, created),
        ]  # fmt: skip
        report("starting the process")
        try:
            with open_private_append(log) as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise self._dispatch_error(f"cannot start the sandbox process: {exc}") from exc
        self._children[sandbox_id] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        entry = RegistryEntry(
            sandbox_id=sandbox_id,
            pid=proc.pid,
            pgid=proc.pid,
            create_time=create_time,
            tags=dict(spec.tags),
            created_at=created.isoformat(),
            argv=list(spec.argv),
            workdir=str(workdir),
            log=str(log),
            timeout_seconds=spec.timeout_seconds,
            deadline=datetime.fromtimestamp(deadline, UTC).isoformat() if deadline else None,
            resources=asdict(spec.resources),
        )
        try:
            self._save(entry)
        except OSError as exc:  # unrecorded means unseen: do not leave it running
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise self._dispatch_error(
                f"cannot record the sandbox in {self.registry}: {exc}"
            ) from exc
        return SandboxInfo(sandbox_id, self.name, dict(entry.tags), created, running=True)

    def _agent_argv(self, spec: SandboxSpec, sandbox_id: str, created: datetime) -> list[str]:
        """The agent, inside its own tmux session when tmux is installed (workers/sessions.py)."""
        if not self.tmux:
            return list(spec.argv)
        name = sessions.session_name(spec.task_id or spec.container_id, created)
        socket = sessions.socket_path(self.root, sandbox_id)
        return sessions.host_argv(socket, name, list(spec.argv))

    @staticmethod
    def _dispatch_error(message: str) -> ParheliaError:
        return ParheliaError(
            "E602",
            message,
            [
                "parhelia config show",
                "PARHELIA_LOCAL_ROOT=/tmp/parhelia-sandboxes parhelia task create PROMPT",
            ],
            attempted="create a local sandbox",
        )

    # -- list -----------------------------------------------------------------------------

    def list(self) -> list[SandboxInfo]:
        return [i for i in self.list_all() if is_parhelia(i.tags)]

    def list_all(self) -> list[SandboxInfo]:
        infos = []
        for entry in self._entries():
            running = self._leader(entry) is not None
            if not running:
                entry = self._record_end(entry)
                if self._expired(entry):
                    self._prune(entry)
                    continue
            infos.append(
                SandboxInfo(
                    entry.sandbox_id,
                    self.name,
                    dict(entry.tags),
                    _parse_time(entry.created_at),
                    running=running,
                    exit_code=None if running else entry.exit_code,
                    resources=Resources.from_dict(entry.resources),
                )
            )
        return infos

    def _entries(self) -> list[RegistryEntry]:
        """Every registry entry; any unreadable part is an error, never an empty answer."""
        if not self.registry.exists():
            return []
        try:
            paths = sorted(self.registry.glob("*.json"))
        except OSError as exc:
            raise self._registry_error(f"cannot read {self.registry}: {exc}") from exc
        entries = []
        for path in paths:
            try:
                entries.append(RegistryEntry.from_json(json.loads(path.read_text())))
            except FileNotFoundError:
                continue  # pruned by another process between glob and read
            except (OSError, ValueError, TypeError) as exc:
                raise self._registry_error(
                    f"sandbox registry entry {path} is unreadable: {exc}"
                ) from exc
        return entries

    @staticmethod
    def _registry_error(message: str) -> ParheliaError:
        return ParheliaError(
            "E502",
            message,
            ["parhelia reconciler status", "parhelia config show"],
            attempted="list local sandboxes",
        )

    # -- probe ----------------------------------------------------------------------------

    def probe(self, sandbox_id: str) -> ProbeSample:
        """CPU, memory and uptime of the sandbox's whole process tree.

        agent_alive: the supervisor's child (the agent) exists and is neither a zombie nor stopped;
        before the supervisor has started it (no child, no exit file yet) it counts as alive."""
        entry = self._load(sandbox_id)
        leader = self._leader(entry)
        if leader is None:
            raise self._gone(sandbox_id)
        try:
            agents = sessions.agent_processes(leader)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess as exc:
            raise self._gone(sandbox_id) from exc
        cpu, rss = self._tree_usage(sandbox_id, tree)
        disk = None
        with contextlib.suppress(OSError):
            disk = psutil.disk_usage(entry.workdir).percent
        statuses = [process_status(p) for p in agents]
        exited = self._exit_path(sandbox_id).exists()
        return ProbeSample(
            cpu_percent=round(cpu, 1),
            memory_mib=round(rss / 2**20, 1),
            memory_percent=round(100.0 * rss / psutil.virtual_memory().total, 2),
            disk_percent=disk,
            uptime_seconds=round(max(0.0, time.time() - entry.create_time), 1),
            agent_alive=any(st not in NOT_ALIVE for st in statuses)
            or (not agents and not exited),  # still starting
            agent_stopped=any(st in STOPPED for st in statuses),
            agent_exited=exited,
        )

    # -- logs -----------------------------------------------------------------------------

    def read_log(self, sandbox_id: str, offset: int = 0) -> LogChunk:
        """The agent's stdout and stderr from `<root>/<id>/agent.log`, kept after it ends."""
        path = self.root / sandbox_id / LOG_NAME
        if "/" in sandbox_id or sandbox_id.startswith("."):
            raise self._gone(sandbox_id)
        try:
            with path.open("rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(LOG_READ_LIMIT)
        except FileNotFoundError as exc:
            raise ParheliaError(
                "E205",
                f"local sandbox {sandbox_id} has no agent log (its files were removed)",
                ["parhelia containers show ID", "parhelia containers events ID"],
                attempted=f"read the agent log of {sandbox_id}",
            ) from exc
        except OSError as exc:
            raise ParheliaError(
                "E502",
                f"cannot read {path}: {exc}",
                ["parhelia containers show ID", "parhelia config show"],
                attempted=f"read the agent log of {sandbox_id}",
            ) from exc
        ended = self._exit_path(sandbox_id).exists() or not self._entry_path(sandbox_id).exists()
        return LogChunk(data.decode("utf-8", "replace"), offset, offset + len(data), ended)

    def _tree_usage(self, sandbox_id: str, tree: list[psutil.Process]) -> tuple[float, int]:
        """CPU % since this backend's previous probe (a new process: its lifetime average) and RSS bytes."""
        with self._lock:
            previous = self._cpu_cache.get(sandbox_id, {})
        current: dict[tuple[int, float], psutil.Process] = {}
        cpu, rss, now = 0.0, 0, time.time()
        for proc in tree:
            try:
                key = (proc.pid, proc.create_time())
                cached = previous.get(key)
                if cached is not None:
                    cpu += cached.cpu_percent(None)
                    proc = cached
                else:
                    times = proc.cpu_times()
                    cpu += 100.0 * (times.user + times.system) / max(now - key[1], 0.01)
                    proc.cpu_percent(None)  # baseline for the next probe
                rss += proc.memory_info().rss
                current[key] = proc
            except psutil.Error:
                continue  # exited between listing and reading
        with self._lock:
            self._cpu_cache[sandbox_id] = current
        return cpu, rss

    # -- terminate ------------------------------------------------------------------------

    def terminate(self, sandbox_id: str) -> TerminateResult:
        """SIGTERM the group, SIGKILL after the grace; idempotent; refuses anything untagged (E401)."""
        entry = self._load(sandbox_id)
        if not is_parhelia(entry.tags):
            raise ParheliaError(
                "E401",
                f"local sandbox {sandbox_id} has no parhelia tag; Parhelia never stops it",
                ["parhelia containers orphans", "parhelia containers list"],
                attempted=f"terminate {sandbox_id}",
            )
        if self._leader(entry) is None:
            entry = self._record_end(entry)
            return TerminateResult(sandbox_id, entry.exit_code, already_gone=True)
        self._signal_group(entry, signal.SIGTERM)
        # a stopped (hung) agent only acts on SIGTERM once resumed
        self._signal_group(entry, signal.SIGCONT)
        if self._wait_gone(entry, self.terminate_grace):
            code = self._exit_file_code(sandbox_id)
            code = 143 if code is None else code
        else:
            self._signal_group(entry, signal.SIGKILL)
            if not self._wait_gone(entry, 5.0):
                raise ParheliaError(
                    "E604",
                    f"local sandbox {sandbox_id} (pid {entry.pid}) survived SIGKILL",
                    [f"kill -9 -{entry.pgid}", "parhelia reconciler run"],
                    attempted=f"terminate {sandbox_id}",
                )
            code = 128 + signal.SIGKILL
        # stragglers left in the group once the leader is gone (the pgid is not reusable while they live)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(entry.pgid, signal.SIGKILL)
        sessions.kill_server(sessions.socket_path(self.root, sandbox_id))  # its tmux, if left
        entry.exit_code, entry.terminated = code, True
        entry.ended_at = entry.ended_at or utcnow().isoformat()
        self._save(entry)
        with self._lock:
            self._cpu_cache.pop(sandbox_id, None)
        return TerminateResult(sandbox_id, code)

    def exit_code(self, sandbox_id: str) -> int | None:
        entry = self._load(sandbox_id)
        if self._leader(entry) is not None:
            return None
        return self._record_end(entry).exit_code

    def _signal_group(self, entry: RegistryEntry, sig: int) -> None:
        try:
            os.killpg(entry.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise ParheliaError(
                "E604", f"not allowed to signal local sandbox {entry.sandbox_id}: {exc}",
                [f"kill -{int(sig)} -{entry.pgid}", "parhelia reconciler run"],
                attempted=f"terminate {entry.sandbox_id}",
            ) from exc  # fmt: skip

    def _wait_gone(self, entry: RegistryEntry, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._leader(entry) is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    # -- shell ----------------------------------------------------------------------------

    def shell_argv(self, sandbox_id: str) -> list[str]:
        """An interactive login shell in the sandbox's working directory (passed as $1, never quoted into code)."""
        entry = self._load(sandbox_id)
        return [
            "sh",
            "-c",
            'cd "$1" && exec "${SHELL:-/bin/sh}" -i',
            "parhelia-shell",
            entry.workdir,
        ]

    # -- checkpoints (the archive: workers/checkpoint_archive.py) ---------------------------

    def snapshot_workspace(self, sandbox_id: str) -> WorkspaceSnapshot:
        from parhelia.workers.checkpoint_archive import snapshot_workspace

        entry = self._load(sandbox_id)
        plane = entry.tags.get(TAG_PLANE)
        own = [LOG_NAME, *(f"{sessions.SOCKET_NAME}{x}" for x in ("", ".out", ".exit"))]
        return snapshot_workspace(Path(entry.workdir), self.archive, plane, exclude=own)

    def restore(self, spec: SandboxSpec, ref: str) -> SandboxInfo:
        from parhelia.workers.checkpoint_archive import seed_workspace

        def seed(workdir: Path) -> None:
            seed_workspace(ref, self.archive, spec.plane_id, workdir)

        return self.create(spec, seed=seed)

    # -- registry and identity ------------------------------------------------------------

    def _entry_path(self, sandbox_id: str) -> Path:
        return self.registry / f"{sandbox_id}.json"

    def _exit_path(self, sandbox_id: str) -> Path:
        return self.registry / f"{sandbox_id}.exit"

    def _save(self, entry: RegistryEntry) -> None:
        write_json_atomic(self._entry_path(entry.sandbox_id), asdict(entry))

    def _load(self, sandbox_id: str) -> RegistryEntry:
        path = self._entry_path(sandbox_id)
        if "/" in sandbox_id or not path.exists():
            raise self._gone(sandbox_id)
        try:
            return RegistryEntry.from_json(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise self._gone(sandbox_id) from exc
        except (OSError, ValueError, TypeError) as exc:
            raise self._registry_error(
                f"sandbox registry entry {path} is unreadable: {exc}"
            ) from exc

    @staticmethod
    def _gone(sandbox_id: str) -> ParheliaError:
        return ParheliaError(
            "E205",
            f"local sandbox {sandbox_id} is not running (it ended or never existed)",
            ["parhelia reconciler run", "parhelia containers show ID"],
        )

    def _leader(self, entry: RegistryEntry) -> psutil.Process | None:
        """The sandbox's live group leader, or None: gone, a zombie (reaped here), or a reused pid."""
        child = self._children.get(entry.sandbox_id)
        if child is not None and child.poll() is not None:
            return None
        try:
            proc = psutil.Process(entry.pid)
            if abs(proc.create_time() - entry.create_time) > 0.05:
                return None  # the pid now belongs to another process
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(entry.pid, os.WNOHANG)  # our own child: reap it
                return None
            return proc
        except psutil.Error:
            return None

    def _exit_file_code(self, sandbox_id: str) -> int | None:
        try:
            return json.loads(self._exit_path(sandbox_id).read_text()).get("exit_code")
        except (OSError, ValueError, AttributeError):
            return None

    def _record_end(self, entry: RegistryEntry) -> RegistryEntry:
        """First time an ended sandbox is seen: keep its exit code (if the supervisor wrote one) and end time."""
        if entry.ended_at is not None:
            return entry
        if entry.exit_code is None:
            entry.exit_code = self._exit_file_code(entry.sandbox_id)
        entry.ended_at = utcnow().isoformat()
        with contextlib.suppress(OSError):
            self._save(entry)
        with self._lock:
            self._cpu_cache.pop(entry.sandbox_id, None)
        return entry

    def _expired(self, entry: RegistryEntry) -> bool:
        ended = _parse_time(entry.ended_at)
        return ended is not None and (utcnow() - ended).total_seconds() > self.retention_seconds

    def _prune(self, entry: RegistryEntry) -> None:
        for path in (self._entry_path(entry.sandbox_id), self._exit_path(entry.sandbox_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        workdir = Path(entry.workdir)
        if workdir.parent == self.root and workdir.name == entry.sandbox_id:
            shutil.rmtree(workdir, ignore_errors=True)
        self._children.pop(entry.sandbox_id, None)
