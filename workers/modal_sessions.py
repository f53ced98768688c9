"""Agent sessions in Modal sandboxes: list, read, attach and kill the tmux session the sandbox's
entrypoint (`sandbox_session.py`) runs the agent in.

Why it looks like this:
- Everything is asked of tmux inside the sandbox through the SDK's `Sandbox.exec`, one POSIX sh
  script per sandbox and call (`list-sessions`, then `capture-pane` of each session when the
  activity is wanted): each exec costs several round trips, so one per sandbox, not one per tmux
  command. Ages are taken on the sandbox's own clock (its `date +%s`), so a skewed local clock
  does not make a session old or new.
- Every read has a deadline (`[modal] timeout_seconds`); the SDK's calls cannot be cancelled, so
  each sandbox is read on a daemon thread and abandoned at the deadline, and a sandbox whose
  previous read still hangs is not asked again (E501 at once): a workspace that never answers
  costs one thread per sandbox, never a frozen list.
- A sandbox that does not answer still lists its session: the store has it from the sandbox's
  `parhelia_session` tag. It shows as state and activity `unknown` with the error's code and
  reason, never as "no session" (`ended`/`exited` when Modal says the sandbox has ended, E205).
- Attach is `modal shell SANDBOX --cmd "tmux -L parhelia attach -t =NAME"` (modal 1.6 opens a
  PTY exec in a running sandbox by its id), run with this interpreter's SDK. Kill hangs up the
  pane's process group, as the local kill does: the agent ends 129 and so does the sandbox.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from parhelia.state.agent_activity import EXITED, UNKNOWN, Activity, classify
from parhelia.state.errors import ParheliaError
from parhelia.workers.sandbox_session import SOCKET_NAME, TAG_SESSION, attach_command
from parhelia.workers.sessions import (
    _LIST_FORMAT,
    SESSION_PREFIX,
    PaneState,
    SessionInfo,
    _epoch,
    _since,
)

BACKEND = "modal"
READ_CONCURRENCY = 16  # sandboxes read at once
KILL_WAIT_SECONDS = 5  # how long the kill script waits for the agent to go before kill-session

# $1: 1 to capture each session's screen; $2: list-sessions' format. Prints `now EPOCH`, a
# `S<TAB>fields` line per session and its screen as `|line` lines; `notmux` without tmux.
READ_SCRIPT = rf"""
command -v tmux >/dev/null 2>&1 || {{ echo notmux; exit 0; }}
echo "now $(date +%s 2>/dev/null)"
tab=$(printf '\t')
tmux -L {SOCKET_NAME} list-sessions -F "$2" 2>/dev/null | while IFS= read -r line; do
  printf 'S\t%s\n' "$line"
  name=${{line%%"$tab"*}}
  case "$name" in {SESSION_PREFIX}*) ;; *) continue;; esac
  [ "$1" = 1 ] || continue
  tmux -L {SOCKET_NAME} capture-pane -p -t "=$name:" 2>/dev/null |
    while IFS= read -r l; do printf '|%s\n' "$l"; done
