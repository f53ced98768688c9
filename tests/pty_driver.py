"""Drive the real `parhelia` CLI through a pseudo-terminal: what a person at a terminal sees.

`Session.expect(text)` reads until `text` appears (with a deadline), `send(line)` types a line.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

DEADLINE = 60.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Session:
    def __init__(self, args: list[str], env: dict[str, str], cwd=None, argv=None) -> None:
        """`parhelia ARGS` (or any `argv`) with a terminal for stdin, stdout and stderr."""
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "parhelia.app", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": env.get("TERM", "xterm"), "COLUMNS": "200"},
            cwd=cwd,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.raw += chunk
        return True

    def expect(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while text not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; got:\n{self.text}")
            if not self._read(0.2) and text not in self.text:
                raise AssertionError(f"{text!r} never appeared before exit; got:\n{self.text}")
        return self.text

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self) -> tuple[int, str]:
        deadline = time.monotonic() + DEADLINE
        while self._read(0.2):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"did not finish; got:\n{self.text}")
        code = self.proc.wait(timeout=DEADLINE)
        os.close(self.master)
        return code, self.text


def run(args: list[str], env: dict[str, str], answers=(), cwd=None) -> tuple[int, str]:
    """Run ARGS on a terminal, answering each (expected text, typed line) in turn."""
    s = Session(args, env, cwd=cwd)
    for expected, line in answers:
        s.expect(expected)
        s.send(line)
    return s.finish()
