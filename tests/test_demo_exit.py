"""The dashboard never leaves agents running unseen: when its terminal goes away, with or without a
SIGHUP, it exits and a demo stops every agent it started (the real `parhelia tui --demo` in a
pseudo-terminal)."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil

PARHELIA = str(Path(sys.executable).with_name("parhelia"))


def start_demo(tmp_path: Path) -> tuple[subprocess.Popen, int, list[psutil.Process]]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARHELIA_")}
    env.update(
        TERM="xterm-256color",
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    proc = subprocess.Popen(
        [PARHELIA, "tui", "--demo"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=tmp_path,
        start_new_session=True,  # no controlling terminal: closing it sends no SIGHUP
    )
    os.close(slave)
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    agents: list[psutil.Process] = []
    while time.monotonic() < deadline:
        agents = [p for p in me.children(recursive=True) if "agent_sim" in _command(p)]
        if len(agents) >= 5:
            break
        time.sleep(0.2)
    assert len(agents) >= 5, "the demo did not start its agents"
    return proc, master, [me, *me.children(recursive=True)]


def _command(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie, meanwhile
        return ""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def assert_all_gone(procs: list[psutil.Process], timeout: float = 60) -> None:
    """Every process exits; the bound is for a loaded 2-core machine running two test workers
    (the dashboard's orderly stop of five agents took over 20 s there), not a speed claim."""
    deadline = time.monotonic() + timeout
    while (running := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in running:
        p.kill()
    assert not running, [_command(p) for p in running]


def _running(p: psutil.Process) -> bool:
    """Not exited (an exited process nobody has reaped yet is a zombie, not running)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_closed_terminal_without_a_signal_stops_the_dashboard_and_its_agents(tmp_path):
    proc, master, procs = start_demo(tmp_path)
    os.close(master)  # the terminal hangs up, as when a tmux server is killed
    assert_all_gone(procs)
    proc.wait(5)


def test_sighup_stops_the_dashboard_and_its_agents(tmp_path):
    proc, master, procs = start_demo(tmp_path)
    try:
        proc.send_signal(signal.SIGHUP)
        assert_all_gone(procs)
        proc.wait(5)
    finally:
        os.close(master)


def test_a_killed_demo_leaves_no_agent_running(tmp_path):
    """SIGKILL gives the dashboard no chance to clean up; its agents see it gone and stop."""
    proc, master, procs = start_demo(tmp_path)
    try:
        proc.kill()
        proc.wait(5)
        assert_all_gone(procs[1:])
    finally:
        os.close(master)
