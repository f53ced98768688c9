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


NoRefreshOpt = Annotated[
    bool,
    typer.Option(
        "--no-refresh",
        help="Run no reconcile or heartbeat pass: read the store and ask no backend.",
    ),
]
RefreshOpt = Annotated[
    bool,
    typer.Option(
        "--refresh",
        help="Run a reconcile and heartbeat pass even while a live reconciler (a dashboard or "
        "`reconciler start`) has just run one; without either flag its view is read then.",
    ),
]


def refresh_choice(refresh: bool, no_refresh: bool, command: str) -> bool | None:
    """The one-shot views' pass (`status`, `tui --once`): forced, refused, or None (a pass
    unless a live reconciler elsewhere has just run one: `ReconcilerView.watched`)."""
    if refresh and no_refresh:
        from parhelia.state.errors import ParheliaError

        raise ParheliaError(
            "E101",
            "--refresh and --no-refresh contradict each other; give one",
            [f"{command} --refresh", f"{command} --no-refresh"],
        )
    return True if refresh else False if no_refresh else None


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
