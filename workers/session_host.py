"""The session host: runs a local agent inside its own tmux session and reports how it ended.

The local backend's supervisor starts this program as "the agent" (`python -m
parhelia.workers.session_host --socket S --name N -- AGENT...`), so the supervisor's rules
(deadline, exit file, group cleanup) stay as they are. Why it looks like this:

- One tmux server per sandbox (`tmux -D -S <socket> -f /dev/null`), run in the foreground as this
  program's child: it inherits the agent's environment (a new pane takes the server's environment,
  so no secret is ever put on a command line), the user's tmux and its config are never touched,
  and the server is in the sandbox's process tree (the probe measures it).
- The server runs in its own process group, so the sandbox's SIGTERM reaches this host, which
  passes it to the agent's group: the agent ends with 143 as it did without tmux. The server dies
  with this host (PR_SET_PDEATHSIG), and the agent with the server (`setpriv --pdeathsig`): a host
  killed by the terminate's SIGKILL leaves no tmux session and no agent behind.
- The pane runs a small shell that runs the agent and writes its exit status to a file; the host
  waits for that shell, reads the status, and stops the server. The pane's output goes through
  `pipe-pane` into a FIFO this host reads and writes to its stdout, the sandbox's `agent.log`,
  with the terminal's CR LF turned back into LF; the host is the log's only writer, so the
  agent's last line comes before "[parhelia] agent ended".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the host itself: a read of the agents imports this module's names
    import psutil

HOST_MODULE = "parhelia.workers.session_host"
TMUX = "tmux"
WIDTH, HEIGHT = 200, 50  # a detached session's size; an attached client resizes it
START_SECONDS = 10.0  # for the server's socket to appear on a loaded machine
DRAIN_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
PANE_MARK = "parhelia-pane"  # the pane shell's $0: how `sessions.agent_processes` finds the agent
PANE_SCRIPT = 'code="$1"; shift; trap : TERM HUP INT; "$@"; echo $? > "$code"'


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the kernel SIGKILLs this process when its parent (the host) dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def tmux_base(socket: Path) -> list[str]:
    return [TMUX, "-S", str(socket)]


def pane_argv(agent: list[str], code_file: Path) -> list[str]:
    """The pane's command: a shell that runs the agent and writes its exit status to `code_file`
    (tmux's own `pane_dead_status` was measured to miss one fast exit in six). Its traps keep it
    alive to write the status when the group gets SIGTERM or SIGHUP; the agent, run after the
    traps are set, keeps the default actions. Both die with their parent (setpriv), so neither
    outlives the tmux server."""
    guard = [shutil.which("setpriv") or "", "--pdeathsig", "KILL", "--"]
    guard = guard if guard[0] else []
    return [*guard, "sh", "-c", PANE_SCRIPT, PANE_MARK, str(code_file), *guard, *agent]


class CRLF:
    """Terminal output back to log lines: CR LF -> LF, a CR split across reads held back."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        if data.endswith(b"\r"):
            data, self._held = data[:-1], b"\r"
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


class Host:
    def __init__(self, socket: Path, name: str, agent: list[str], out=None) -> None:
        self.socket = socket
        self.name = name
        self.agent = agent
        self.out = out or sys.stdout.buffer
        self.fifo = Path(f"{socket}.out")
        self.code_file = Path(f"{socket}.exit")
        self.crlf = CRLF()
        self.pane_pid: int | None = None
        self.stopping = False

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*tmux_base(self.socket), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def say(self, text: str) -> None:
        self.out.write(f"[parhelia] {text}\n".encode())
        self.out.flush()

    def on_term(self, *_: object) -> None:
        """The sandbox is being stopped: the agent gets the SIGTERM (and a SIGCONT if it is stopped)."""
        self.stopping = True
        if self.pane_pid is not None:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pane_pid, sig)

    def pump(self, fd: int) -> bool:
        """Copy what the pane printed to the log; False at the FIFO's end."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.out.write(self.crlf.feed(data))
        self.out.flush()
        return True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGHUP, self.on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for stale in (self.fifo, self.socket, self.code_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        os.mkfifo(self.fifo, 0o600)
        rfd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # no EOF before the pipe-pane opens
        env = {**os.environ, "PARHELIA_SESSION_ID": self.name}
        env.pop("TMUX", None)
        try:
            server = subprocess.Popen(
                [*tmux_base(self.socket), "-D", "-f", os.devnull],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as exc:
            self.say(f"cannot start tmux: {exc}")
            return 127
        try:
            return self._run(server, rfd, keep)
        finally:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.tmux("kill-server", check=False)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=DRAIN_SECONDS)
            if server.poll() is None:
                server.kill()
                server.wait()
            os.close(rfd)
            for path in (self.fifo, self.socket, self.code_file):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _failed_start(self) -> int:
        """A session that never started: 143 when a terminate (SIGTERM) stopped it on the way,
        as the agent itself would have answered; else 127, as a shell says of a missing program."""
        return 128 + signal.SIGTERM if self.stopping else 127

    def _run(self, server: subprocess.Popen, rfd: int, keep: int) -> int:
        deadline = time.monotonic() + START_SECONDS
        while not self.socket.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                self.say(f"tmux server did not start (socket {self.socket})")
                os.close(keep)
                return self._failed_start()
            time.sleep(0.01)
        started = self.tmux(
            "set-option", "-g", "remain-on-exit", "on", ";",  # its output is read to the end
            "set-option", "-g", "history-limit", "20000", ";",
            "new-session", "-d", "-s", self.name, "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", os.getcwd(), "--", *pane_argv(self.agent, self.code_file), ";",
            "pipe-pane", "-t", self.name, f"exec cat >> {shlex.quote(str(self.fifo))}", ";",
            "display-message", "-p", "-t", self.name, "#{pane_pid}",
            check=False,
        )  # fmt: skip
        if started.returncode != 0 or not started.stdout.strip().isdigit():
            self.say(f"cannot start the agent in tmux: {started.stderr.strip()}")
            os.close(keep)
            return self._failed_start()
        self.pane_pid = int(started.stdout.split()[-1])
        if self.stopping:  # a SIGTERM that came while the session was starting
            self.on_term()
        import psutil

        try:
            shell: psutil.Process | None = psutil.Process(self.pane_pid)
        except psutil.NoSuchProcess:
            shell = None  # a very fast agent: it has ended already
        ended = _exit_fd(self.pane_pid) if shell is not None else None  # readable at its exit
        waits = [rfd] if ended is None else [rfd, ended]
        while shell is not None and _alive(shell):
            ready, _, _ = select.select(waits, [], [], 0.5 if ended is not None else 0.05)
            if rfd in ready:
                self.pump(rfd)
        if ended is not None:
            os.close(ended)
        self._settle(rfd)
        code = self._recorded_code()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.tmux("kill-server", check=False)  # closes the pipe-pane: the FIFO ends
        os.close(keep)
        self._drain(rfd)
        if code is None:  # the pane's shell was killed outright: said, so a 137 is explained
            self.say(f"the agent's shell recorded no exit status ({self._code_text()}); 137")
            return 137
        return code

    def _settle(self, rfd: int) -> None:
        """Wait until tmux has read the pane to its end (`pane_dead`: the terminal's EOF comes
        after the last output), then one more round trip so what it read has been passed to the
        pipe: stopping the server before would lose the agent's last lines."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            shown = self.tmux(
                "display-message", "-p", "-t", f"={self.name}:", "#{pane_dead}", check=False
            )
            if shown.returncode != 0 or shown.stdout.strip() == "1":
                break
            ready, _, _ = select.select([rfd], [], [], 0.01)
            if ready:
                self.pump(rfd)
        self.tmux("display-message", "-p", "", check=False)

    def _recorded_code(self) -> int | None:
        text = self._code_text()
        return int(text) if text.lstrip("-").isdigit() else None

    def _code_text(self) -> str:
        """What the pane's shell wrote to the status file ("no file" when it wrote none)."""
        try:
            return self.code_file.read_text().strip() or "empty file"
        except OSError:
            return "no file"

    def _drain(self, rfd: int) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([rfd], [], [], 0.1)
            if ready and not self.pump(rfd):
                break
        self.out.write(self.crlf.flush())
        self.out.flush()


def _exit_fd(pid: int) -> int | None:
    """A pidfd, readable once the process has exited; None where the OS has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _alive(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {HOST_MODULE}")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("agent", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    agent = ns.agent[1:] if ns.agent[:1] == ["--"] else ns.agent
    if not agent:
        parser.error("no agent command after --")
    return Host(ns.socket, ns.name, agent).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
