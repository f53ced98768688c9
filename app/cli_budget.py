"""`parhelia budget show | set | history | estimate`: spend against the ceiling, the ceiling through `ControlPlane`, spend over time
in hour or day buckets, and a task priced before dispatch (`ControlPlane.estimate`, the estimate
the guided prompt and `task create` use)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import MAX_LIMIT, JsonOpt, parse_time, print_events, runtime
from parhelia.app.textfmt import age, money
from parhelia.state.errors import ParheliaError
from parhelia.state.event_types import EventType
from parhelia.state.views import plural

# The budget event types something writes: the ceiling (ControlPlane) and the guard's warnings.
BUDGET_EVENT_TYPES = (EventType.BUDGET_CEILING, EventType.BUDGET_WARNING)


app = typer.Typer(
    help="Budget: spend against the ceiling, burn rate, forecast.", no_args_is_help=True
)


@app.command("show")
def budget_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Spent against the ceiling, burn rate, and when the ceiling is reached at this rate."""
    from parhelia.app.payloads import budget_data

    rt = runtime(ctx, json_out)
    view = rt.reader.dashboard(event_limit=0, agents=False)
    b = view.budget
    data = budget_data(view)

    def human() -> None:
        output.echo(
            f"Spent     {money(b.spent_usd)} of {money(b.ceiling_usd)} this {b.period} ({b.percent:.1f}%, {b.level})"
        )
        output.echo(
            f"Burn      {money(b.burn_rate_per_hour)}/h across "
            f"{plural(sum(1 for c in view.containers if c.is_active), 'active container')}, "
            f"{plural(b.running_gpus, 'GPU')}"
        )
        if b.ceiling_at:
            when = f"reached {b.ceiling_at:%Y-%m-%d %H:%M} UTC (in {age(view.generated_at, b.ceiling_at)})"
        elif b.spent_usd >= b.ceiling_usd > 0:
            when = "reached already"
        else:
            when = "not reached at this rate"
        output.echo(f"Ceiling   {when}")
        output.echo(f"Policy    {b.policy}")

    output.success(
        data,
        json_out=rt.json_out,
        human=human,
        next_actions=[
            ("parhelia budget set AMOUNT", "change the ceiling"),
            ("parhelia budget history", "spend over time"),
        ],
    )


@app.command("set")
def budget_set(
    ctx: typer.Context,
    amount: Annotated[float, typer.Argument(help="Ceiling in USD for the period.")],
    json_out: JsonOpt = False,
) -> None:
    """Set the budget ceiling (persists in the store; recorded as an event)."""
    rt = runtime(ctx, json_out)
    new, old = rt.control.set_budget_ceiling(amount, actor="user")
    output.success(
        {"ceiling_usd": new, "previous_usd": old},
        json_out=rt.json_out,
        human=f"Budget ceiling set to {money(new)} (was {money(old)})",
    )


@app.command("history")
def budget_history(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Option("--bucket", help="hour or day.")] = "hour",
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO or relative (10m, 2h, 3d); default: a day of hours."),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="task or container.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="Budget events shown.")
    ] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Spend over time in hour or day buckets (per task or container with --by), with the
    budget's events (ceiling changes, threshold warnings)."""
    from parhelia.state.spend import BUCKETS, sparkline, spend_buckets

    rt = runtime(ctx, json_out)
    if bucket not in BUCKETS:
        raise ParheliaError(
            "E101",
            f"unknown bucket {bucket!r}; valid: hour, day",
            ["parhelia budget history --bucket hour", "parhelia budget history --bucket day"],
        )
    if by not in (None, "task", "container"):
        raise ParheliaError(
            "E101",
            f"--by {by!r}: valid are task and container",
            ["parhelia budget history --by task", "parhelia budget history --by container"],
        )
    now = rt.control.clock()
    size = BUCKETS[bucket]
    start = parse_time(since) or now - (size * (24 if bucket == "hour" else 7) - size)
    hours = (now - start).total_seconds() / 3600 + 1
    containers = rt.control.container_views(now=now, recent_hours=hours, limit=100_000)
    series = spend_buckets(containers, since=start, now=now, size=size, by=by)
    rows = [
        {"start": t.isoformat(), "key": k, "usd": round(v, 6)}
        for t, part in series.items()
        for k, v in sorted(part.items())
    ]
    totals = [sum(part.values()) for part in series.values()]
    events = rt.control.event_views(types=BUDGET_EVENT_TYPES, limit=limit)
    data = {
        "bucket": bucket,
        "since": start.isoformat(),
        "by": by,
        "buckets": rows,
        "total_usd": round(sum(totals), 6),
        "events": [asdict(e) for e in events],
    }

    def human() -> None:
        fmt = "%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d"
        output.echo(
            f"Spend per {bucket} since {start:%Y-%m-%d %H:%M} UTC: {money(sum(totals))}  "
            f"{sparkline(totals)}"
        )
        table = []
        for (t, part), total in zip(series.items(), totals, strict=True):
            if by:
                table += [[t.strftime(fmt), k, money(v)] for k, v in sorted(part.items())]
            else:
                table.append([t.strftime(fmt), money(total)])
        headers = ["BUCKET (UTC)", by.upper(), "SPEND"] if by else ["BUCKET (UTC)", "SPEND"]
        output.echo(output.table(headers, table, right={len(headers) - 1}))
        output.echo("")
        if events:
            output.echo("Budget events:")
            print_events(events)
        else:
            output.echo("No budget events yet.")

    output.success(data, json_out=rt.json_out, human=human)


@app.command("estimate")
def budget_estimate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The task's prompt (for its warnings).")] = "task",
    backend: Annotated[
        str | None, typer.Option("--backend", help="local or modal (default: configured).")
    ] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU type or none.")] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", help="CPU cores.")] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="Memory in MiB.")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Timeout in minutes.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Pinned region.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Price a task before dispatch: its rate, its cost at the timeout, what is left of the budget,
    and the prompt's warnings (the same estimate `task create` checks)."""
    from parhelia.app.preferences import task_defaults
    from parhelia.state.requests import TaskRequest

    rt = runtime(ctx, json_out)
    defaults = task_defaults(rt.loaded, plane=rt.control.plane_id)
    request = TaskRequest(
        prompt=prompt,
        backend=backend,
        gpu=gpu if gpu is not None else defaults.get("gpu"),
        cpu=cpu if cpu is not None else defaults["cpu"],
        memory_mib=memory if memory is not None else defaults["memory_mib"],
        timeout_minutes=timeout if timeout is not None else defaults["timeout_minutes"],
        region=region,
    )
    est = rt.control.estimate(request)
    data = {**asdict(est), "remaining_usd": est.remaining_usd, "request": asdict(request)}

    def human() -> None:
        output.echo(
            f"Rate {money(est.rate_per_hour)}/h; at most {money(est.cost_usd)} for "
            f"{request.timeout_minutes} min; {money(est.remaining_usd)} of "
            f"{money(est.ceiling_usd)} left"
        )
        for w in est.warnings:
            output.echo(f"Warning: {w}")

    output.success(
        data,
        json_out=rt.json_out,
        human=human,
        next_actions=[("parhelia task create PROMPT", "dispatch it")],
        cost_usd=est.cost_usd,
    )
