"""`parhelia reconciler status | run | start`: the control loops, once or in the foreground."""

from __future__ import annotations

import sys
from dataclasses import asdict

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.app.textfmt import age
from parhelia.state.errors import ParheliaError
from parhelia.state.views import RUN_COUNTS

app = typer.Typer(help="The reconciler: status, one cycle, or the daemon.", no_args_is_help=True)


@app.command("status")
def reconciler_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Running or not, last and next run, interval, lease holder, last cycle's counts."""
    rt = runtime(ctx, json_out)
    now = rt.reader.clock()
    r = rt.reader.reconciler_view(now)
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


@app.command("run")
def reconciler_run(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """One reconcile cycle now, then a heartbeat pass and a budget check."""
    from parhelia.app.payloads import reconcile_now

    rt = runtime(ctx, json_out)
    from parhelia.app.feedback import working

    with working("Reconciling", json_out=rt.json_out):
        report = reconcile_now(rt.control)
    data = report.to_dict()

    if not report.acted:
        holder = rt.control.lease_holder() or "another process"
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


@app.command("start")
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
        f"Parhelia loops running as {rt.control.holder} on {rt.control.store_label} "
        f"(reconcile every {rt.settings.reconciler.interval_seconds:g} s, heartbeat every "
        f"{rt.settings.heartbeat.interval_seconds:g} s). Ctrl-C to stop."
    )
    clean = rt.control.run_loops(stop, log=log)
    held = bool(rt.control.loops.has_lease)  # whether the last reconcile found the lease ours
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
