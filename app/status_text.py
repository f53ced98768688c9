"""`parhelia status`'s text: the dashboard view's verdict in a few lines, in the formatter's words
(`widgets.formatting`), so it reads like the dashboard and `tui --once`."""

from __future__ import annotations

from parhelia.state.views import DashboardView
from parhelia.widgets.formatting import (
    age,
    money,
    reconciler_line,
    short_clock,
    stale_banner,
)

HEALTHS = ("healthy", "degraded", "unhealthy", "dead", "unknown")
STATES = ("created", "running", "orphaned", "stopped", "terminated")


def attention_pairs(view: DashboardView) -> list[tuple[str, str]]:
    """(what, command) for each attention reason, as the envelope's next actions carry them."""
    return [(a.text, a.command) for a in view.attention()]


def render_status(view: DashboardView) -> str:
    now = view.generated_at
    active = [c for c in view.containers if c.is_active]
    counts = view.counts
    order = [*STATES, *sorted(set(counts) - set(STATES))]
    states = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "none"
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
