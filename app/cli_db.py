"""`parhelia db status | migrate | copy`: where the database is, its schema revision, and moving
its rows."""

from __future__ import annotations

from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError

app = typer.Typer(help="The database: status and migrations.", no_args_is_help=True)


def _open_engine(url: str, *, immediate: bool = False):
    """An engine for `db status`/`db migrate`; a URL or driver that cannot work is E701."""
    from parhelia.state import db as dbmod

    try:
        return dbmod.make_engine(url, immediate=immediate)
    except ParheliaError:
        raise
    except Exception as exc:  # not a URL, an unknown dialect, a driver that is not installed
        raise dbmod.open_error(url, exc, attempted="open the database") from exc


def _reading(url: str, fn):
    """`fn()`, with any database error reported as E701/E703 (the store's words), never E900."""
    from parhelia.state import db as dbmod

    try:
        return fn()
    except ParheliaError:
        raise
    except Exception as exc:
        raise dbmod.open_error(url, exc, attempted="read the database") from exc


@app.command("status")
def db_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Where the database is, its schema revision, and the row counts."""
    from parhelia.state import db as dbmod
    from parhelia.state.counts import row_counts
    from parhelia.state.safe_text import mask_password

    rt = runtime(ctx, json_out)
    engine = _open_engine(rt.db_url)
    try:
        current = _reading(rt.db_url, lambda: dbmod.current_revision(engine))
        counts = _reading(rt.db_url, lambda: row_counts(engine))
    finally:
        engine.dispose()
    shown = mask_password(rt.db_url)
    data = {
        "url": shown,
        "revision": current,
        "head": dbmod.HEAD_REVISION,
        "up_to_date": current == dbmod.HEAD_REVISION,
        "rows": counts,
    }
    lines = [
        f"database  {shown}",
        f"revision  {current or '(empty)'}",
        f"head      {dbmod.HEAD_REVISION}",
        "status    " + ("up to date" if data["up_to_date"] else "needs `parhelia db migrate`"),
        "rows      "
        + (", ".join(f"{name} {n}" for name, n in counts.items()) or "(no tables yet)"),
    ]
    actions = [] if data["up_to_date"] else [("parhelia db migrate", "upgrade the schema")]
    output.success(data, json_out=rt.json_out, human="\n".join(lines), next_actions=actions)


@app.command("migrate")
def db_migrate(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Upgrade the schema to this Parhelia's newest revision."""
    from parhelia.state import db as dbmod
    from parhelia.state.safe_text import mask_password

    rt = runtime(ctx, json_out)
    _reading(rt.db_url, lambda: dbmod.check_not_newer(rt.db_url))
    engine = _open_engine(rt.db_url, immediate=True)
    try:
        from parhelia.app.feedback import working

        with working("Migrating the database", json_out=rt.json_out):
            before, after = _reading(rt.db_url, lambda: dbmod.migrate(engine))
    finally:
        engine.dispose()
    shown = mask_password(rt.db_url)
    output.success(
        {"url": shown, "before": before, "after": after},
        json_out=rt.json_out,
        human=f"{shown}: {before or '(empty)'} -> {after}",
    )


@app.command("copy")
def db_copy(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The empty database to copy this one into.")],
    json_out: JsonOpt = False,
) -> None:
    """Copy every row of this database into an empty one (SQLite to PostgreSQL, or back)."""
    from parhelia.app.db_copy import run_copy

    rt = runtime(ctx, json_out)
    run_copy(rt.db_url, to, json_out=rt.json_out)
