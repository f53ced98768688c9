"""`parhelia containers ...`: the registry of every sandbox Parhelia knows, with health and cost."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import MAX_LIMIT, JsonOpt, runtime
from parhelia.app.textfmt import (
    ESTIMATE_NOTE,
    age,
    container_rows,
    money,
    rate_text,
    totals_line,
)

app = typer.Typer(
    help="Containers: list (the default), show, logs, events, health, orphans, watch, terminate.",
    invoke_without_command=True,
)

AllOpt = Annotated[
    bool, typer.Option("--all", "-a", help="Include containers that ended more than an hour ago.")
]


@app.callback()
def default(ctx: typer.Context, all_: AllOpt = False, json_out: JsonOpt = False) -> None:
    """Bare `parhelia containers` (or `parhelia c`) lists them, as SPEC-21 shows."""
    if ctx.invoked_subcommand is None:
        list_(ctx, all_=all_, json_out=json_out)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: AllOpt = False,
    state: Annotated[str | None, typer.Option("--state", help="Only this state.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every container: id, sandbox, state, health, task, age, cost."""
    from parhelia.app.payloads import select_containers

    rt = runtime(ctx, json_out)
    now, rows = select_containers(rt.reader, all_=all_, state=state)
    data = [asdict(c) for c in rows] if rt.json_out else None  # only the envelope reads it

    def human() -> None:
        if not rows:
            output.echo("No containers. Start one with: parhelia task create PROMPT")
            return
        output.echo(
            output.table(
                ["ID", "SANDBOX", "STATE", "HEALTH", "TASK", "AGE", "COST"],
                container_rows(rows, now),
                right={5, 6},
            )
        )
        output.echo(totals_line(rows))

    output.success(
        data,
        json_out=rt.json_out,
        human=human,
        next_actions=[
            ("parhelia containers show ID", "details of one container"),
            ("parhelia tui", "watch them live"),
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(help="Container id, prefix or sandbox id.")],
    json_out: JsonOpt = False,
) -> None:
    """Identity, state, health and last heartbeat, task, resources with usage, lifecycle and cost."""
    rt = runtime(ctx, json_out)
    d = rt.control.container_detail(container)
    c = d.container
    now = rt.control.clock()

    def human() -> None:
        from parhelia.state.exit_codes import exit_text

        hb = f"{age(c.last_heartbeat_at, now)} ago" if c.last_heartbeat_at else "never"
        usage = ""
        if c.cpu_percent is not None:
            usage = f" (using {c.cpu_percent:.0f}% CPU, {c.memory_used_mib or 0:.0f} MiB)"
        lines = [
            f"Container   {c.id}   backend {c.backend}   sandbox {c.sandbox_id or '-'}",
            f"State       {c.state}"
            + (
                f" ({c.termination_reason}, {exit_text(c.exit_code) or 'no exit code'})"
                if c.termination_reason
                else ""
            ),
            f"Health      {c.health}   last heartbeat {hb}   missed {c.missed_heartbeats}",
            f"Task        {c.task_id or '-'}"
            + (f" [{d.task_status}] {c.task_prompt}" if c.task_prompt else ""),
            f"Resources   {c.cpu_cores:g} CPU, {c.memory_mib} MiB, GPU {c.gpu or 'none'}, region {c.region or 'any'}{usage}",
            f"Lifecycle   created {c.created_at:%Y-%m-%d %H:%M:%S}Z"
            + (f", started {c.started_at:%H:%M:%S}Z" if c.started_at else "")
            + (f", ended {c.terminated_at:%H:%M:%S}Z" if c.terminated_at else ""),
            f"Cost        {rate_text(c)}, accrued {money(c.cost_accrued_usd)}",
        ]
        if c.tags:
            lines.append("Tags        " + ", ".join(f"{k}={v}" for k, v in sorted(c.tags.items())))
        output.echo("\n".join(lines))

    actions = [(f"parhelia containers events {c.id}", "its event history")]
    if c.is_active:
        actions.append((f"parhelia containers terminate {c.id}", "stop it"))
    output.success(asdict(d), json_out=rt.json_out, human=human, next_actions=actions)


