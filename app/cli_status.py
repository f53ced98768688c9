"""`parhelia status`: the dashboard's verdict in a few lines a person reads in one look.

The same one-shot path and view as `parhelia tui --once` (`cli_tui.one_shot`), the same words
(`widgets.formatting`), and with `--json` the very same envelope (`once.render_json`), so status,
the snapshot, the dashboard and the MCP status tool never disagree. Exit 0 all well, 1 attention,
2 error.
"""

from __future__ import annotations

from typing import Annotated

import typer

from parhelia.app.cli import JsonOpt, runtime
from parhelia.state.views import DashboardView
from parhelia.widgets.formatting import (
    age,
    attention_reasons,
    money,
    reconciler_line,
    short_clock,
    stale_banner,
)

HEALTHS = ("healthy", "degraded", "unhealthy", "dead", "unknown")


def status(
    ctx: typer.Context,
    no_refresh: Annotated[
        bool,
        typer.Option("--no-refresh", help="Skip the reconcile and heartbeat pass; read the store."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """At a glance: counts by state and health, orphans, burn and budget, the reconciler, what
    needs attention and the command that fixes it (exit 0 ok, 1 attention, 2 error)."""
    from parhelia.app.cli_tui import one_shot
    from parhelia.app.once import render_json

    rt = runtime(ctx, json_out)
    render = render_json if rt.json_out else render_status
    raise typer.Exit(one_shot(rt, render, json_out=rt.json_out, refresh=not no_refresh))


def attention_pairs(view: DashboardView) -> list[tuple[str, str]]:
    """(what, command) for each attention reason, as the envelope's next actions split them."""
    return [tuple(r.split(": ", 1)) for r in attention_reasons(view)]  # type: ignore[misc]


def render_status(view: DashboardView) -> str:
    now = view.generated_at
    active = [c for c in view.containers if c.is_active]
    states = ", ".join(f"{n} {s}" for s, n in sorted(view.counts.items())) or "none"
    health = {h: 0 for h in HEALTHS}
    for c in active:
        health[c.health] = health.get(c.health, 0) + 1
    health_part = ", ".join(f"{n} {h}" for h, n in health.items() if n) or "-"
    orphans = [c for c in view.containers if c.state == "orphaned"]
    b = view.budget
    if b.burn_rate_per_hour > 0 and b.ceiling_at is not None:
        eta = f"full at {short_clock(b.ceiling_at)} (in {age(now, b.ceiling_at)})"
    elif b.spent_usd >= b.ceiling_usd > 0:
        eta = "ceiling reached"
    else:
        eta = "never full at this rate"
    verdict = "ATTENTION" if view.needs_attention else "OK"
    lines = [
        f"parhelia {verdict} · backend {view.backend} · db {view.database}",
        f"Containers  {states} · active health: {health_part}",
        "Orphans     "
        + (
            f"{len(orphans)} ({' '.join(c.id for c in orphans[:6])}"
            f"{' ...' if len(orphans) > 6 else ''}) burning "
            f"{money(sum(c.cost_rate_per_hour for c in orphans))}/h"
            if orphans
            else "none"
        ),
        f"Money       burn {money(b.burn_rate_per_hour)}/h · {money(b.spent_usd)} of "
        f"{money(b.ceiling_usd)} this {b.period} ({b.percent:.0f}%, {b.level}) · {eta}",
        "Reconciler  " + reconciler_line(view.reconciler, now).removeprefix("reconciler "),
    ]
    banner = stale_banner(view)
    if banner:
        lines.append(f"Stale       {banner}")
    pairs = attention_pairs(view)
    if pairs:
        width = max(len(what) for what, _ in pairs)
        lines.append("Attention:")
        lines += [f"  ! {what:<{width}}  {command}" for what, command in pairs]
    else:
        lines.append("All well: nothing needs attention.")
    return "\n".join(lines) + "\n"
