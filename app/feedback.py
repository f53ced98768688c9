"""Feedback by duration (SPEC-20), on stderr with Rich: under 100 ms nothing; to 1 s an inline
status; 1 to 4 s a spinner; 4 to 10 s progress; over 10 s progress with time remaining.

One helper for every slow command (`with working("Terminating", total=3) as step: ... step()`);
`step.stage("building the image")` names what is under way now (dispatch's stages).
Nothing is drawn unless both stdout and stderr are terminals, and never with `--json`,
`NO_COLOR` or `TERM=dumb`: piped output stays exactly the command's output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

QUIET_S = 0.1  # under this, nothing
INLINE_S = 1.0  # to this, an inline status
SPINNER_S = 4.0  # to this, a spinner
PROGRESS_S = 10.0  # to this, progress; after it, progress with time remaining


def enabled(json_out: bool = False, env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if json_out or "NO_COLOR" in env or env.get("TERM", "") in ("dumb", ""):
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


def phase(elapsed: float) -> str:
    """Which kind of feedback `elapsed` seconds deserve."""
    if elapsed < QUIET_S:
        return "none"
    if elapsed < INLINE_S:
        return "inline"
    if elapsed < SPINNER_S:
        return "spinner"
    if elapsed < PROGRESS_S:
        return "progress"
    return "progress+eta"


class _Display:
    def __init__(self, label: str, total: int | None, clock: Callable[[], float]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.spinner import Spinner
        from rich.text import Text

        self.base, self.label, self.total, self.clock = label, label, total, clock
        self.started = clock()
        self.done = 0
        self.console = Console(file=sys.stderr)
        self._text, self._spinner = Text, Spinner("dots", text=Text(label))
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn()]
        self.progress = Progress(*columns, TimeElapsedColumn(), console=self.console)
        self.eta = Progress(
            *columns, TimeElapsedColumn(), TimeRemainingColumn(), console=self.console
        )
        self.tasks = {p: p.add_task(label, total=total) for p in (self.progress, self.eta)}

    def renderable(self):
        elapsed = self.clock() - self.started
        kind = phase(elapsed)
        if kind == "inline":
            return self._text(f"{self.label}…")
        if kind == "spinner":
            self._spinner.update(text=self._text(f"{self.label} ({elapsed:.0f} s)"))
            return self._spinner
        bar = self.progress if kind == "progress" else self.eta
        bar.update(self.tasks[bar], completed=self.done, description=self.label)
        return bar

    def advance(self, n: int = 1) -> None:
        self.done += n

    def stage(self, name: str) -> None:
        self.label = f"{self.base}: {name}"


class Step:
    """What `working` yields: `step(n=1)` counts finished items, `step.stage(name)` names the stage
    under way (both do nothing when nothing is drawn)."""

    def __init__(self, display: _Display | None = None) -> None:
        self._display = display

    def __call__(self, n: int = 1) -> None:
        if self._display is not None:
            self._display.advance(n)

    def stage(self, name: str) -> None:
        if self._display is not None:
            self._display.stage(name)


@contextlib.contextmanager
def working(
    label: str,
    *,
    total: int | None = None,
    json_out: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Step]:
    """Show feedback for the block's duration; yields a `Step` (count items, name stages)."""
    if not enabled(json_out):
        yield Step()
        return
    display = _Display(label, total, clock)

    def draw(finished: threading.Event) -> None:
        from rich.live import Live

        with Live(
            get_renderable=display.renderable,
            console=display.console,
            refresh_per_second=10,
            transient=True,
        ):
            finished.wait()

    with after_quiet(draw, "parhelia-feedback"):
        yield Step(display)


@contextlib.contextmanager
def after_quiet(draw: Callable[[threading.Event], None], name: str) -> Iterator[None]:
    """Run `draw(finished)` in a thread named `name` once the block has taken QUIET_S (under it,
    nothing: not even Rich is imported); `draw` returns when `finished` is set, at the block's
    end. The one delayed start of `working` and `spinner.waiting`."""
    finished = threading.Event()

    def show() -> None:
        if not finished.wait(QUIET_S):
            draw(finished)

    thread = threading.Thread(target=show, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join(2.0)
