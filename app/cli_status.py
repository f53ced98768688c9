"""`parhelia status`: the dashboard's verdict in a few lines a person reads in one look.

The same one-shot path and view as `parhelia tui --once` (`cli_tui.one_shot`), the same words
(`widgets.formatting`), and with `--json` the very same envelope (`snapshot.render_json`), so
status, the snapshot, the dashboard and the MCP status tool never disagree. Exit 0 all well,
1 attention, 2 error.
"""

from __future__ import annotations

import typer

from parhelia.app.cli_common import JsonOpt, NoRefreshOpt, RefreshOpt, runtime


def status(
    ctx: typer.Context,
    refresh: RefreshOpt = False,
    no_refresh: NoRefreshOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """At a glance: counts by state and health, orphans, burn and budget, the reconciler, what
    needs attention and the command that fixes it (exit 0 ok, 1 attention, 2 error)."""
    from parhelia.app.cli_tui import one_shot
    from parhelia.app.snapshot import render_json
    from parhelia.app.status_text import render_status

    rt = runtime(ctx, json_out)
    render = render_json if rt.json_out else render_status
    raise typer.Exit(
        one_shot(
            rt,
            render,
            json_out=rt.json_out,
            command="parhelia status",
            refresh=refresh,
            no_refresh=no_refresh,
        )
    )