@app.command("events")
def events(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument()],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="At most this many events.")
    ] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The events of one container, newest last."""
    from parhelia.app.cli_common import print_events

    rt = runtime(ctx, json_out)
    c = rt.control.container(container)
    rows = rt.control.event_views(container_id=c.id, limit=limit)
    output.success(
        [asdict(e) for e in rows], json_out=rt.json_out, human=lambda: print_events(rows)
    )


@app.command("orphans")
def orphans(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Sandboxes running with Parhelia's tags that no dispatch recorded; ends with the cleanup command."""
    from parhelia.app.payloads import orphan_rows

    rt = runtime(ctx, json_out)
    view = rt.reader.dashboard(event_limit=0, agents=False)
    rows = orphan_rows(view)
    from parhelia.widgets.formatting import foreign_line

    theirs = foreign_line(view)

    def human() -> None:
        if not rows:
            output.echo("No orphans: every running sandbox is accounted for.")
            if theirs:
                output.echo(theirs)
            return
        output.echo(
            output.table(
                ["ID", "SANDBOX", "BACKEND", "TASK", "AGE", "RATE", "ACCRUED"],
                [
                    [
                        c.id,
                        c.sandbox_id or "-",
                        c.backend,
                        c.task_id or "-",
                        age(c.started_at or c.created_at, view.generated_at),
                        ("~" if c.rate_estimated else "") + f"{money(c.cost_rate_per_hour)}/h",
                        ("~" if c.rate_estimated else "") + money(c.cost_accrued_usd),
                    ]
                    for c in rows
                ],
                right={4, 5, 6},
            )
        )
        burn = sum(c.cost_rate_per_hour for c in rows)
        if theirs:
            output.echo(theirs)
        output.echo(
            f"{len(rows)} orphan(s) burning {money(burn)}/h. Clean up with: parhelia cleanup --orphans"
        )
        if any(c.rate_estimated for c in rows):
            output.echo(ESTIMATE_NOTE)

    output.success(
        [asdict(c) for c in rows],
        json_out=rt.json_out,
        human=human,
        next_actions=[("parhelia cleanup --orphans", "terminate them")] if rows else [],
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(help="Container id (a unique prefix will do).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until it ends.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """The agent's output (stdout and stderr), as the backend keeps it."""
    from parhelia.app.cli_logs import logs_command

    logs_command(runtime(ctx, json_out), container, follow=follow)


@app.command("health")
def health(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Active containers counted by health, with their ids."""
    from parhelia.app.payloads import health_data, health_groups

    rt = runtime(ctx, json_out)
    groups = health_groups(rt.reader.dashboard(event_limit=0, agents=False))

    def human() -> None:
        for h, ids in groups.items():
            output.echo(
                f"{h:<10} {len(ids):>4}  {' '.join(ids[:12])}{' ...' if len(ids) > 12 else ''}"
            )

    output.success(health_data(groups), json_out=rt.json_out, human=human)


@app.command("terminate")
def terminate(
    ctx: typer.Context,
    containers: Annotated[list[str], typer.Argument(help="Container ids.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    reason: Annotated[
        str, typer.Option("--reason", help="Why, recorded with the termination.")
    ] = "user",
    json_out: JsonOpt = False,
) -> None:
    """Stop containers' sandboxes (asks first unless --yes) and record who, why, exit code and final cost."""
    rt = runtime(ctx, json_out)
    targets = [rt.control.owned_container(ref) for ref in containers]
    now = rt.control.clock()
    if not yes:
        if rt.json_out or not typer.get_text_stream("stdin").isatty():
            from parhelia.state.errors import ParheliaError

            raise ParheliaError(
                "E102",
                "terminate needs confirmation; pass --yes when not at a terminal",
                [
                    f"parhelia containers terminate {' '.join(c.id for c in targets)} --yes",
                    "parhelia containers list",
                ],
            )
        for c in targets:
            output.echo(
                f"  {c.id}  {c.state:<10} sandbox {c.sandbox_id or '-'}  running {age(c.started_at, now)}"
            )
        typer.confirm(f"Terminate {len(targets)} container(s)?", default=False, abort=True)
    from parhelia.app.feedback import working

    done = []
    with working("Terminating", total=len(targets), json_out=rt.json_out) as step:
        for c in targets:
            done.append(rt.control.terminate(c.id, actor="user", reason=reason))
            step()
    output.success(
        [asdict(v) for v in done],
        json_out=rt.json_out,
        human="\n".join(
            f"{v.id} terminated (exit {v.exit_code}, cost {money(v.cost_accrued_usd)})"
            for v in done
        ),
        cost_usd=sum(v.cost_accrued_usd for v in done),
    )
