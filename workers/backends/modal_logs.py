"""A Modal sandbox's agent output (its entrypoint's stdout and stderr), as `read_log` serves it.

Why it looks like this:
- The SDK offers output only as streams (`Sandbox.stdout` / `.stderr`: the command router's
  `SandboxStdioReadV2` for V2 sandboxes, the API's `SandboxGetLogs` with its entry-id cursor for
  V1 ones), each read from its start, and a stream stays open while the sandbox runs. So each
  sandbox whose log is asked for gets one `SandboxOutput`: both streams are iterated on daemon
  threads (the blocking SDK, never `.aio`) into one merged buffer, and a read is a slice of it
  from a byte offset, so a follower resumes where it was without reopening anything.
- Bounded: only the last `keep_bytes` of the merged output are kept (Modal itself keeps only
  the most recent part of a V2 sandbox's output); a read from before them says what was cut.
- Neither stream says "this is all there is for now", so a first read waits until both streams
  ended, or output came and then `quiet` seconds passed without more, or `first_wait` at most
  (a silent agent); later reads answer at once with what has arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from parhelia.workers.backends.base import LOG_READ_LIMIT, LogChunk

KEEP_BYTES = 2 * LOG_READ_LIMIT  # the tail of the merged output kept per sandbox
QUIET_SECONDS = 0.25  # a first read ends after output stopped arriving for this long


def utf8_cut(data: bytes) -> int:
    """Where to cut `data` (at most its length) so no UTF-8 character is split."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): is its character complete?
            need = (
                1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            )
            return end if back >= need else end - back
    return end


class SandboxOutput:
    """One sandbox's stdout and stderr, merged in arrival order, read on two daemon threads."""

    def __init__(self, sandbox: Any, *, keep_bytes: int = KEEP_BYTES) -> None:
        self.sandbox = sandbox
        self.keep_bytes = keep_bytes
        self._buf = bytearray()
        self._base = 0  # offset of _buf[0] in the merged output
        self._cond = threading.Condition()
        self._open = 2  # streams not yet at their end
        self._error: BaseException | None = None
        self._last_data: float | None = None
        self._settled = False
        self._stopped = False
        for name in ("stdout", "stderr"):
            reader = getattr(sandbox, name)
            threading.Thread(
                target=self._pump,
                args=(reader,),
                name=f"parhelia-modal-{name}-{sandbox.object_id}",
                daemon=True,
            ).start()

    @property
    def ended(self) -> bool:
        """Both streams reached their end: the sandbox has ended and all its output is here."""
        with self._cond:
            return self._open == 0 and self._error is None

    @property
    def failed(self) -> bool:
        with self._cond:
            return self._error is not None

    def stop(self) -> None:
        """Stop keeping output (a reader still waiting on a silent stream ends at its next line)."""
        with self._cond:
            self._stopped = True
            self._buf.clear()

    def _pump(self, reader: Iterable[str]) -> None:
        try:
            for text in reader:
                with self._cond:
                    if self._stopped:
                        return
                    self._append(text.encode("utf-8"))
        except BaseException as exc:  # handed to the next read
            with self._cond:
                self._error = self._error or exc
        finally:
            with self._cond:
                self._open -= 1
                self._cond.notify_all()

    def _append(self, data: bytes) -> None:
        self._buf += data
        self._last_data = time.monotonic()
        excess = len(self._buf) - self.keep_bytes
        if excess > 0:
            del self._buf[:excess]
            self._base += excess
        self._cond.notify_all()

    def settle(self, first_wait: float, quiet: float = QUIET_SECONDS) -> None:
        """On the first read only: wait until what has arrived is likely all there is for now."""
        with self._cond:
            if self._settled:
                return
            deadline = time.monotonic() + first_wait
            while self._open and self._error is None:
                now = time.monotonic()
                until = (
                    deadline if self._last_data is None else min(deadline, self._last_data + quiet)
                )
                if now >= until:
                    break
                self._cond.wait(until - now)
            self._settled = True

    def read(self, offset: int) -> LogChunk:
        """Up to `LOG_READ_LIMIT` bytes from `offset`; raises what a stream failed with."""
        with self._cond:
            if self._error is not None:
                raise self._error
            end = self._base + len(self._buf)
            start = min(max(offset, self._base), end)
            data = bytes(self._buf[start - self._base : start - self._base + LOG_READ_LIMIT])
            if start + len(data) < end:
                data = data[: utf8_cut(data)]
            ended = self._open == 0 and start + len(data) >= end
        text = data.decode("utf-8", "replace")
        if start > offset:
            text = f"[… {start - offset} earlier bytes of output were not kept …]\n{text}"
        return LogChunk(text, start, start + len(data), ended)
