"""`parhelia events | budget | reconciler | cleanup`: history, money and the control loops."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli import MAX_LIMIT, JsonOpt, runtime
from parhelia.app.textfmt import age, money
from parhelia.state.errors import ParheliaError
from parhelia.state.views import RUN_COUNTS, EventView, plural


def print_events(rows: list[EventView]) -> None:
    for e in rows:
        where = e.container_id or e.task_id or ""
        output.echo(f"{e.ts:%Y-%m-%d %H:%M:%S}  {e.level:<7} {e.type:<24} {where:<11} {e.message}")


def _parse_time(value: str | None, option: str = "--since") -> datetime | None:
    """An ISO or relative (`10m`, `2h`, `3d`) time; E101 with examples otherwise."""
    from parhelia.state.timespec import parse_optional
    from parhelia.state.timeutil import utcnow

    return parse_optional(value, utcnow(), option=option)


# -- events ---------------------------------------------------------------------------------

events_app = typer.Typer(
    help="Events: state changes, health, orphans, budget, user actions.", no_args_is_help=True
)


@events_app.command("list")
def events_list(
    ctx: typer.Context,
    container: Annotated[
        str | None, typer.Option("--container", "-c", help="Only this container's events.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only this task's events.")
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", "--events", help="Comma-separated event types.")
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", help="Minimum level: debug, info, warning, error.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (ISO, or 10m, 2h, 3d ago).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this time (ISO, or 10m, 2h, 3d ago).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="At most this many (newest).")
    ] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Events filtered by container, task, type, level and time range; newest last."""
    from parhelia.app.payloads import event_views

    rt = runtime(ctx, json_out)
    views = event_views(
        rt.control,
        container=container,
        task=task,
        types=type_,
        level=level,
        since=_parse_time(since),
        until=_parse_time(until, "--until"),
        limit=limit,
    )

    def human() -> None:
        if not views:
            output.echo("No events matched. Widen the filters, or see: parhelia events list")
        print_events(views)

    output.success([asdict(e) for e in views], json_out=rt.json_out, human=human)


# -- budget ---------------------------------------------------------------------------------

budget_app = typer.Typer(
    help="Budget: spend against the ceiling, burn rate, forecast.", no_args_is_help=True
)


@budget_app.command("show")
def budget_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Spent against the ceiling, burn rate, and when the ceiling is reached at this rate."""
    from parhelia.app.payloads import budget_data

    rt = runtime(ctx, json_out)
    view = rt.control.dashboard(event_limit=0)
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


# -- reconciler -----------------------------------------------------------------------------

reconciler_app = typer.Typer(
    help="The reconciler: status, one cycle, or the daemon.", no_args_is_help=True
)


@reconciler_app.command("status")
def reconciler_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Running or not, last and next run, interval, lease holder, last cycle's counts."""
    rt = runtime(ctx, json_out)
    now = rt.control.clock()
    r = rt.store.reconciler_view(rt.settings.reconciler.interval_seconds, now=now)
    held = (
        r.lease_holder is not None and r.lease_expires_at is not None and r.lease_expires_at > now
    )
    running = held and not r.lease_dead
    data = {**asdict(r), "running": running, "stale": r.stale}

    def human() -> None:
        if running:
            state = f"running ({r.lease_holder})"
        elif held:
            state = f"not running: held by {r.lease_holder} (dead); the next process takes over"
        else:
            state = "not running"
        output.echo(f"Reconciler  {state}")
        if r.cycle_started_at is not None and running:
            output.echo(f"In cycle    since {r.cycle_started_at:%H:%M:%S} UTC")
        output.echo(
            f"Last run    {(r.last_run_at.strftime('%H:%M:%S') + ' UTC, ' + age(r.last_run_at, now) + ' ago') if r.last_run_at else 'never'}"
        )
        output.echo(
            f"Next run    {r.next_run_at.strftime('%H:%M:%S') + ' UTC' if r.next_run_at and running else '-'}"
        )
        output.echo(f"Interval    {r.interval_seconds:g} s")
        if r.last_counts:
            output.echo("Last cycle  " + ", ".join(f"{k} {v}" for k, v in r.last_counts.items()))
        if r.stale:
            output.echo(f"STALE since {r.stale_since:%H:%M:%S} UTC: {r.last_error}")

    actions = (
        []
        if running
        else [
            ("parhelia reconciler start", "run the loops in the foreground"),
            ("parhelia reconciler run", "one cycle now"),
        ]
    )
    output.success(data, json_out=rt.json_out, human=human, next_actions=actions)


@reconciler_app.command("run")
def reconciler_run(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """One reconcile cycle now, then a heartbeat pass and a budget check."""
    from parhelia.app.payloads import reconcile_now

    rt = runtime(ctx, json_out)
    from parhelia.app.feedback import working

    with working("Reconciling", json_out=rt.json_out):
        report = reconcile_now(rt.control)
    data = report.to_dict()

    if not report.acted:
        lease = rt.store.get_lease()
        holder = lease.holder if lease else "another process"
        raise ParheliaError(
            "E605",
            f"the reconciler lease is held by {holder}; nothing done",
            ["parhelia reconciler status", "parhelia containers list"],
        )

    def human() -> None:
        if report.error:
            output.echo(
                f"Listing failed ({report.error_code}): {report.error}. No container was changed."
            )
        output.echo(
            ", ".join(f"{k} {data[k]}" for k in RUN_COUNTS if k in data)
            + f" in {report.duration_ms:.0f} ms"
        )
        if report.in_grace:
            from parhelia.state.views import plural

            output.echo(
                f"{plural(report.in_grace, 'running sandbox', 'running sandboxes')} not recorded "
                "yet, inside their orphan grace; a cycle after it records them as orphans"
            )
        for line in report.guard_actions:
            output.echo(f"budget guard: {line}")

    if not (report.error_code and rt.json_out):  # with --json the error is the one document
        output.success(data, json_out=rt.json_out, human=human)
    if report.error_code:
        raise ParheliaError(
            report.error_code,
            report.error or "listing failed",
            ["parhelia reconciler status", "parhelia config show"],
        )


@reconciler_app.command("start")
def reconciler_start(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Run the reconciler, heartbeat poller and budget guard in the foreground until Ctrl-C or SIGTERM.

    With `--json` the log lines go to stderr and one envelope is printed when it stops."""
    import signal
    import threading

    rt = runtime(ctx, json_out)
    stop = threading.Event()
    lines: list[str] = []

    def _stop(*_args) -> None:
        stop.set()  # the main thread only waits for this; the loops run on their own thread

    def log(line: str) -> None:
        lines.append(line)
        if rt.json_out:
            sys.stderr.write(line + "\n")
        else:
            output.echo(line)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log(
        f"Parhelia loops running as {rt.control.holder} on {rt.store.label} "
        f"(reconcile every {rt.settings.reconciler.interval_seconds:g} s, heartbeat every "
        f"{rt.settings.heartbeat.interval_seconds:g} s). Ctrl-C to stop."
    )
    clean = rt.control.run_loops(stop, log=log)
    held = bool(rt.control.loops.holder)  # whether the last reconcile found the lease ours
    if held:
        said = "Stopped cleanly; lease released." if clean else "Stopped; lease released."
    else:
        said = "Stopped. Another process held the reconciler lease; this one did nothing with it."
    output.success(
        {
            "holder": rt.control.holder,
            "stopped": True,
            "clean": clean,
            "held_lease": held,
            "log_lines": len(lines),
        },
        json_out=rt.json_out,
        human=said,
    )


# -- cleanup --------------------------------------------------------------------------------


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
    targets = rt.store.orphans()
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
