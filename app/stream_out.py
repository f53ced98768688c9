"""Writing a stream of lines that a person or a pipe reads as they come: flushed per line, colour
only on a terminal, and a reader that goes away (`| head`) ends the command silently."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any

import typer

from parhelia.state.views import EventView


class PipeClosed(Exception):
    """stdout's reader went away: stop quietly."""


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class LineOut:
    """One line per item: JSON objects (`json_out`) or the dashboard's event lines."""

    def __init__(self, *, json_out: bool) -> None:
        self.json_out = json_out
        self.console = None
        if not json_out and sys.stdout.isatty():
            from rich.console import Console

            self.console = Console(highlight=False, emoji=False, soft_wrap=True)

    def write(self, line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError as exc:
            silence_stdout()
            raise PipeClosed from exc

    def doc(self, doc: dict[str, Any]) -> None:
        self.write(json.dumps(doc, default=_default, ensure_ascii=False))

    def event(self, e: EventView, *, folded: int = 0, prefix: str = "") -> None:
        if self.json_out:
            doc = asdict(e)
            if folded:
                doc["folded"] = folded
            if prefix:
                doc["offset"] = prefix.strip()
            return self.doc(doc)
        from rich.text import Text

        from parhelia.widgets.formatting import event_text

        text = Text(prefix, style="dim") + event_text(e)
        if folded:
            text.append(f" (+{folded} folded)", style="dim")
        if self.console is None:
            return self.write(text.plain)
        try:
            self.console.print(text)
            self.console.file.flush()
        except BrokenPipeError as exc:
            silence_stdout()
            raise PipeClosed from exc


def _default(value: Any) -> Any:
    from parhelia.app.output import _default as default

    return default(value)


def run_until_interrupted(body) -> None:
    """Run a watch: Ctrl-C ends it with exit 130 and no traceback, a closed pipe with exit 0."""
    try:
        body()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except PipeClosed:
        raise typer.Exit(0) from None