done
exit 0
"""

# $1: the session. Exit 3: no such session. The hangup ends the agent, the entrypoint then ends
# the sandbox, and this exec with it: so the script answers at once, and the last resort for an
# agent that ignores the hangup (`kill-session`) waits in the background.
KILL_SCRIPT = rf"""
pid=$(tmux -L {SOCKET_NAME} display-message -p -t "=$1:" '#{{pane_pid}}' 2>/dev/null)
case "$pid" in ''|*[!0-9]*) echo "no session $1" >&2; exit 3;; esac
kill -HUP -"$pid" || exit 4
kill -CONT -"$pid" 2>/dev/null
( sleep {KILL_WAIT_SECONDS}; tmux -L {SOCKET_NAME} kill-session -t "=$1" ) </dev/null >/dev/null 2>&1 &
exit 0
"""


@dataclass
class SandboxRead:
    """What one sandbox's tmux said: its sessions, their screens, and the sandbox's clock."""

    panes: list[PaneState] = field(default_factory=list)
    screens: dict[str, str] = field(default_factory=dict)
    now: datetime | None = None
    has_tmux: bool = True


def parse_read(text: str) -> SandboxRead:
    read = SandboxRead()
    current: str | None = None
    for line in text.splitlines():
        if line == "notmux":
            read.has_tmux = False
        elif line.startswith("now "):
            read.now = _epoch(line[4:])
        elif line.startswith("S\t"):
            parts = line[2:].split("\t")
            current = None
            if len(parts) != 5 or not parts[0].startswith(SESSION_PREFIX):
                continue
            name, attached, created, activity, dead = parts
            read.panes.append(
                PaneState(
                    name=name,
                    attached=int(attached) if attached.isdigit() else 0,
                    created=_epoch(created) or datetime.now(UTC),
                    last_output=_epoch(activity),
                    dead=dead == "1",
                )
            )
            current = name
            read.screens[name] = ""
        elif line.startswith("|") and current is not None:
            read.screens[current] += line[1:] + "\n"
    return read


def _modal(control):
    backend = control.backend_for(BACKEND)
    return getattr(backend, "inner", backend)  # the SDK calls; the deadline is kept here


def _timeout(control) -> float:
    return float(control.settings.modal.timeout_seconds)


# -- reads with a deadline ----------------------------------------------------------------------

_reading: dict[str, threading.Event] = {}  # sandbox id -> its read in flight (across calls)
_reading_lock = threading.Lock()


def _late(sandbox_id: str, timeout: float, why: str) -> ParheliaError:
    return ParheliaError(
        "E501",
        f"the Modal sandbox {sandbox_id} did not answer within {timeout:g} s ({why})",
        [
            "parhelia session list",
            f"modal shell {sandbox_id}",
            "PARHELIA_MODAL_TIMEOUT_SECONDS=30 parhelia session list",
        ],
        attempted=f"read the sessions of {sandbox_id}",
    )


def read_sandboxes(
    control, sandbox_ids: list[str], *, with_activity: bool
) -> dict[str, SandboxRead | ParheliaError]:
    """Each sandbox's sessions, or the error that kept them from being read, within one deadline
    for all (`READ_CONCURRENCY` sandboxes at a time; those not read by then are E501)."""
    if not sandbox_ids:
        return {}
    try:
        backend, timeout = _modal(control), _timeout(control)
    except ParheliaError as exc:  # no Modal to ask: every session is unknown, for this reason
        return dict.fromkeys(sandbox_ids, exc)
    results: dict[str, SandboxRead | ParheliaError] = {}
    gate = threading.Semaphore(READ_CONCURRENCY)
    started: list[tuple[str, threading.Event]] = []

    def read(sandbox_id: str, done: threading.Event) -> None:
        try:
            with gate:
                out, _ = backend.exec_script(
                    sandbox_id,
                    READ_SCRIPT,
                    "1" if with_activity else "0",
                    _LIST_FORMAT,
                    attempted=f"read the sessions of the Modal sandbox {sandbox_id}",
                )
            results[sandbox_id] = parse_read(out)
        except ParheliaError as exc:
            results[sandbox_id] = _kept(exc)
        except Exception as exc:  # a bug or an SDK surprise: shown on the row, never raised
            results[sandbox_id] = _kept(ParheliaError("E503", f"{type(exc).__name__}: {exc}"))
        finally:
            done.set()
            with _reading_lock:  # kept only while in flight: 10,000 sandboxes read in turns
                if _reading.get(sandbox_id) is done:  # each left an Event behind for good
                    del _reading[sandbox_id]

    for sid in dict.fromkeys(sandbox_ids):
        with _reading_lock:
            running = _reading.get(sid)
            if running is not None and not running.is_set():
                results[sid] = _late(sid, timeout, "an earlier read has not returned yet")
                continue
            done = _reading[sid] = threading.Event()
        threading.Thread(
            target=read, args=(sid, done), name=f"parhelia-modal-session-{sid}", daemon=True
        ).start()
        started.append((sid, done))
    end = time.monotonic() + timeout
    for sid, done in started:
        if not done.wait(max(0.0, end - time.monotonic())):
            results.setdefault(
                sid, _late(sid, timeout, "abandoned; it may still finish on its own")
            )
    return {sid: results[sid] for sid in dict.fromkeys(sandbox_ids) if sid in results}


def _kept(exc: ParheliaError) -> ParheliaError:
    """`exc` without its traceback and the exceptions it was raised from: a row keeps only its
    words, and the frames made a cycle for the collector (every few seconds, 64 sandboxes'
    worth, while Modal was unreachable under a dashboard)."""
    exc.__traceback__ = exc.__cause__ = exc.__context__ = None
    return exc


# -- sessions joined with the store -------------------------------------------------------------


def sessions_of(control, containers, now: datetime, *, with_activity: bool) -> list[SessionInfo]:
    """The sessions of these Modal containers (running ones with a sandbox): one row per tmux
    session, or one `unknown` row with the error for a sandbox that did not answer."""
    rows = [c for c in containers if c.backend == BACKEND and c.sandbox_id]
    if not rows:
        return []
    reads = read_sandboxes(control, [c.sandbox_id for c in rows], with_activity=with_activity)
    found: list[SessionInfo] = []
    for c in rows:
        read = reads.get(c.sandbox_id)
        if isinstance(read, SandboxRead):
            found += [_info(c, pane, read, now, with_activity) for pane in read.panes]
        elif read is not None:
            found.append(_unknown(c, read, now))
    return found


def _info(c, pane: PaneState, read: SandboxRead, now: datetime, with_activity: bool) -> SessionInfo:
    clock = read.now or now  # the sandbox's own clock when it told it
    activity = (
        classify(read.screens.get(pane.name, ""), _since(clock, pane.last_output), pane.dead)
        if with_activity
        else Activity(UNKNOWN, "")
    )
    return SessionInfo.of_pane(c, pane, activity, clock)


def _unknown(c, err: ParheliaError, now: datetime) -> SessionInfo:
    """The session the store knows of, whose sandbox did not answer: unknown, with the reason."""
    name = (c.tags or {}).get(TAG_SESSION) or f"{SESSION_PREFIX}{c.task_id or c.id}-unknown"
    created = _stamp(name) or _aware(c.created_at) or now
    reason = f"{err.code}: {err.message}"
    ended = err.code == "E205"  # Modal says the sandbox has ended (or is gone): so is the session
    return SessionInfo(
        id=name,
        container_id=c.id,
        task_id=c.task_id,
        backend=BACKEND,
        sandbox_id=c.sandbox_id,
        state="ended" if ended else UNKNOWN,
        container_state=c.state,
        attached_clients=0,
        created_at=created,
        age_seconds=max(0.0, (now - created).total_seconds()),
        activity=EXITED if ended else UNKNOWN,
        activity_detail=reason,
        attach_command=f"parhelia session attach {name}",
        error=reason,
    )


def _stamp(name: str) -> datetime | None:
    """The creation time a session's name carries (`ph-<task>-YYYYMMDDTHHMMSS`, UTC)."""
    try:
        return datetime.strptime(name.rsplit("-", 1)[-1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- attach and kill ----------------------------------------------------------------------------


def command_text(s: SessionInfo) -> str:
    """What a person types to attach without parhelia: `modal shell sb-… --cmd "tmux … attach …"`."""
    return shlex.join(attach_command(s.sandbox_id, s.id))


def attach_argv(s: SessionInfo) -> list[str]:
    """`modal shell` through this interpreter's SDK (the one Parhelia talks to Modal with), so it
    works without the venv's bin on PATH. E601 when the sandbox did not answer the listing or
    has ended."""
    if s.state in (UNKNOWN, "ended"):
        why = "has ended" if s.state == "ended" else "did not answer"
        raise ParheliaError(
            "E601",
            f"could not attach to {s.id}: its sandbox {s.sandbox_id} {why} ({s.error or 'its agent exited'})",
            [
                f"parhelia containers show {s.container_id}",
                "parhelia reconciler run",
                command_text(s),
                f"parhelia containers logs {s.container_id}",
            ],
            attempted=f"attach to session {s.id}",
        )
    return _modal_shell(s.sandbox_id, s.id)


def _modal_shell(sandbox_id: str, name: str) -> list[str]:
    return [sys.executable, "-m", "modal", *attach_command(sandbox_id, name)[1:]]


def container_attach(c) -> tuple[list[str], str] | None:
    """For the dashboard's `a`: the session the container's tags name (argv and id), attached as
    `session attach` does, without reading the sandbox first (the dashboard's thread must not
    wait on Modal); None when no session is known (a bare shell then)."""
    name = (c.tags or {}).get(TAG_SESSION)
    if not name or not c.sandbox_id:
        return None
    return _modal_shell(c.sandbox_id, name), name


def kill(control, s: SessionInfo) -> None:
    """Hang up the agent of the session (SIGHUP to the pane's process group; `tmux kill-session`
    KILL_WAIT_SECONDS later if it is still there); the entrypoint then ends and the sandbox with
    it. E200 when the session is gone, E604 when the hangup could not be sent, E501 past the
    deadline."""
    backend, timeout = _modal(control), _timeout(control)
    attempted = f"kill session {s.id} in the Modal sandbox {s.sandbox_id}"
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = backend.exec_script(s.sandbox_id, KILL_SCRIPT, s.id, attempted=attempted)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"parhelia-modal-kill-{s.id}", daemon=True).start()
    if not done.wait(timeout):
        raise _late(s.sandbox_id, timeout, "the kill was abandoned; it may still happen")
    if "error" in box:
        raise box["error"]
    _, code = box["value"]
    if code == 3:
        raise ParheliaError(
            "E200",
            f"no running session {s.id} in {s.sandbox_id} (it has ended)",
            ["parhelia session list", f"parhelia containers show {s.container_id}"],
            attempted=attempted,
        )
    if code != 0:
        raise ParheliaError(
            "E604",
            f"could not hang up the agent of session {s.id} (kill script exited {code})",
            [f"parhelia containers terminate {s.container_id}", "parhelia session list"],
            attempted=attempted,
        )
