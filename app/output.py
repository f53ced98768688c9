"""How every command answers: one JSON envelope with `--json`, plain text otherwise, and errors
with code, message and recovery commands on stderr. Nothing decorates output that is piped."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.state.safe_text import escape_controls, mask_password

STARTED = time.perf_counter()
# `--fields a,b.c` for this invocation (set by `cli.main`): trims `data` in the JSON envelope.
FIELDS: str | None = None
# An action's priority when the command gives none comes from its place in the list.
Action = tuple[str, str] | tuple[str, str, str]
PRIORITIES = ("high", "medium")  # then "low"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(doc: Any) -> str:
    return json.dumps(doc, default=_default, indent=2, ensure_ascii=False)


def write(text: str, stream=None) -> None:
    """Write `text` with any database password masked. A stream that cannot encode a character
    (a strict ASCII or UTF-8 stdout and a lone surrogate) gets it as a backslash escape instead of
    an exception halfway through a document: the encoding fails before a byte is written."""
    stream = stream or sys.stdout
    text = mask_password(text)
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def success(
    data: Any,
    *,
    json_out: bool,
    human: Callable[[], None] | str | None = None,
    next_actions: list[Action] | None = None,
    cost_usd: float | None = None,
) -> None:
    """Print a result: the envelope for `--json`, else the human rendering (and next steps on a
    terminal). `cost_usd` is what the command spent or estimated; it goes in `metadata`."""
    actions = [
        {
            "command": a[0],
            "description": a[1],
            "priority": a[2] if len(a) > 2 else (PRIORITIES[i] if i < len(PRIORITIES) else "low"),
        }
        for i, a in enumerate(next_actions or [])
    ]
    if json_out:
        metadata = {
            "timestamp": datetime.now().astimezone().isoformat(),
            "duration_ms": round((time.perf_counter() - STARTED) * 1000, 1),
        }
        if cost_usd is not None:
            metadata["cost_usd"] = round(cost_usd, 6)
        doc = {
            "success": True,
            "data": trim(data),
            "metadata": metadata,
            "next_actions": actions,
        }
        write(dumps(doc) + "\n")
        return
    if callable(human):
        human()
    elif human is not None:
        write(escape_controls(human if human.endswith("\n") else human + "\n", keep_newlines=True))
    if actions and sys.stdout.isatty():
        write("\nNext:\n" + "".join(f"  {a['command']:<40} {a['description']}\n" for a in actions))


def trim(data: Any) -> Any:
    """`data` cut to `--fields` (the same selection the MCP server's `fields` makes)."""
    if not FIELDS:
        return data
    from parhelia.state.fields import select_fields

    plain = json.loads(dumps(data))
    try:
        return select_fields(plain, FIELDS)
    except ParheliaError as exc:
        raise ParheliaError(
            "E101",
            exc.message,
            ["rerun without --fields to see every field", "parhelia help workflow"],
        ) from None


def failure(err: ParheliaError, *, json_out: bool) -> int:
    """Report an error; returns the exit code. Never a traceback."""
    if json_out:
        write(dumps({"success": False, "error": err.to_dict()}) + "\n")
    else:
        entry = CATALOGUE[err.code]
        lines = [f"Error {err.code}: {entry.title}: {err.message}"]
        if err.attempted:
            lines.append(f"  while trying to {err.attempted}")
        lines.append("Try:")
        lines += [f"  {s}" for s in err.suggestions]
        lines.append(f"More: parhelia help {err.code}")
        write(escape_controls("\n".join(lines) + "\n", keep_newlines=True), sys.stderr)
    return 1


def echo(text: str = "") -> None:
    """One line (or several) of human output; control characters in it are shown escaped."""
    write(escape_controls(text + "\n", keep_newlines=True))


def table(headers: list[str], rows: list[list[str]], *, right: set[int] = frozenset()) -> str:
    """A plain, aligned text table (no escape codes), like `kubectl get`. A cell's control
    characters are shown escaped: a prompt or message cannot drive the terminal."""
    rows = [[escape_controls(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return "\n".join([fmt(headers), *(fmt(r) for r in rows)])
