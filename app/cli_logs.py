"""`parhelia containers logs ID [--follow]`: a container's agent output, as `docker logs` shows it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from parhelia.state.enums import ACTIVE_STATES
from parhelia.state.errors import ParheliaError
from parhelia.workers.backends.base import LogChunk

FOLLOW_POLL_SECONDS = 0.5


def follow_log(
    read: Callable[[int], tuple[object, LogChunk]],
    write: Callable[[str], None],
    *,
    follow: bool,
    stop: threading.Event | None = None,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
) -> int:
    """Write the output from the start; with `follow`, keep reading until the container has
    ended and nothing more comes (or `stop`). Returns the offset reached."""
    stop = stop or threading.Event()
    offset = 0
    while True:
        row, chunk = read(offset)
        if chunk.text:
            write(chunk.text)
        offset = chunk.next_offset
        if chunk.next_offset > chunk.offset:
            continue  # more may be waiting beyond one read
        if not follow or chunk.ended or getattr(row, "state", None) not in ACTIVE_STATES:
            return offset
        if stop.wait(poll_seconds):
            return offset


def logs_command(rt, ref: str, *, follow: bool) -> None:
    from parhelia.app import output

    if follow and rt.json_out:
        raise ParheliaError(
            "E101",
            "--follow streams text; with --json the output is one document",
            [f"parhelia containers logs {ref} --json", f"parhelia containers logs {ref} --follow"],
        )
    if rt.json_out:
        row, chunk = rt.control.container_logs(ref)
        output.success(
            {"container_id": row.id, "text": chunk.text, "next_offset": chunk.next_offset},
            json_out=True,
        )
        return

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    follow_log(lambda offset: rt.control.container_logs(ref, offset), write, follow=follow)
