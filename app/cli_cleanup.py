"""`parhelia cleanup --orphans`: terminate the sandboxes with Parhelia's tags that no dispatch
recorded, after confirmation."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError


def cleanup(
    ctx: typer.Context,
    orphans: Annotated[
        bool, typer.Option("--orphans", help="Terminate every orphaned container.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Terminate orphans (sandboxes with Parhelia's tags that no dispatch recorded), after confirmation."""
    rt = runtime(ctx, json_out)
    if not orphans:
        raise ParheliaError(
            "E102",
            "say what to clean up: --orphans",
            ["parhelia cleanup --orphans", "parhelia containers orphans"],
        )
    targets = rt.control.orphans()
    if not targets:
        return output.success([], json_out=rt.json_out, human="No orphans to clean up.")
    if not yes:
        if rt.json_out or not sys.stdin.isatty():
            raise ParheliaError(
                "E102",
                "cleanup needs confirmation; pass --yes when not at a terminal",
                ["parhelia cleanup --orphans --yes", "parhelia containers orphans"],
            )
        for c in targets:
            output.echo(f"  {c.id}  sandbox {c.sandbox_id}  ({c.backend})")
        typer.confirm(f"Terminate {len(targets)} orphan(s)?", default=False, abort=True)
    from parhelia.app.feedback import working

    done = []
    with working("Terminating orphans", total=len(targets), json_out=rt.json_out) as step:
        for c in targets:
            done.append(rt.control.terminate(c.id, actor="user", reason="orphan_cleanup"))
            step()
    output.success(
        [asdict(v) for v in done],
        json_out=rt.json_out,
        human=f"Terminated {len(done)} orphan(s): " + ", ".join(v.id for v in done),
        cost_usd=sum(v.cost_accrued_usd for v in done),
    )
