"""An in-memory Modal API server for tests, spoken to by the unmodified Modal SDK.

It is a grpclib `Server` on 127.0.0.1 serving `modal_proto.api_grpc.ModalClientBase` (the control
plane) and `task_command_router_grpc.TaskCommandRouterBase` (exec) on one port, in its own thread
with its own event loop: the SDK's blocking API deadlocks if the server shares the caller's loop.

What it models: apps, images, secrets, V2 sandboxes (and V1 for GPU ones) with tags, strictly
increasing `created_at`, listing pages of `page_size` newest-first with `before_timestamp`,
terminate (137), timeouts (124), exits, and exec. Exec runs the command for real in a local
subprocess with `PARHELIA_PROC_ROOT` pointing at a per-sandbox fake /proc (stat, meminfo,
loadavg, uptime, one dir per process with comm and cmdline), so a probe script is exercised as
written. Process 1 is the sandbox's entrypoint argv unless `set_processes` says otherwise.

Faults: `fail(rpc, status)` makes an RPC fail (after `after` successful calls, `times` times or
forever; `after_effect=True` fails only after the RPC has had its effect, e.g. a sandbox that
exists though its create "failed"). `exec_hang` makes exec output never arrive. RPCs without a
handler fail loudly with UNIMPLEMENTED and are recorded in `state.unimplemented`.

Sandbox output: the entrypoint is not run (unless `run_entrypoints` is set, below); a test writes
what it "prints" with `write_output` (stdout or stderr). It is served as Modal serves it: V2 sandboxes through the command router's
`SandboxStdioReadV2` (a byte-offset stream per descriptor that stays open while the sandbox runs,
ends after the last byte once it has ended, and keeps only the last `output_retained` bytes, as
Modal does), V1 (GPU) sandboxes through the API's `SandboxGetLogs` (batches with an entry id;
a long poll of `log_poll_seconds` at most, after which the SDK reconnects with `last_entry_id`;
a batch with `eof` once the sandbox has ended and everything was sent).

Sessions (issue 19): every exec runs with `TMUX_TMPDIR` set to the sandbox's own directory, so
`tmux -L parhelia ...` in one sandbox reaches that sandbox's tmux server and no other (nor the
user's). With `run_entrypoints = True`, a sandbox created from then on runs its entrypoint for real
in that directory (Parhelia's entrypoint starts the agent in a real tmux session); what it prints
is its output, its exit ends the sandbox with its code, and terminate (or the end of the test)
stops it and its tmux server, as the container's end would. An exec with a PTY (`modal shell`,
`exec(pty=True)`) runs on a real pseudo-terminal of the size the client asked for: its output
streams while it runs and `TaskExecStdinWrite` types into it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import inspect
import itertools
import json
import os
import pty
import secrets
import shutil
import signal
import string
import struct
import subprocess
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field

import grpclib.const
import grpclib.server
from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal_proto import api_grpc, api_pb2, task_command_router_grpc
from modal_proto import task_command_router_pb2 as sr_pb2

from parhelia.workers.sandbox_session import agent_argv

TOKEN_ID = "ak-fake-parhelia"
TOKEN_SECRET = "as-fake-parhelia"
_ALNUM = string.ascii_letters + string.digits
_RESULT = api_pb2.GenericResult


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def fake_jwt(ttl: float = 3600.0) -> str:
    """A three-part JWT-shaped token whose payload has `exp` (the SDK decodes it, never verifies)."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time() + ttl)})}.sig"


@dataclass
class Fault:
    rpc: str
    status: Status
    message: str
    after: int = 0  # successful calls to let through first
    times: int | None = None  # failures before the fault clears; None = forever
    after_effect: bool = False
    seen: int = 0
    fired: int = 0
    delay: float = 0.0  # > 0: answer this late instead of failing (a hung workspace)


@dataclass
class FakeSandbox:
    sandbox_id: str
    app_id: str
    created_at: float
    definition: api_pb2.Sandbox
    tags: dict[str, str]
    task_id: str
    v1: bool = False
    result: api_pb2.GenericResult | None = None
    processes: dict[int, list[str]] = field(default_factory=dict)
    cpu_busy: float = 0.25  # fraction of all CPUs busy, advanced on every exec
    ncpu: int = 2
    mem_total_kb: int = 4 * 1024 * 1024
    mem_available_kb: int = 3 * 1024 * 1024
    load1: float = 0.8
    jiffies: tuple[int, int] = (0, 0)  # (busy, idle) so far
    execs: int = 0
    # what the entrypoint printed: (entry number, file descriptor 1|2, bytes), in order
    output: list[tuple[int, int, bytes]] = field(default_factory=list)
    # its filesystem as far as tests write it (path -> bytes); a snapshot image carries a copy,
    # and a sandbox created from that image starts with it
    files: dict[str, bytes] = field(default_factory=dict)

    def written(self, fd: int) -> bytes:
        """Everything written to descriptor `fd` (1 stdout, 2 stderr) so far."""
        return b"".join(data for _, f, data in self.output if f == fd)

    @property
    def running(self) -> bool:
        return self.result is None

    @property
    def cpu(self) -> float:
        return self.definition.resources.milli_cpu / 1000.0

    @property
    def memory_mib(self) -> int:
        return self.definition.resources.memory_mb

    @property
    def gpu(self) -> str:
        return self.definition.resources.gpu_config.gpu_type


