"""What every command module shares: the invocation's runtime, the `--json` option, the `--limit`
bound, times given on the command line and the event lines. Command modules import this, never
`parhelia.app.cli`, which only assembles them (tests/test_cli_imports.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from parhelia.app import output

if TYPE_CHECKING:
    from parhelia.app.runtime import Runtime
    from parhelia.state.views import EventView

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (for scripts and agents).")
]

# The most rows a `--limit` may ask for: beyond this a listing is not a listing, and SQLite's
# integers end at 2**63 (a bigger number was an OverflowError, E900).
MAX_LIMIT = 1_000_000

LimitOpt = Annotated[
    int, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="At most this many (newest).")
]


def runtime(ctx: typer.Context, json_out: bool = False) -> Runtime:
    """The invocation's runtime, created by the root callback; `--json` may come before or after the verb."""
    rt: Runtime = ctx.find_root().obj
    rt.json_out = rt.json_out or json_out
    return rt


def print_events(rows: list[EventView]) -> None:
    for e in rows:
        where = e.container_id or e.task_id or ""
        output.echo(f"{e.ts:%Y-%m-%d %H:%M:%S}  {e.level:<7} {e.type:<24} {where:<11} {e.message}")


def parse_time(value: str | None, option: str = "--since") -> datetime | None:
    """An ISO or relative (`10m`, `2h`, `3d`) time; E101 with examples otherwise."""
    from parhelia.state.timespec import parse_optional
    from parhelia.state.timeutil import utcnow

    return parse_optional(value, utcnow(), option=option)
