"""The supervisor: the group leader of every local sandbox, run as `python -m` around its agent.

`LocalBackend.create` starts it in a new session; it starts the agent as its child, enforces the
deadline even when no Parhelia process is running (SIGTERM, then SIGKILL after the grace, exit code
124 as Modal reports a timed-out sandbox), writes the agent's exit code to the exit file, and stops
whatever the agent left behind in its group. Without it a finished sandbox's exit code would be
unknowable (only a parent can wait for a process) and a forgotten one would run forever.

It runs once per sandbox, so it imports only the standard library, psutil and `state.timeutil`:
not the backend, nor the database layer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from parhelia.state.timeutil import utcnow

SUPERVISOR_MODULE = "parhelia.workers.backends.local_supervisor"  # launched as `python -m` this
TIMEOUT_EXIT = 124  # as Modal reports a timed-out sandbox


def shell_exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell reports it: 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def write_json_atomic(path: Path, data: dict) -> None:
    """Write-then-rename, so a reader in another process never sees half an entry."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def process_status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_DEAD


def _group_members(pgid: int, exclude: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.pid != exclude
                and os.getpgid(proc.pid) == pgid
                and process_status(proc) != psutil.STATUS_ZOMBIE
            ):
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def _stop_group(grace: float) -> None:
    """SIGTERM every other process of this group, SIGKILL what is left after the grace."""
    members = _group_members(os.getpgid(0), os.getpid())
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
    _, alive = psutil.wait_procs(members, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=1.0)


def supervise(exit_file: Path, deadline: float, grace: float, agent_argv: list[str]) -> int:
    """Run the agent to its end or its deadline, record its exit code, and leave nothing behind."""
    # the group's SIGTERM reaches the agent; the supervisor stays to record how it ended
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        agent = subprocess.Popen(agent_argv)
    except OSError as exc:
        print(f"[parhelia] cannot start the agent: {exc}", flush=True)
        code, reason = 127, "start_failed"
    else:
        try:
            code = shell_exit_code(
                agent.wait(timeout=max(0.0, deadline - time.time())) if deadline else agent.wait()
            )
            reason = "exited"
        except subprocess.TimeoutExpired:
            print(f"[parhelia] timeout reached; stopping the agent (grace {grace:g}s)", flush=True)
            _stop_group(grace)
            agent.wait()
            code, reason = TIMEOUT_EXIT, "timeout"
    print(f"[parhelia] agent ended ({reason}), exit code {code}", flush=True)
    write_json_atomic(
        exit_file, {"exit_code": code, "reason": reason, "ended_at": utcnow().isoformat()}
    )
    _stop_group(grace)
    return code


def _main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}")
    parser.add_argument("--exit-file", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=0.0, help="epoch seconds; 0: none")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("agent", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    agent = options.agent[1:] if options.agent[:1] == ["--"] else options.agent
    if not agent:
        parser.error("no agent command after --")
    return supervise(options.exit_file, options.deadline, options.grace, agent)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