@dataclass
class FakeExec:
    sandbox_id: str
    stdout: bytes = b""
    stderr: bytes = b""
    code: int | None = None
    done: asyncio.Event | None = None
    pty: bool = False  # on a terminal: output streams as it comes, input goes in (`master`)
    master: int | None = None
    stdin_offset: int = 0  # bytes of input written so far (a retried write is not written twice)


class FakeModalState:
    """Everything the fake knows; tests read and arrange it (thread-safe)."""

    def __init__(self, page_size: int = 5, root: str | None = None) -> None:
        self.page_size = page_size
        self.lock = threading.RLock()
        self.root = root or tempfile.mkdtemp(prefix="fake-modal-")
        self.url = ""
        self._tasks: set[asyncio.Future] = set()
        self._stopping = False
        self.reset()

    def reset(self) -> None:
        for sid in list(getattr(self, "sandboxes", {})):
            self.teardown(sid)
        with self.lock:
            self.generation = getattr(self, "generation", 0) + 1  # ends any hung call
            self.run_entrypoints = False
            self.entrypoints: dict[str, subprocess.Popen] = {}
            self.exec_groups: dict[str, set[int]] = {}  # sandbox id -> its execs' process groups
            self.apps: dict[tuple[str, str], str] = {}
            self.sandboxes: dict[str, FakeSandbox] = {}
            self.images: dict[str, str] = {}
            self.snapshots: dict[str, dict[str, bytes]] = {}  # image id -> the files it holds
            self.secrets: set[str] | None = None  # None: every secret name exists
            self.secret_ids: dict[str, str] = {}
            self.faults: list[Fault] = []
            self.calls: list[str] = []
            self.unimplemented: list[str] = []
            self.requests: dict[str, list] = {}
            self.idempotent: dict[str, str] = {}
            self.execs: dict[str, FakeExec] = {}
            self.exec_hang = False
            self.log_poll_seconds = 55.0  # a SandboxGetLogs long poll ends after this
            self.output_retained = 1 << 20  # V2 stdio keeps this many bytes per descriptor
            self._entries = itertools.count(1)
            self.token_expired = False
            self.valid_tokens = {(TOKEN_ID, TOKEN_SECRET)}
            self._last_created = 0.0
            self._ids = itertools.count(1)

    # -- arranging ---------------------------------------------------------------------------

    def fail(
        self,
        rpc: str,
        status: Status = Status.UNAVAILABLE,
        message: str = "",
        *,
        after: int = 0,
        times: int | None = None,
        after_effect: bool = False,
    ) -> Fault:
        fault = Fault(rpc, status, message or f"injected {status.name}", after, times, after_effect)
        with self.lock:
            self.faults.append(fault)
        return fault

    def hang(self, rpc: str, seconds: float, *, times: int | None = None) -> Fault:
        """Answer `rpc` only after `seconds` (or when the state is reset or the server stops)."""
        fault = Fault(rpc, Status.OK, "hang", times=times, delay=seconds)
        with self.lock:
            self.faults.append(fault)
        return fault

    async def _sleep(self, seconds: float) -> None:
        generation = self.generation
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stopping and self.generation == generation:
            await asyncio.sleep(0.05)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def app_id(self, name: str, environment: str = "") -> str:
        with self.lock:
            return self.apps.setdefault((environment, name), f"ap-{_rand(22)}")

    def add_sandbox(
        self,
        app_id: str,
        argv: list[str],
        tags: dict[str, str] | None = None,
        *,
        gpu: str = "",
        cpu: float = 1.0,
        memory_mib: int = 1024,
        timeout: int = 300,
    ) -> FakeSandbox:
        """Start a sandbox as if someone called Sandbox.create (used by the RPCs and by tests)."""
        definition = api_pb2.Sandbox(
            entrypoint_args=argv,
            timeout_secs=timeout,
            resources=api_pb2.Resources(
                milli_cpu=int(cpu * 1000),
                memory_mb=memory_mib,
                gpu_config=api_pb2.GPUConfig(gpu_type=gpu.upper(), count=1) if gpu else None,
            ),
        )
        return self._add(app_id, definition, dict(tags or {}), v1=bool(gpu))

    def _add(self, app_id: str, definition, tags: dict[str, str], v1: bool) -> FakeSandbox:
        with self.lock:
            # Strictly increasing, so paging by before_timestamp never skips a tie.
            created = max(time.time(), self._last_created + 0.001)
            self._last_created = created
            # V1 ids are sb- + 22 alphanumerics (the SDK routes on that shape); V2 ids differ.
            sid = f"sb-{_rand(22)}" if v1 else f"sb-{_rand(24)}"
            task = f"ta-{_rand(21)}" + ("" if v1 else "V")
            sb = FakeSandbox(sid, app_id, created, definition, tags, task, v1=v1)
            sb.processes = {1: list(definition.entrypoint_args) or ["sleep", "infinity"]}
            sb.files = dict(self.snapshots.get(definition.image_id, {}))
            agent = agent_argv(sb.processes[1])
            if agent != sb.processes[1]:  # an agent in its tmux session is a process of its own
                sb.processes[2] = agent
            self.sandboxes[sid] = sb
            if self.run_entrypoints:
                self._start_entrypoint(sb)
            return sb

    # -- the sandbox's own machine: its directory, its tmux, its entrypoint ---------------------

    def sandbox_dir(self, sandbox_id: str) -> str:
        path = os.path.join(self.root, sandbox_id)
        os.makedirs(path, exist_ok=True)
        return path

    def sandbox_env(self, sandbox_id: str) -> dict[str, str]:
        """What a process in the sandbox sees: PATH, and its own tmux directory."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMUX_TMPDIR": self.sandbox_dir(sandbox_id),
            "LANG": "C.UTF-8",
        }

    def _start_entrypoint(self, sb: FakeSandbox) -> None:
        sid = sb.sandbox_id
        proc = subprocess.Popen(
            list(sb.definition.entrypoint_args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.sandbox_env(sid),
            cwd=self.sandbox_dir(sid),
            start_new_session=True,
        )
        self.entrypoints[sid] = proc

        def pump(stream, stderr: bool) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                with self.lock:
                    if self.sandboxes.get(sid) is sb:
                        self.write_output(sid, chunk, stderr=stderr)

        readers = [
            threading.Thread(target=pump, args=(proc.stdout, False), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, True), daemon=True),
        ]

        def waiter() -> None:
            for r in readers:
                r.start()
            code = proc.wait()
            for r in readers:
                r.join(5)
            code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
            with self.lock:
                if self.sandboxes.get(sid) is sb and sb.running:
                    self.finish(sid, code=code)
            self.teardown(sid)

        threading.Thread(target=waiter, name=f"fake-entrypoint-{sid}", daemon=True).start()

    def exec_started(self, sandbox_id: str, pid: int) -> None:
        """An exec's process (a group of its own): the container's end ends it too. A sandbox
        that ended meanwhile kills it at once."""
        with self.lock:
            sb = self.sandboxes.get(sandbox_id)
            if sb is not None and sb.running:
                self.exec_groups.setdefault(sandbox_id, set()).add(pid)
                return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def exec_ended(self, sandbox_id: str, pid: int) -> None:
        """Its leader is reaped: the group is forgotten unless something it started lives on (a
        group id is not reused while it has members; the container's end stops them)."""
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            with self.lock:
                self.exec_groups.get(sandbox_id, set()).discard(pid)

    def teardown(self, sandbox_id: str) -> None:
        """The container is gone: its entrypoint, its execs (each with its process group) and its
        tmux server."""
        with self.lock:
            proc = self.entrypoints.pop(sandbox_id, None) if hasattr(self, "entrypoints") else None
            groups = self.exec_groups.pop(sandbox_id, set()) if hasattr(self, "exec_groups") else ()
        if proc is not None and proc.poll() is None:
            groups = {*groups, proc.pid}
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        tmux_dir = os.path.join(self.root, sandbox_id)
        if os.path.isdir(os.path.join(tmux_dir, f"tmux-{os.getuid()}")):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["tmux", "-L", "parhelia", "kill-server"],
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMUX_TMPDIR": tmux_dir},
                    capture_output=True,
                    timeout=5,
                )

    def start_behind_back(
        self,
        app_name: str,
        *,
        tagged: int = 0,
        foreign: int = 0,
        argv: list[str] | None = None,
        plane: str | None = None,
        lookalike: int = 0,
    ) -> list[FakeSandbox]:
        """Sandboxes nobody recorded: `tagged` carry Parhelia's tags (made-up, well-formed container
        ids, and the control-plane id `plane` unless None: made before plane ids), `foreign` carry
        none (someone else's, same app), `lookalike` carry Parhelia's mark with a container tag that
        is no Parhelia id (`bobs-job-N`), as someone else's tooling might."""
        app_id = self.app_id(app_name)
        made = []
        for _ in range(tagged):
            n = next(self._ids)
            tags = {
                "parhelia": "1",
                "parhelia_container": f"c-{n:08x}",
                "parhelia_task": f"t-{n:08x}",
            }
            if plane is not None:
                tags["parhelia_plane"] = plane
            made.append(self.add_sandbox(app_id, argv or ["claude", "-p", "lost"], tags))
        for _ in range(foreign):
            made.append(
                self.add_sandbox(app_id, ["python", "-m", "http.server"], {"team": "other"})
            )
        for _ in range(lookalike):
            n = next(self._ids)
            tags = {"parhelia": "1", "parhelia_container": f"bobs-job-{n}"}
            made.append(self.add_sandbox(app_id, ["bash", "-c", "bobs job"], tags))
        return made

    def set_processes(self, sandbox_id: str, processes: dict[int, list[str]]) -> None:
        with self.lock:
            self.sandboxes[sandbox_id].processes = dict(processes)

    def finish(self, sandbox_id: str, *, code: int = 0, timed_out: bool = False) -> None:
        """End a sandbox on its own: exit with `code`, or time out (the SDK reports 124)."""
        status = (
            _RESULT.GENERIC_STATUS_TIMEOUT
            if timed_out
            else (_RESULT.GENERIC_STATUS_SUCCESS if code == 0 else _RESULT.GENERIC_STATUS_FAILURE)
        )
        with self.lock:
            self.sandboxes[sandbox_id].result = _RESULT(status=status, exitcode=code)
        if threading.current_thread().name != f"fake-entrypoint-{sandbox_id}":
            self.teardown(sandbox_id)

    def write_output(self, sandbox_id: str, text: str | bytes, *, stderr: bool = False) -> None:
        """The sandbox's entrypoint prints `text` (to stderr when asked)."""
        data = text.encode() if isinstance(text, str) else text
        with self.lock:
            sb = self.sandboxes[sandbox_id]
            sb.output.append((next(self._entries), 2 if stderr else 1, data))

    def forget(self, sandbox_id: str) -> None:
        """Modal no longer knows the sandbox at all (NOT_FOUND from then on)."""
        with self.lock:
            self.sandboxes.pop(sandbox_id, None)
        self.teardown(sandbox_id)

    # -- reading -----------------------------------------------------------------------------

    def running(self, app_name: str | None = None) -> list[FakeSandbox]:
        with self.lock:
            app_id = self.apps.get(("", app_name)) if app_name else None
            return [
                s
                for s in self.sandboxes.values()
                if s.running and (app_id is None or s.app_id == app_id)
            ]

    def last_request(self, rpc: str):
        with self.lock:
            return self.requests[rpc][-1]

    # -- used by the servicers ---------------------------------------------------------------

    def _fault(self, rpc: str, effect_done: bool) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.rpc != rpc or f.after_effect != effect_done:
                    continue
                if f.times is not None and f.fired >= f.times:
                    continue
                f.seen += 1
                if f.seen <= f.after:
                    continue
                f.fired += 1
                return f
        return None

    def get(self, sandbox_id: str) -> FakeSandbox:
        with self.lock:
            sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox_id} not found")
        return sb

    def by_task(self, task_id: str) -> FakeSandbox:
        with self.lock:
            for sb in self.sandboxes.values():
                if sb.task_id == task_id:
                    return sb
        raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")

    def write_proc(self, sb: FakeSandbox) -> str:
        """Lay out the sandbox's fake /proc, advancing its CPU counters by one second's jiffies."""
        with self.lock:
            tick = 100 * sb.ncpu
            busy = sb.jiffies[0] + round(tick * sb.cpu_busy)
            idle = sb.jiffies[1] + tick - round(tick * sb.cpu_busy)
            sb.jiffies = (busy, idle)
            sb.execs += 1
            procs = dict(sb.processes)
        root = os.path.join(self.root, sb.sandbox_id, "proc")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        per = [
            f"cpu{i} {busy // sb.ncpu} 0 0 {idle // sb.ncpu} 0 0 0 0 0 0" for i in range(sb.ncpu)
        ]
        files = {
            "stat": "\n".join([f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0", *per, "intr 0", "ctxt 0"]),
            "meminfo": (
                f"MemTotal:       {sb.mem_total_kb} kB\nMemFree:        {sb.mem_available_kb // 2} kB\n"
                f"MemAvailable:   {sb.mem_available_kb} kB\nBuffers:        0 kB\n"
            ),
            "loadavg": f"{sb.load1:.2f} 0.40 0.30 1/{len(procs) + 1} 99",
            "uptime": f"{max(0.0, time.time() - sb.created_at):.2f} 0.00",
        }
        for name, text in files.items():
            with open(os.path.join(root, name), "w") as fh:
                fh.write(text + "\n")
        for pid, argv in procs.items():
            os.makedirs(os.path.join(root, str(pid)))
            with open(os.path.join(root, str(pid), "comm"), "w") as fh:
                fh.write(os.path.basename(argv[0])[:15] + "\n")
            with open(os.path.join(root, str(pid), "cmdline"), "wb") as fh:
                fh.write(b"".join(a.encode() + b"\0" for a in argv))
        return root


def _check_token(state: FakeModalState, metadata) -> None:
    pair = (metadata.get("x-modal-token-id"), metadata.get("x-modal-token-secret"))
    if pair not in state.valid_tokens:
        raise GRPCError(Status.UNAUTHENTICATED, "Invalid token id or secret")
    if state.token_expired:
        raise GRPCError(Status.UNAUTHENTICATED, "Token has expired")


def _servicer(base: type, impl: type, state: FakeModalState, auth: bool):
    """A concrete subclass of a generated grpclib base: every abstract RPC either dispatches to
    `impl.rpc_<Name>(req, metadata)` (returning a response, or an async iterator of them for
    streams) or fails with UNIMPLEMENTED, recorded so a test notices."""
    names = sorted(getattr(base, "__abstractmethods__", ()))
    impl_obj = impl(state)

    def make(name: str):
        async def handler(self, stream: grpclib.server.Stream) -> None:
            state.calls.append(name)
            fn = getattr(impl_obj, f"rpc_{name}", None)
            if fn is None:
                state.unimplemented.append(name)
                raise GRPCError(Status.UNIMPLEMENTED, f"fake Modal does not implement {name}")
            req = await stream.recv_message()
            with state.lock:
                state.requests.setdefault(name, []).append(req)
            if auth:
                _check_token(state, stream.metadata)
            if (f := state._fault(name, effect_done=False)) is not None:
                if not f.delay:
                    raise GRPCError(f.status, f.message)
                await state._sleep(f.delay)
            result = fn(req, stream.metadata)
            if inspect.isawaitable(result):
                result = await result
            if (f := state._fault(name, effect_done=True)) is not None:
                raise GRPCError(f.status, f.message)
            if inspect.isasyncgen(result):
                async for item in result:
                    await stream.send_message(item)
            else:
                await stream.send_message(result)

        handler.__name__ = name
        return handler

    cls = type(f"Fake{base.__name__}", (base,), {name: make(name) for name in names})
    return cls()


class _Api:
    """Handlers for the control-plane RPCs the SDK uses for apps, images, secrets and sandboxes."""

    def __init__(self, state: FakeModalState) -> None:
        self.s = state

    def rpc_ClientHello(self, req, md):
        return api_pb2.ClientHelloResponse()

    def rpc_AuthTokenGet(self, req, md):
        return api_pb2.AuthTokenGetResponse(token=fake_jwt())

    def rpc_EnvironmentGetOrCreate(self, req, md):
        name = req.deployment_name or "main"
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=f"en-{name}",
            metadata=api_pb2.EnvironmentMetadata(
                name=name, settings=api_pb2.EnvironmentSettings(image_builder_version="2025.06")
            ),
        )

    def rpc_AppGetOrCreate(self, req, md):
        return api_pb2.AppGetOrCreateResponse(
            app_id=self.s.app_id(req.app_name, req.environment_name)
        )

    def rpc_ImageGetOrCreate(self, req, md):
        key = req.image.SerializeToString(deterministic=True).hex()
        with self.s.lock:
            image_id = self.s.images.setdefault(key, f"im-{_rand(22)}")
        return api_pb2.ImageGetOrCreateResponse(
            image_id=image_id, result=_RESULT(status=_RESULT.GENERIC_STATUS_SUCCESS)
        )

    def rpc_ImageFromId(self, req, md):
        with self.s.lock:
            known = req.image_id in self.s.snapshots or req.image_id in self.s.images.values()
        if not known:
            raise GRPCError(Status.NOT_FOUND, f"Image {req.image_id} not found")
        return api_pb2.ImageFromIdResponse(image_id=req.image_id)

    def rpc_SecretGetOrCreate(self, req, md):
        name = req.deployment_name
        if name and self.s.secrets is not None and name not in self.s.secrets:
            raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' not found")
        with self.s.lock:
            sid = self.s.secret_ids.setdefault(name or f"ephemeral-{_rand(8)}", f"st-{_rand(22)}")
        return api_pb2.SecretGetOrCreateResponse(secret_id=sid)

    # -- sandboxes ---------------------------------------------------------------------------

    def _create(self, req, md, v1: bool) -> FakeSandbox:
        key = md.get("x-idempotency-key")
        with self.s.lock:
            if key and key in self.s.idempotent and self.s.idempotent[key] in self.s.sandboxes:
                return self.s.sandboxes[self.s.idempotent[key]]
            sb = self.s._add(
                req.app_id, req.definition, {t.tag_name: t.tag_value for t in req.tags}, v1
            )
            if key:
                self.s.idempotent[key] = sb.sandbox_id
            return sb

    def _access(self):
        return api_pb2.CommandRouterAccess(url=self.s.url, jwt=fake_jwt())

    def rpc_SandboxCreateV2(self, req, md):
        sb = self._create(req, md, v1=False)
        return api_pb2.SandboxCreateV2Response(
            sandbox_id=sb.sandbox_id,
            task_id=sb.task_id,
            command_router_access=self._access(),
            metadata=api_pb2.SandboxHandleMetadata(app_id=sb.app_id),
        )

    def rpc_SandboxCreate(self, req, md):
        sb = self._create(req, md, v1=True)
        return api_pb2.SandboxCreateResponse(
            sandbox_id=sb.sandbox_id, metadata=api_pb2.SandboxHandleMetadata(app_id=sb.app_id)
        )

    def rpc_SandboxGetTaskIdV2(self, req, md):
        sb = self.s.get(req.sandbox_id)
        if not sb.running:  # the task it ran on is still named: its output stays readable
            return api_pb2.SandboxGetTaskIdResponse(task_id=sb.task_id, task_result=sb.result)
        return api_pb2.SandboxGetTaskIdResponse(task_id=sb.task_id)

    rpc_SandboxGetTaskId = rpc_SandboxGetTaskIdV2

    def rpc_SandboxGetCommandRouterAccess(self, req, md):
        # also for an ended sandbox: the router serves its output after the end (exec it refuses)
        self.s.get(req.sandbox_id) if req.sandbox_id else self.s.by_task(req.task_id)
        access = self._access()
        return api_pb2.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)

    def rpc_TaskGetCommandRouterAccess(self, req, md):
        self.s.by_task(req.task_id)
        access = self._access()
        return api_pb2.TaskGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)

    def rpc_SandboxListV2(self, req, md):
        want = {t.tag_name: t.tag_value for t in req.tags}
        before = req.before_timestamp or float("inf")
        with self.s.lock:
            matches = [
                sb
                for sb in self.s.sandboxes.values()
                if (not req.app_id or sb.app_id == req.app_id)
                and (req.include_finished or sb.running)
                and sb.created_at < before
                and all(sb.tags.get(k) == v for k, v in want.items())
            ]
            matches.sort(key=lambda sb: sb.created_at, reverse=True)
            page = matches[: self.s.page_size]
            infos = [
                api_pb2.SandboxInfo(
                    id=sb.sandbox_id,
                    app_id=sb.app_id,
                    created_at=sb.created_at,
                    tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sb.tags.items()],
                    task_info=api_pb2.TaskInfo(id=sb.task_id, result=sb.result),
                    metadata=api_pb2.SandboxHandleMetadata(app_id=sb.app_id),
                )
                for sb in page
            ]
        return api_pb2.SandboxListResponse(sandboxes=infos)

    rpc_SandboxList = rpc_SandboxListV2

    async def rpc_SandboxWaitV2(self, req, md):
        sb = self.s.get(req.sandbox_id)
        deadline = time.monotonic() + max(0.0, req.timeout)
        while sb.running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # long poll: the fake's own loop, not a test waiting
        return api_pb2.SandboxWaitResponse(
            result=sb.result, metadata=api_pb2.SandboxHandleMetadata(app_id=sb.app_id)
        )

    rpc_SandboxWait = rpc_SandboxWaitV2

    def rpc_SandboxTagsGetV2(self, req, md):
        sb = self.s.get(req.sandbox_id)
        with self.s.lock:
            tags = dict(sb.tags)
        return api_pb2.SandboxTagsGetResponse(
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in tags.items()]
        )

    rpc_SandboxTagsGet = rpc_SandboxTagsGetV2

    def rpc_SandboxTagsSetV2(self, req, md):
        sb = self.s.get(req.sandbox_id)
        with self.s.lock:
            sb.tags = {t.tag_name: t.tag_value for t in req.tags}
        return empty_pb2.Empty()

    rpc_SandboxTagsSet = rpc_SandboxTagsSetV2

    def rpc_SandboxTerminateV2(self, req, md):
        sb = self.s.get(req.sandbox_id)
        with self.s.lock:
            existing = sb.result
            if sb.running:
                sb.result = _RESULT(status=_RESULT.GENERIC_STATUS_TERMINATED)
        self.s.teardown(sb.sandbox_id)
        return api_pb2.SandboxTerminateResponse(existing_result=existing)

    rpc_SandboxTerminate = rpc_SandboxTerminateV2

    async def rpc_SandboxGetLogs(self, req, md):
        """V1 output: batches of entries after `last_entry_id` for one descriptor, a long poll of
        at most `log_poll_seconds` (the stream then ends without eof: the SDK reconnects with
        the last entry id it saw), and a batch with `eof` once the sandbox ended and all is sent."""
        sb = self.s.get(req.sandbox_id)
        after = int(req.last_entry_id.split("-")[0]) if req.last_entry_id else 0
        poll = min(req.timeout or self.s.log_poll_seconds, self.s.log_poll_seconds)
        deadline = time.monotonic() + poll
        generation = self.s.generation

        async def batches():
            nonlocal after
            while True:
                with self.s.lock:
                    if self.s.sandboxes.get(sb.sandbox_id) is not sb:
                        raise GRPCError(Status.NOT_FOUND, f"Sandbox {sb.sandbox_id} not found")
                    ended = not sb.running
                    new = [
                        (n, d) for n, f, d in sb.output if n > after and f == req.file_descriptor
                    ]
                for n, data in new:
                    after = n
                    item = api_pb2.TaskLogs(
                        data=data.decode("utf-8", "replace"),
                        file_descriptor=req.file_descriptor,
                        timestamp=time.time(),
                    )
                    yield api_pb2.TaskLogsBatch(entry_id=f"{n}-0", items=[item], task_id=sb.task_id)
                if ended:
                    yield api_pb2.TaskLogsBatch(entry_id=f"{after}-0", eof=True, task_id=sb.task_id)
                    return
                if time.monotonic() >= deadline or self.s._stopping:
                    return
                if self.s.generation != generation:
                    return
                await asyncio.sleep(0.01)  # the fake's own loop waiting for output

        return batches()


