"""Agent sessions: each local agent runs in a named tmux session (`ph-<task>-<YYYYMMDDTHHMMSS>`,
SPEC-02) that a user can list, attach to, read and kill.

Why it looks like this:
- Each local sandbox has its own tmux server, at a socket path computed from the backend's root
  and the sandbox id (`socket_path`), so nothing has to be stored to find it again and a test's
  sandboxes never meet the user's tmux. The session host (`session_host.py`) runs that server.
- The store knows containers, tasks and states; tmux knows sessions, their clients, their age and
  their screen. `SessionService.list` joins the two; the session name is asked of tmux.
- What an agent is doing is read from its pane (`capture-pane`) and the pane's last output time
  and judged by the pure `state.agent_activity.classify`.
- Modal agents' sessions are read in their sandboxes (`modal_sessions.py`); `SessionInfo` is the
  same for both, and attach and kill go by the session's backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from parhelia.state.agent_activity import Activity, AgentState, classify, merged
from parhelia.state.enums import ACTIVE_STATES, EventSource
from parhelia.state.errors import ParheliaError
from parhelia.state.event_types import EventType
from parhelia.workers.session_host import HOST_MODULE, PANE_MARK, TMUX, tmux_base

if TYPE_CHECKING:  # psutil loads with the local backend, not with every read of the agents
    import psutil

SESSION_PREFIX = "ph-"
SOCKET_NAME = "tmux.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; tmux refuses longer paths
TMUX_TIMEOUT = 10.0
_LIST_FORMAT = (
    "#{session_name}\t#{session_attached}\t#{session_created}\t#{window_activity}\t#{pane_dead}"
)


def tmux_available() -> bool:
    return shutil.which(TMUX) is not None


def session_name(task_or_container: str, created: datetime) -> str:
    """`ph-<task>-<YYYYMMDDTHHMMSS>` (UTC); tmux turns '.' and ':' into '_', so they never appear."""
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    ref = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in task_or_container)
    return f"{SESSION_PREFIX}{ref}-{stamp}"


def socket_path(root: Path, sandbox_id: str) -> Path:
    """The sandbox's tmux socket: in its workdir, or (when that path is too long for a Unix
    socket) in a private directory under the temp dir named after the root and the id."""
    own = Path(root) / sandbox_id / SOCKET_NAME
    if len(os.fsencode(str(own))) <= MAX_SOCKET_PATH:
        return own
    digest = hashlib.sha1(os.fsencode(str(Path(root).resolve()))).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"parhelia-tmux-{os.getuid()}" / f"{digest}-{sandbox_id}"


def host_argv(socket: Path, name: str, agent: list[str]) -> list[str]:
    """What the local supervisor runs as its agent: the session host around the real agent."""
    if socket.parent.name.startswith("parhelia-tmux-"):
        socket.parent.mkdir(mode=0o700, exist_ok=True)
    return [
        sys.executable,
        "-m",
        HOST_MODULE,
        "--socket",
        str(socket),
        "--name",
        name,
        "--",
        *agent,
    ]


def agent_processes(leader: psutil.Process) -> list[psutil.Process]:
    """The agent's processes under a local supervisor: the tmux panes' processes when the agent
    runs in a session (supervisor -> host -> tmux server -> pane shell -> agent), else the
    supervisor's children."""
    import psutil

    children = leader.children()
    panes: list[psutil.Process] = []
    hosted = False
    for child in children:
        try:
            if HOST_MODULE not in child.cmdline():
                continue
            hosted = True
            for server in child.children():
                for pane in server.children():  # the pane's shell (not the log pipe's cat)
                    if PANE_MARK in pane.cmdline():
                        panes.extend(pane.children())
        except psutil.Error:
            continue
    return panes if hosted else children


# -- tmux --------------------------------------------------------------------------------------


