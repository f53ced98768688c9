"""A spinner on stderr while a one-shot command waits on a backend, only on a terminal: a slow or
unreachable cloud shows it is being waited on, and pipes and scripts get no control codes.

Nothing for the first `feedback.QUIET_S` (SPEC-20: under 100 ms nothing): a quick answer is not
decorated, and does not pay for importing Rich and starting its live display, which cost
`parhelia status` on a terminal 50-100 ms (bench/cli.py measures without one)."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def waiting(message: str) -> Iterator[None]:
    stream = sys.stderr
    if stream is None or not stream.isatty():
        yield
        return
    from parhelia.app import feedback

    def draw(finished: threading.Event) -> None:
        from rich.console import Console

        if not finished.is_set():  # answered while Rich loaded
            with Console(file=stream).status(message, spinner="dots"):
                finished.wait()

    with feedback.after_quiet(draw, "parhelia-spinner"):
        yield