class _Router:
    """Handlers for the task command router: exec runs for real against the fake /proc."""

    def __init__(self, state: FakeModalState) -> None:
        self.s = state

    def rpc_TaskSnapshotFilesystem(self, req, md):
        """`Sandbox.snapshot_filesystem()`: a new image holding a copy of the sandbox's files."""
        sb = self.s.by_task(req.task_id)
        if not sb.running:
            raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id} has finished")
        image_id = f"im-{_rand(22)}"
        with self.s.lock:
            self.s.snapshots[image_id] = dict(sb.files)
        return sr_pb2.TaskSnapshotFilesystemResponse(image_id=image_id)

    async def rpc_TaskExecStart(self, req, md):
        sb = self.s.by_task(req.task_id)
        if not sb.running:
            raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id} has finished")
        ex = FakeExec(sb.sandbox_id, done=asyncio.Event(), pty=req.pty_info.enabled)
        with self.s.lock:
            self.s.execs[req.exec_id] = ex
        proc_root = self.s.write_proc(sb)
        env = {**self.s.sandbox_env(sb.sandbox_id), "PARHELIA_PROC_ROOT": proc_root}
        if req.pty_info.enabled:
            self.s._tasks.add(asyncio.ensure_future(self._run_pty(req, ex, env)))
            return sr_pb2.TaskExecStartResponse()

        async def run() -> None:
            try:
                p = await asyncio.create_subprocess_exec(
                    *req.command_args,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    stdin=asyncio.subprocess.DEVNULL,
                    env=env,
                    cwd=os.path.dirname(proc_root),
                    start_new_session=True,
                )
                self.s.exec_started(sb.sandbox_id, p.pid)
                ex.stdout, ex.stderr = await p.communicate()
                ex.code = p.returncode
                self.s.exec_ended(sb.sandbox_id, p.pid)
            except OSError as exc:
                ex.stderr, ex.code = str(exc).encode(), 127
            ex.done.set()

        self.s._tasks.add(asyncio.ensure_future(run()))
        return sr_pb2.TaskExecStartResponse()

    async def _run_pty(self, req, ex: FakeExec, env: dict[str, str]) -> None:
        """The command on a real pseudo-terminal of the asked size; output kept as it arrives."""
        info = req.pty_info
        master, slave = pty.openpty()
        size = struct.pack("HHHH", info.winsz_rows or 24, info.winsz_cols or 80, 0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        env = {**env, "TERM": info.env_term or "xterm"}
        try:
            p = await asyncio.create_subprocess_exec(
                *req.command_args,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=env["TMUX_TMPDIR"],
                start_new_session=True,
            )
        except OSError as exc:
            os.close(slave)
            os.close(master)
            ex.stdout, ex.code = str(exc).encode(), 127
            ex.done.set()
            return
        os.close(slave)
        self.s.exec_started(ex.sandbox_id, p.pid)
        ex.master = master
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal has closed it
                data = b""
            if data:
                ex.stdout += data
            else:
                loop.remove_reader(master)
                closed.set()

        loop.add_reader(master, readable)
        try:
            ex.code = await p.wait()
            self.s.exec_ended(ex.sandbox_id, p.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), 2.0)
        finally:
            loop.remove_reader(master)
            ex.master = None
            os.close(master)
            ex.done.set()

    async def rpc_TaskExecStdinWrite(self, req, md):
        """Typing into a pty exec: bytes from `offset` on (a retried write is not typed twice)."""
        ex = self.s.execs.get(req.exec_id)
        if ex is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {req.exec_id} not found")
        data = req.data[max(0, ex.stdin_offset - req.offset) :]
        if data and ex.master is not None:
            with contextlib.suppress(OSError):
                os.write(ex.master, data)
        ex.stdin_offset = max(ex.stdin_offset, req.offset + len(req.data))
        return sr_pb2.TaskExecStdinWriteResponse()

    async def _streamed(self, ex: FakeExec, fd: int, offset: int):
        """A pty exec's output from `offset`, as it arrives, until the command has ended."""
        while True:
            done = ex.done.is_set()
            data = ex.stdout if fd == sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT else b""
            for i in range(offset, len(data), 16384):
                yield sr_pb2.TaskExecStdioReadResponse(data=data[i : i + 16384])
            offset = max(offset, len(data))
            if done or self.s._stopping:
                return
            await asyncio.sleep(0.01)  # the fake's own loop waiting for output

    async def _finished(self, exec_id: str) -> FakeExec:
        ex = self.s.execs.get(exec_id)
        if ex is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {exec_id} not found")
        while self.s.exec_hang and not self.s._stopping:
            await asyncio.sleep(0.02)
        await ex.done.wait()
        return ex

    async def rpc_TaskExecStdioRead(self, req, md):
        ex = self.s.execs.get(req.exec_id)
        if ex is not None and ex.pty:
            return self._streamed(ex, req.file_descriptor, req.offset)
        ex = await self._finished(req.exec_id)
        data = (
            ex.stdout
            if req.file_descriptor == sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
            else ex.stderr
        )

        async def chunks():
            for i in range(req.offset, len(data), 16384):
                yield sr_pb2.TaskExecStdioReadResponse(data=data[i : i + 16384])

        return chunks()

    async def rpc_SandboxStdioReadV2(self, req, md):
        """V2 output: the bytes of one descriptor from `offset` (or from the oldest retained byte,
        which the response's `starting_offset` says), then whatever follows while the sandbox
        runs; the stream ends after the last byte once the sandbox has ended."""
        sb = self.s.by_task(req.task_id)
        fd = 1 if req.file_descriptor == sr_pb2.SANDBOX_STDIO_FILE_DESCRIPTOR_STDOUT else 2
        generation = self.s.generation

        async def chunks():
            offset = req.offset
            while True:
                with self.s.lock:
                    if self.s.sandboxes.get(sb.sandbox_id) is not sb:
                        raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id} not found")
                    ended = not sb.running
                    data = sb.written(fd)
                oldest = max(0, len(data) - self.s.output_retained)
                start = max(offset, oldest)
                for i in range(start, len(data), 16384):
                    piece = data[i : i + 16384]
                    yield sr_pb2.SandboxStdioReadV2Response(data=piece, starting_offset=i)
                offset = max(offset, len(data))
                if ended or self.s._stopping or self.s.generation != generation:
                    return
                await asyncio.sleep(0.01)  # the fake's own loop waiting for output

        return chunks()

    async def rpc_TaskExecWait(self, req, md):
        ex = await self._finished(req.exec_id)
        return sr_pb2.TaskExecWaitResponse(code=ex.code)

    async def rpc_TaskExecPoll(self, req, md):
        ex = self.s.execs.get(req.exec_id)
        if ex is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {req.exec_id} not found")
        if ex.code is None or self.s.exec_hang:
            return sr_pb2.TaskExecPollResponse()
        return sr_pb2.TaskExecPollResponse(code=ex.code)