def tmux(socket: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    return subprocess.run(
        [*tmux_base(socket), *args],
        capture_output=True,
        text=True,
        timeout=TMUX_TIMEOUT,
        env=env,
        check=False,
    )


@dataclass(frozen=True)
class PaneState:
    name: str
    attached: int
    created: datetime
    last_output: datetime | None
    dead: bool


def read_sessions(socket: Path) -> list[PaneState]:
    """The sessions of one sandbox's tmux server ([] when it has none or is not running)."""
    if not socket.exists():
        return []
    try:
        out = tmux(socket, "list-sessions", "-F", _LIST_FORMAT)
    except (OSError, subprocess.SubprocessError):
        return []
    states = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = line.split("\t")
        if len(parts) != 5 or not parts[0].startswith(SESSION_PREFIX):
            continue
        name, attached, created, activity, dead = parts
        states.append(
            PaneState(
                name=name,
                attached=int(attached or 0),
                created=_epoch(created) or datetime.now(UTC),
                last_output=_epoch(activity),
                dead=dead == "1",
            )
        )
    return states


def kill_server(socket: Path) -> None:
    """Stop a sandbox's tmux server (and so its session and agent) if one is still listening:
    the terminate's last step, for a host that was killed before it could clean up."""
    if socket.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            tmux(socket, "kill-server")
        with contextlib.suppress(OSError):
            socket.unlink()


def capture(socket: Path, name: str) -> str:
    """The visible screen of the session's pane (text, no escapes)."""
    out = tmux(socket, "capture-pane", "-p", "-t", f"={name}:")
    return out.stdout if out.returncode == 0 else ""


def _epoch(value: str) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value.strip().isdigit() else None


def attach_argv(socket: Path, name: str) -> list[str]:
    """`tmux attach` to the session; TMUX is unset so it also works from inside the user's tmux."""
    return ["env", "-u", "TMUX", *tmux_base(socket), "attach-session", "-t", f"={name}"]


# -- sessions joined with the store -------------------------------------------------------------


@dataclass
class SessionInfo:
    id: str
    container_id: str
    task_id: str | None
    backend: str
    sandbox_id: str
    state: str  # running | attached | ended | unknown (its sandbox did not answer: `error`)
    container_state: str
    attached_clients: int
    created_at: datetime
    age_seconds: float
    activity: str
    activity_detail: str
    attach_command: str
    activity_source: str = "pane"  # pane | hook (Claude Code's hooks, when fresh)
    socket: str = field(repr=False, default="")
    error: str | None = None  # why the session could not be read (state "unknown"), code first

    @classmethod
    def of_pane(cls, c, pane, activity: Activity, now: datetime, **extra) -> SessionInfo:
        """A session as a tmux pane shows it, for container `c` (here or in a Modal sandbox),
        `now` being the clock the pane's times are on."""
        return cls(
            id=pane.name,
            container_id=c.id,
            task_id=c.task_id,
            backend=c.backend,
            sandbox_id=c.sandbox_id,
            state="ended" if pane.dead else ("attached" if pane.attached else "running"),
            container_state=c.state,
            attached_clients=pane.attached,
            created_at=pane.created,
            age_seconds=max(0.0, (now - pane.created).total_seconds()),
            activity=activity.kind,
            activity_detail=activity.detail,
            attach_command=f"parhelia session attach {pane.name}",
            **extra,
        )

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "socket"}
        out["created_at"] = self.created_at.isoformat()
        return out


