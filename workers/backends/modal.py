"""The Modal backend: sandboxes in one Modal app, marked with Parhelia's tags.

Why it looks like this:
- `modal` is imported inside methods, never at module load, so `parhelia --help` stays fast and
  works without the SDK's import cost.
- It uses the SDK's blocking API only (callers run it in threads); mixing `.aio` into the same
  loop deadlocks the SDK.
- Scope is one app (`[modal] app`); Parhelia's sandboxes carry `parhelia=1` plus the container and
  task ids. `list()` filters on that tag; `list_all()` shows the app's foreign sandboxes too, and
  `terminate()` reads the tags first and refuses (E401) anything untagged or outside the app.
- `Sandbox.list` yields handles without tags or creation time, so each listed sandbox's tags are
  read with one call (a few in parallel). A listing that fails anywhere, on any page, raises: a
  partial listing would read as "those others stopped".
- The probe is one `exec` of a POSIX sh one-liner that only reads /proc (plus `df` when present),
  so the image needs nothing installed. CPU % comes from the /proc/stat delta since this
  backend's previous probe of the sandbox (100 = one core); the first probe uses the 1-minute
  load average. Probe handles are kept per sandbox so later probes reuse the task id and the
  exec connection (one wait-poll plus the exec's own calls).
- Agent output comes from the sandbox's own stdout/stderr streams, kept per sandbox by
  `modal_logs.SandboxOutput` (bounded, resumable by byte offset).
- Every SDK error goes through `map_modal_error`, so each failure has one catalogue code.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import ModalSettings
from parhelia.state.timeutil import utcnow
from parhelia.workers import sandbox_session
from parhelia.workers.backends.base import (
    TAG_MARK,
    TAG_MARK_VALUE,
    LogChunk,
    ProbeSample,
    SandboxInfo,
    SandboxSpec,
    TerminateResult,
    WorkspaceSnapshot,
    is_parhelia,
)
from parhelia.workers.progress import report
from parhelia.workers.sessions import session_name

if TYPE_CHECKING:
    import modal

TAG_FETCH_CONCURRENCY = 8
HANDLE_CACHE = 512
LOG_FOLLOWERS = 16  # sandboxes whose output one process keeps reading (oldest dropped)
LOG_FIRST_WAIT = 2.0  # a first log read waits at most this (and half the deadline) for output
NO_GPU = {"", "none", "cpu"}

# Reads /proc under $PARHELIA_PROC_ROOT (default /proc; tests point it at a fake tree).
# $1 is the agent's binary name; a process is the agent when its comm, argv[0] or argv[1]
# (an interpreter's script) has that basename. Prints key=value lines for parse_probe_output.
PROBE_SCRIPT = r"""
P="${PARHELIA_PROC_ROOT:-/proc}"; name="$1"; n=0
while read -r k rest; do
  case "$k" in cpu) echo "cpu=$rest";; cpu[0-9]*) n=$((n+1));; esac
done < "$P/stat"
echo "ncpu=$n"
read -r l1 _ < "$P/loadavg" && echo "load1=$l1"
while read -r k v _; do
  case "$k" in MemTotal:) echo "mem_total_kb=$v";; MemAvailable:) echo "mem_available_kb=$v";; esac
done < "$P/meminfo"
read -r up _ < "$P/uptime" && echo "uptime=$up"
df -P / 2>/dev/null | { read -r _; read -r _ _ _ _ pct _; echo "disk_pct=${pct%\%}"; }
alive=0
for d in "$P"/[0-9]*; do
  [ "${d##*/}" = "$$" ] && continue
  c=""; read -r c < "$d/comm" 2>/dev/null; hit=0
  [ "$c" = "$name" ] && hit=1
  set -f; set -- $(tr '\0' ' ' < "$d/cmdline" 2>/dev/null); set +f
  [ "${1##*/}" = "$name" ] && hit=1
  [ $# -gt 1 ] && [ "${2##*/}" = "$name" ] && hit=1
  [ $hit = 1 ] || continue
  st=""; read -r st < "$d/stat" 2>/dev/null; st="${st##*) }"; st="${st%% *}"
  case "$st" in T|t) alive=2;; Z|X) ;; *) alive=1; break;; esac
