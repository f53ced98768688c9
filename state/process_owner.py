"""Who a lease holder is as a process: host, pid and the process's start time.

A pid alone is reused; a pid with its start time names one process for good. A holder on this host
whose process is gone (or whose pid now belongs to a later process) holds nothing: its lease is
taken over at once instead of after `lease_seconds`. On another host nothing can be known, so such
a holder is trusted until its lease expires.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

# psutil loads where a process is asked about: a read command that meets no lease holder on this
# host never imports it (bench/cli.py).
START_TOLERANCE = 1.0  # seconds; psutil's start time is derived from boot time and clock ticks


@dataclass(frozen=True)
class ProcessOwner:
    host: str
    pid: int
    started: float  # epoch seconds, psutil.Process.create_time()


def this_process() -> ProcessOwner:
    import psutil

    pid = os.getpid()
    return ProcessOwner(socket.gethostname(), pid, psutil.Process(pid).create_time())


def is_gone(host: str | None, pid: int | None, started: float | None) -> bool:
    """True only when `host` is this host and that process no longer runs."""
    if not host or pid is None or started is None or host != socket.gethostname():
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return True
        return abs(proc.create_time() - started) > START_TOLERANCE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.Error:  # no access: it runs, as someone else
        return False