class FakeModalServer:
    """Start/stop the fake on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, page_size: int = 5) -> None:
        self.state = FakeModalState(page_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpclib.server.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.shared_client = None  # set by the fixture: one modal.Client per module

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeModalServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            api = _servicer(api_grpc.ModalClientBase, _Api, self.state, auth=True)
            router = _servicer(
                task_command_router_grpc.TaskCommandRouterBase, _Router, self.state, auth=False
            )
            self._server = grpclib.server.Server([api, router])
            try:
                loop.run_until_complete(self._server.start("127.0.0.1", 0))
                self.port = self._server._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # surfaced to the starting thread
                errors.append(exc)
                ready.set()
                return
            self.state.url = self.url
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-modal", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        self.state._stopping = True
        for sid in list(self.state.sandboxes):
            self.state.teardown(sid)

        async def shutdown() -> None:
            for task in list(self.state._tasks):
                task.cancel()
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)
        shutil.rmtree(self.state.root, ignore_errors=True)

    def client(self, token_id: str = TOKEN_ID, token_secret: str = TOKEN_SECRET):
        """A `modal.Client` talking to this fake (server URL read from MODAL_SERVER_URL once)."""
        import modal

        old = os.environ.get("MODAL_SERVER_URL")
        os.environ["MODAL_SERVER_URL"] = self.url
        try:
            return modal.Client.from_credentials(token_id, token_secret)
        finally:
            if old is None:
                os.environ.pop("MODAL_SERVER_URL", None)
            else:
                os.environ["MODAL_SERVER_URL"] = old

    def __enter__(self) -> FakeModalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