done
echo "agent=$alive"
"""


def check_reachable(timeout: float) -> None:
    """E502 within `timeout` when the Modal API does not accept a connection. The SDK itself
    retries a refused or silent server for about a minute before it says anything."""
    import socket
    from urllib.parse import urlsplit

    from modal.config import config

    url = urlsplit(config.get("server_url"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ParheliaError(
            "E502",
            f"the Modal API at {url.hostname}:{port} could not be reached within {timeout:g} s "
            f"({exc.strerror or type(exc).__name__})",
            [
                "parhelia reconciler status",
                "modal app list",
                "parhelia task create PROMPT --backend local",
            ],
            attempted="connect to Modal",
        ) from exc


def map_modal_error(exc: BaseException, attempted: str) -> ParheliaError:
    """The one place SDK errors become catalogue errors (auth, not found, timeout, network, other)."""
    if isinstance(exc, ParheliaError):
        return exc
    from grpclib import Status
    from modal import exception as me

    text = str(exc) or type(exc).__name__
    status = getattr(exc, "_grpc_status", None)
    if isinstance(exc, me.AuthError | me.PermissionDeniedError):
        if "expired" in text.lower():
            return ParheliaError(
                "E402",
                f"Modal token expired: {text}",
                ["modal token new", "modal token info", "parhelia config show"],
                attempted=attempted,
            )
        return ParheliaError(
            "E400",
            f"Modal rejected the credentials: {text}",
            ["modal token new", "modal token info", "parhelia task create PROMPT --backend local"],
            attempted=attempted,
        )
    if isinstance(exc, me.NotFoundError):
        return ParheliaError(
            "E205",
            f"Modal has no such object: {text}",
            ["parhelia reconciler run", "parhelia containers list", "modal container list"],
            attempted=attempted,
        )
    if isinstance(exc, me.TimeoutError | TimeoutError) or status == Status.DEADLINE_EXCEEDED:
        return ParheliaError(
            "E501",
            f"Modal did not answer in time: {text}",
            ["parhelia reconciler run", "parhelia reconciler status", "modal app list"],
            attempted=attempted,
        )
    if isinstance(exc, me.ConnectionError | OSError) or status == Status.UNAVAILABLE:
        return ParheliaError(
            "E502",
            f"Modal could not be reached: {text}",
            [
                "parhelia reconciler status",
                "modal app list",
                "parhelia task create PROMPT --backend local",
            ],
            attempted=attempted,
        )
    return ParheliaError(
        "E503",
        f"Modal error ({type(exc).__name__}): {text}",
        ["parhelia reconciler status", "modal app list", "modal token new"],
        attempted=attempted,
    )


def _number(fields: dict[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None


def _cpu_counters(line: str | None) -> tuple[int, int] | None:
    """(busy, total) jiffies from the aggregate `cpu` line of /proc/stat."""
    try:
        values = [int(v) for v in (line or "").split()]
    except ValueError:
        return None
    if len(values) < 4:
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def parse_probe_output(
    text: str, previous: tuple[int, int] | None = None
) -> tuple[ProbeSample, tuple[int, int] | None]:
    """The probe script's key=value lines as a sample, plus the CPU counters for the next delta."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "agent" not in fields:
        raise ValueError(f"probe output has no agent line: {text[:200]!r}")
    counters = _cpu_counters(fields.get("cpu"))
    ncpu = max(1, int(_number(fields, "ncpu") or 1))
    cpu = None
    if counters and previous and counters[1] > previous[1]:
        cpu = 100.0 * ncpu * (counters[0] - previous[0]) / (counters[1] - previous[1])
    elif (load := _number(fields, "load1")) is not None:
        cpu = 100.0 * min(load, float(ncpu))
    total_kb, avail_kb = _number(fields, "mem_total_kb"), _number(fields, "mem_available_kb")
    mem_mib = mem_pct = None
    if total_kb and avail_kb is not None:
        mem_mib = round((total_kb - avail_kb) / 1024.0, 1)
        mem_pct = round(100.0 * (total_kb - avail_kb) / total_kb, 2)
    sample = ProbeSample(
        cpu_percent=None if cpu is None else round(max(0.0, cpu), 1),
        memory_mib=mem_mib,
        memory_percent=mem_pct,
        disk_percent=_number(fields, "disk_pct"),
        uptime_seconds=_number(fields, "uptime"),
        agent_alive=fields["agent"].strip() == "1",
        agent_stopped=fields["agent"].strip() == "2",  # found, but stopped (SIGSTOP)
    )
    return sample, counters