class SessionService:
    """Session list, attach and kill over a `ControlPlane` (its store and local backend)."""

    def __init__(self, control) -> None:
        self.control = control

    def _local_root(self) -> Path | None:
        return self.control.local_root()

    def list(self, containers=None, *, with_activity: bool = True) -> list[SessionInfo]:
        """Every agent's sessions, local and Modal. `containers` (rows or `ContainerView`s:
        anything with id, backend, sandbox_id, task_id, state, tags and created_at) saves asking
        the store again: the dashboard passes its view's active containers."""
        from parhelia.workers import modal_sessions

        if containers is None:
            containers = self.control.store.active_containers()
        now = self.control.clock()
        found = modal_sessions.sessions_of(
            self.control, containers, now, with_activity=with_activity
        )
        root = self._local_root() if any(c.backend == "local" for c in containers) else None
        if root is not None and tmux_available():
            found += [s for c in containers for s in self._sessions_of(c, root, now, with_activity)]
        if with_activity and found:
            self._prefer_hooks(found, now)
        return sorted(found, key=lambda s: s.created_at)

    def _prefer_hooks(self, found: list[SessionInfo], now: datetime) -> None:
        """Where Claude Code's hooks report (`workers/agent_hooks.py`), their fresh word wins
        over the pane's heuristic: one store query for the whole listing."""
        from parhelia.workers.agent_hooks import latest_activities

        hooks = latest_activities(self.control.store, {s.container_id for s in found}, now)
        for s in found:
            if s.container_id not in hooks:
                continue
            hook, age = hooks[s.container_id]
            chosen = merged(Activity(s.activity, s.activity_detail), hook, age)
            if chosen is hook:
                s.activity, s.activity_detail, s.activity_source = hook.kind, hook.detail, "hook"

    def activities(self, containers=None) -> dict[str, AgentState]:
        """What each agent (local or Modal) is doing, by container id: for the dashboard's AGENT
        column and its attention list (`state.agent_activity.activity_cell`, `attention_items`). Two tmux
        calls per container: run it in a worker thread, every few seconds, not per frame."""
        return {
            s.container_id: AgentState(
                s.container_id, s.id, Activity(s.activity, s.activity_detail)
            )
            for s in self.list(containers)
            if s.state != "ended"
        }

    def of_container(self, c, *, with_activity: bool = False) -> list[SessionInfo]:
        """One container's sessions: a single tmux call, for the dashboard's `a`."""
        if c.backend == "modal":
            from parhelia.workers import modal_sessions

            now = self.control.clock()
            return modal_sessions.sessions_of(self.control, [c], now, with_activity=with_activity)
        root = self._local_root()
        if root is None or not tmux_available():
            return []
        return self._sessions_of(c, root, self.control.clock(), with_activity)

    def _sessions_of(self, c, root: Path, now: datetime, with_activity: bool) -> list[SessionInfo]:
        if c.backend != "local" or not c.sandbox_id:
            return []
        socket = socket_path(root, c.sandbox_id)
        found = []
        for pane in read_sessions(socket):
            activity = (
                classify(capture(socket, pane.name), _since(now, pane.last_output), pane.dead)
                if with_activity
                else Activity("unknown", "")
            )
            found.append(SessionInfo.of_pane(c, pane, activity, now, socket=str(socket)))
        return found

    def get(self, ref: str) -> SessionInfo:
        """A session by its id, or by its container's or sandbox's id; E200 when there is none."""
        sessions = self.list(with_activity=False)
        match = [s for s in sessions if ref in (s.id, s.container_id, s.sandbox_id)]
        if not match:
            match = [s for s in sessions if s.id.startswith(ref)]
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise ParheliaError(
                "E101",
                f"{ref!r} names {len(match)} sessions: {', '.join(s.id for s in match)}",
                [f"parhelia session attach {match[0].id}", "parhelia session list"],
            )
        hint = "" if tmux_available() else " (tmux is not installed, so no agent runs in one)"
        raise ParheliaError(
            "E200",
            f"no running session {ref!r}{hint}",
            ["parhelia session list", "parhelia containers list", "parhelia containers logs ID"],
            attempted=f"find session {ref}",
        )

    def still_running(self, s: SessionInfo) -> bool:
        """Whether the session is there with its agent alive: after `tmux attach` returns, this
        tells a detach (the agent goes on) from the agent's end. A Modal sandbox is asked again
        (one exec, within the deadline); one that cannot tell counts as still running."""
        if s.backend != "modal":
            return any(p.name == s.id and not p.dead for p in read_sessions(Path(s.socket)))
        again = self.of_container(self.control.store.get_container(s.container_id))
        return any(x.id == s.id and x.state != "ended" for x in again)

    def attach_argv(self, ref: str) -> tuple[SessionInfo, list[str]]:
        s = self.get(ref)
        return s, session_argv(s)

    def kill(self, ref: str, *, actor: str = "user") -> SessionInfo:
        """Hang up the session's agent, as closing its terminal would (SIGHUP to the pane's
        process group: the agent and the shell that records its exit code, 129); the host then
        stops the session and the sandbox ends. `tmux kill-session` alone would signal only that
        shell, which waits for the agent."""
        s = self.get(ref)
        if s.backend == "modal":
            from parhelia.workers import modal_sessions

            self.control.owned_container(s.container_id)  # E401: never another plane's sandbox
            modal_sessions.kill(self.control, s)
            self._record_kill(s, actor)
            return s
        socket = Path(s.socket)
        shown = tmux(socket, "display-message", "-p", "-t", f"={s.id}:", "#{pane_pid}")
        pid = shown.stdout.strip()
        try:
            if not pid.isdigit():
                raise ProcessLookupError(shown.stderr.strip() or "no pane")
            os.killpg(int(pid), signal.SIGHUP)
            with contextlib.suppress(ProcessLookupError):  # the hang-up may have ended them all
                os.killpg(int(pid), signal.SIGCONT)  # a stopped agent acts on it once resumed
        except (ProcessLookupError, PermissionError) as exc:
            if read_sessions(socket):
                raise ParheliaError(
                    "E604",
                    f"could not stop the agent of session {s.id}: {exc}",
                    [f"parhelia containers terminate {s.container_id}", "parhelia session list"],
                    attempted=f"kill session {s.id}",
                ) from exc
        self._record_kill(s, actor)
        return s

    def _record_kill(self, s: SessionInfo, actor: str) -> None:
        with contextlib.suppress(ParheliaError):  # the kill happened; a busy store must not hide it
            self.control.store.add_event(
                EventType.SESSION_KILLED,
                f"session {s.id} of {s.container_id} killed by {actor}",
                source=EventSource.USER,
                actor=actor,
                container_id=s.container_id,
                task_id=s.task_id,
            )


def session_argv(s: SessionInfo) -> list[str]:
    """The argv that attaches this terminal to the session: tmux here, `modal shell` on Modal."""
    if s.backend == "modal":
        from parhelia.workers import modal_sessions

        return modal_sessions.attach_argv(s)
    return attach_argv(Path(s.socket), s.id)


def command_text(s: SessionInfo, argv: list[str]) -> str:
    """The attach command as a person would type it (`modal shell …` rather than python -m)."""
    if s.backend == "modal":
        from parhelia.workers import modal_sessions

        return modal_sessions.command_text(s)
    return " ".join(argv)


def attach_or_shell_argv(control, ref: str) -> tuple[list[str], str | None]:
    """For the dashboard's `a`: the argv that attaches to the container's agent session, with the
    session's id, when it has one; else a shell's argv and None."""
    c = control.store.get_container(ref)
    if c.backend == "modal" and c.state in ACTIVE_STATES:
        from parhelia.workers import modal_sessions

        found = modal_sessions.container_attach(c)
        if found is not None:
            return found
    elif c.state in ACTIVE_STATES and c.sandbox_id:
        for s in SessionService(control).of_container(c):
            if s.state != "ended":
                return session_argv(s), s.id
    return control.shell_argv(ref), None


def _since(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())
