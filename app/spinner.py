"""A spinner on stderr while a one-shot command waits on a backend, only on a terminal: a slow or
unreachable cloud shows it is being waited on, and pipes and scripts get no control codes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def waiting(message: str) -> Iterator[None]:
    stream = sys.stderr
    if stream is None or not stream.isatty():
        yield
        return
    from rich.console import Console

    with Console(file=stream).status(message, spinner="dots"):
        yield