class ModalBackend:
    """Sandboxes in the Modal app `settings.app`, through the SDK's blocking API."""

    name = "modal"

    def __init__(
        self,
        settings: ModalSettings,
        client: modal.Client | None = None,
        *,
        agent_binary: str = "claude",
        exec_timeout_seconds: int = 20,
    ) -> None:
        self.settings = settings
        self.agent_binary = agent_binary
        self.exec_timeout_seconds = exec_timeout_seconds
        self._client = client
        self._app: Any = None
        self._lock = threading.Lock()
        self._cpu_counters: dict[str, tuple[int, int]] = {}
        self._handles: dict[str, Any] = {}  # sandbox id -> modal.Sandbox, for probes
        self._outputs: dict[str, Any] = {}  # sandbox id -> modal_logs.SandboxOutput

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, attempted: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ParheliaError:
            raise
        except Exception as exc:
            raise map_modal_error(exc, attempted) from exc

    def client(self) -> modal.Client:
        with self._lock:
            if self._client is None:
                import modal

                check_reachable(self.settings.timeout_seconds)
                self._client = self._call("connect to Modal", modal.Client.from_env)
            return self._client

    def app(self) -> modal.App:
        client = self.client()
        with self._lock:
            if self._app is None:
                import modal

                self._app = self._call(
                    f"look up the Modal app {self.settings.app!r}",
                    modal.App.lookup,
                    self.settings.app,
                    create_if_missing=True,
                    client=client,
                    environment_name=self.settings.environment or None,
                )
            return self._app

    def _in_app(self, sandbox_id: str, tags: dict[str, str], attempted: str) -> bool:
        """Whether the running sandbox is in Parhelia's app: list the app filtered by the
        sandbox's own tags (a page of one, normally) and look for its id."""
        import modal

        app_id, client = self.app().app_id, self.client()
        return self._call(
            attempted,
            lambda: any(
                h.object_id == sandbox_id
                for h in modal.Sandbox.list(app_id=app_id, tags=tags, client=client)
            ),
        )

    def _sandbox(self, sandbox_id: str, attempted: str) -> modal.Sandbox:
        import modal

        return self._call(attempted, modal.Sandbox.from_id, sandbox_id, client=self.client())

    # -- Backend protocol -------------------------------------------------------------------

    def create(self, spec: SandboxSpec, image: modal.Image | None = None) -> SandboxInfo:
        import modal

        attempted = f"create a Modal sandbox for {spec.container_id}"
        app = self.app()
        image_ref = spec.image or self.settings.image
        if image is None:  # a restore brings its snapshot's image, tmux included
            image = modal.Image.from_registry(image_ref) if image_ref else modal.Image.debian_slim()
            image = image.run_commands(sandbox_session.TMUX_INSTALL)  # the agent runs in tmux
        session = session_name(spec.task_id or spec.container_id, utcnow())
        tags = {**spec.tags, sandbox_session.TAG_SESSION: session}
        names = list(dict.fromkeys([*self.settings.secrets, *spec.secrets]))
        env_name = self.settings.environment or None
        secrets = [modal.Secret.from_name(n, environment_name=env_name) for n in names]
        gpu = None if (spec.gpu or "").strip().lower() in NO_GPU else spec.gpu
        idle = spec.idle_timeout_seconds or self.settings.idle_timeout_seconds or None
        report("building the image")
        self._call(attempted, image.build, app)  # cached: a no-op once built
        report("starting the sandbox")
        sb = self._call(
            attempted,
            modal.Sandbox.create,
            *sandbox_session.sandbox_argv(session, list(spec.argv)),
            app=app,
            image=image,
            secrets=secrets,
            env=dict(spec.env) or None,
            cpu=spec.cpu,
            memory=spec.memory_mib,
            gpu=gpu,
            region=spec.region or None,
            timeout=spec.timeout_seconds,
            idle_timeout=idle,
            tags=tags,
            client=self.client(),
        )
        return SandboxInfo(
            sandbox_id=sb.object_id, backend=self.name, tags=tags, created_at=utcnow()
        )

    def snapshot_workspace(self, sandbox_id: str) -> WorkspaceSnapshot:
        """`Sandbox.snapshot_filesystem()`: the whole filesystem as an image; its id is the ref."""
        attempted = f"snapshot the filesystem of the Modal sandbox {sandbox_id}"
        sb = self._sandbox(sandbox_id, attempted)
        if (code := self._call(attempted, sb.poll)) is not None:  # the SDK would wait forever
            raise ParheliaError(
                "E205",
                f"{sandbox_id} has ended (exit code {code}); its filesystem is gone",
                ["parhelia checkpoint list", "parhelia containers show ID"],
                attempted=attempted,
            )
        return WorkspaceSnapshot(self._call(attempted, sb.snapshot_filesystem).object_id)

    def restore(self, spec: SandboxSpec, ref: str) -> SandboxInfo:
        import modal

        return self.create(spec, image=modal.Image.from_id(ref, client=self.client()))

    def list(self) -> list[SandboxInfo]:
        return self._list({TAG_MARK: TAG_MARK_VALUE}, "list Parhelia's Modal sandboxes")

    def list_all(self) -> list[SandboxInfo]:
        return self._list(None, f"list the sandboxes of the Modal app {self.settings.app!r}")

    def _list(self, tags: dict[str, str] | None, attempted: str) -> list[SandboxInfo]:
        import modal

        app_id = self.app().app_id
        client = self.client()
        # Consuming the generator pages to the end; an error on any page propagates.
        handles = self._call(
            attempted, lambda: list(modal.Sandbox.list(app_id=app_id, tags=tags, client=client))
        )
        if not handles:
            return []
        with ThreadPoolExecutor(min(TAG_FETCH_CONCURRENCY, len(handles))) as pool:
            infos = list(pool.map(lambda sb: self._info(sb, attempted), handles))
        return [i for i in infos if i is not None]

    def _info(self, sb: modal.Sandbox, attempted: str) -> SandboxInfo | None:
        from modal.exception import NotFoundError

        try:
            tags = sb.get_tags()
        except NotFoundError:
            return None  # ended between the listing and now: not running, so not listed
        except Exception as exc:
            raise map_modal_error(exc, attempted) from exc
        code = sb.returncode
        return SandboxInfo(
            sandbox_id=sb.object_id,
            backend=self.name,
            tags=dict(tags),
            created_at=None,  # the SDK's listing does not expose it
            running=code is None,
            exit_code=code,
        )

    def terminate(self, sandbox_id: str) -> TerminateResult:
        from modal.exception import NotFoundError

        attempted = f"terminate the Modal sandbox {sandbox_id}"
        try:
            sb = self._sandbox(sandbox_id, attempted)
            tags = self._call(attempted, sb.get_tags)
        except ParheliaError as err:
            if isinstance(err.__cause__, NotFoundError):
                self._forget(sandbox_id)
                return TerminateResult(sandbox_id, None, already_gone=True)
            raise
        if not is_parhelia(tags):
            raise self._forbidden(sandbox_id, f"no parhelia tags; it has {sorted(tags) or 'none'}")
        if sb.returncode is not None:
            self._forget(sandbox_id)
            return TerminateResult(sandbox_id, sb.returncode, already_gone=True)
        if not self._in_app(sandbox_id, tags, attempted):
            if self._call(attempted, sb.poll) is not None:  # it ended meanwhile
                return TerminateResult(sandbox_id, sb.returncode, already_gone=True)
            raise self._forbidden(sandbox_id, f"it is not in the app {self.settings.app!r}")
        code = self._call(attempted, sb.terminate, wait=True)
        self._forget(sandbox_id)
        return TerminateResult(sandbox_id, code)

    def exit_code(self, sandbox_id: str) -> int | None:
        from modal.exception import NotFoundError

        attempted = f"read how the Modal sandbox {sandbox_id} ended"
        try:
            sb = self._sandbox(sandbox_id, attempted)
            return self._call(attempted, sb.poll)
        except ParheliaError as err:
            if isinstance(err.__cause__, NotFoundError):
                return None
            raise

    def _forget(self, sandbox_id: str) -> None:
        self._cpu_counters.pop(sandbox_id, None)
        self._handles.pop(sandbox_id, None)

    def _probe_handle(self, sandbox_id: str, attempted: str) -> modal.Sandbox:
        """A cached handle, refreshed with one poll; a new one (from_id) the first time."""
        sb = self._handles.get(sandbox_id)
        if sb is None:
            sb = self._sandbox(sandbox_id, attempted)
            if len(self._handles) >= HANDLE_CACHE:
                self._handles.pop(next(iter(self._handles)), None)
            self._handles[sandbox_id] = sb
        else:
            self._call(attempted, sb.poll)
        return sb

    def _forbidden(self, sandbox_id: str, why: str) -> ParheliaError:
        return ParheliaError(
            "E401",
            f"{sandbox_id} is not Parhelia's ({why}); Parhelia never terminates sandboxes it did not make",
            [
                "parhelia containers orphans",
                "parhelia containers list",
                f"modal shell {sandbox_id}",
            ],
            attempted=f"terminate the Modal sandbox {sandbox_id}",
        )

    def probe(self, sandbox_id: str) -> ProbeSample:
        attempted = f"probe the Modal sandbox {sandbox_id}"
        try:
            return self._probe(sandbox_id, attempted)
        except ParheliaError:
            self._forget(sandbox_id)
            raise

    def _probe(self, sandbox_id: str, attempted: str) -> ProbeSample:
        sb = self._probe_handle(sandbox_id, attempted)
        if sb.returncode is not None:
            raise ParheliaError(
                "E205",
                f"{sandbox_id} has ended (exit code {sb.returncode})",
                ["parhelia reconciler run", "parhelia containers show ID"],
                attempted=attempted,
            )

        def run() -> tuple[str, int]:
            proc = sb.exec(
                "sh",
                "-c",
                PROBE_SCRIPT,
                "parhelia-probe",
                self.agent_binary,
                timeout=self.exec_timeout_seconds,
            )
            return proc.stdout.read(), proc.wait()

        output, code = self._call(attempted, run)
        if code == -1:  # the SDK's way of saying the exec missed its deadline
            raise ParheliaError(
                "E501",
                f"the probe of {sandbox_id} did not finish within {self.exec_timeout_seconds} s",
                [
                    "parhelia reconciler run",
                    "parhelia containers show ID",
                    f"modal shell {sandbox_id}",
                ],
                attempted=attempted,
            )
        try:
            sample, counters = parse_probe_output(output, self._cpu_counters.get(sandbox_id))
        except ValueError as exc:
            raise ParheliaError(
                "E503", f"{sandbox_id}: probe exited {code}: {exc}", attempted=attempted
            ) from exc
        if counters:
            self._cpu_counters[sandbox_id] = counters
        return sample

    def read_log(self, sandbox_id: str, offset: int = 0) -> LogChunk:
        """The agent's stdout and stderr from byte `offset` of this process's merged copy
        (`modal_logs.SandboxOutput`), also after the sandbox ended. Until its output has ended,
        each read asks Modal once about the sandbox (`from_id` the first time, `poll` after), so
        a hung API is E501 at the deadline and a sandbox Modal no longer knows is E205, never a
        log that merely looks quiet."""
        from modal.exception import NotFoundError

        from parhelia.workers.backends.modal_logs import SandboxOutput

        attempted = f"read the agent output of the Modal sandbox {sandbox_id}"
        # the first read's wait for output fits in half the deadline, the calls before included
        settle_by = time.monotonic() + min(LOG_FIRST_WAIT, self.settings.timeout_seconds / 2)
        out = self._outputs.get(sandbox_id)
        try:
            if out is None or out.failed:
                sb = self._sandbox(sandbox_id, attempted)
                out = SandboxOutput(sb)
                with self._lock:
                    if len(self._outputs) >= LOG_FOLLOWERS:
                        self._outputs.pop(next(iter(self._outputs))).stop()
                    self._outputs[sandbox_id] = out
            elif not out.ended:
                self._call(attempted, out.sandbox.poll)
            out.settle(first_wait=max(0.0, settle_by - time.monotonic()))
            return out.read(offset)
        except Exception as exc:
            if out is not None and self._outputs.get(sandbox_id) is out:
                self._outputs.pop(sandbox_id, None)  # the next read starts afresh
            cause = exc.__cause__ if isinstance(exc, ParheliaError) else exc
            if isinstance(cause, NotFoundError):
                raise ParheliaError(
                    "E205",
                    f"Modal does not know the sandbox {sandbox_id} (removed, or never made in this "
                    "workspace), so its agent output cannot be read",
                    [
                        "parhelia containers show ID",
                        "parhelia reconciler run",
                        "modal container list",
                    ],
                    attempted=attempted,
                ) from cause
            if isinstance(exc, ParheliaError):
                raise
            raise map_modal_error(exc, attempted) from exc

    def exec_script(
        self, sandbox_id: str, script: str, *args: str, attempted: str
    ) -> tuple[str, int]:
        """Run a POSIX sh `script` with `args` in the running sandbox: its stdout and exit code.
        E205 when the sandbox has ended or Modal does not know it; E501 when the exec misses
        `exec_timeout_seconds` (the caller bounds the calls before it: `modal_sessions`)."""
        sb = self._probe_handle(sandbox_id, attempted)
        if sb.returncode is not None:
            self._forget(sandbox_id)
            raise ParheliaError(
                "E205",
                f"{sandbox_id} has ended (exit code {sb.returncode})",
                ["parhelia reconciler run", "parhelia containers list"],
                attempted=attempted,
            )

        def run() -> tuple[str, int]:
            proc = sb.exec(
                "sh", "-c", script, "parhelia-session", *args, timeout=self.exec_timeout_seconds
            )
            return proc.stdout.read(), proc.wait()

        try:
            output, code = self._call(attempted, run)
        except ParheliaError:
            self._handles.pop(sandbox_id, None)  # the next call asks Modal afresh
            raise
        if code == -1:  # the SDK's way of saying the exec missed its deadline
            raise ParheliaError(
                "E501",
                f"{attempted}: no answer within {self.exec_timeout_seconds} s",
                ["parhelia session list", f"modal shell {sandbox_id}"],
                attempted=attempted,
            )
        return output, code

    def shell_argv(self, sandbox_id: str) -> list[str]:
        """`modal shell sb-…` execs a shell in a running sandbox (modal 1.6 accepts sandbox ids)."""
        return ["modal", "shell", sandbox_id]
