"""What a sandbox's exit code says, in words: `exited 127: agent not found`, never "terminated
externally" when the backend told us how it ended."""

from __future__ import annotations

# Shell and signal conventions (128 + N is "killed by signal N"), and the timeout(1) code.
MEANINGS = {
    0: "finished",
    1: "agent failed",
    2: "agent misused (bad arguments)",
    124: "timed out",
    126: "agent not executable",
    127: "agent not found",
    130: "interrupted (SIGINT)",
    137: "killed (SIGKILL, or out of memory)",
    143: "terminated (SIGTERM)",
}


def exit_text(code: int | None) -> str | None:
    """`exited 127: agent not found`; `exited 3`; None without a code."""
    if code is None:
        return None
    meaning = MEANINGS.get(code)
    if meaning is None and code > 128:
        meaning = f"killed by signal {code - 128}"
    elif meaning is None and code < 0:  # Popen's way of saying "killed by signal -code"
        meaning = f"killed by signal {-code}"
    return f"exited {code}: {meaning}" if meaning else f"exited {code}"
