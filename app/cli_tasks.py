"""`parhelia task ...`: dispatch agents and follow, cancel or retry their tasks."""

from __future__ import annotations

from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, LimitOpt, runtime
from parhelia.app.textfmt import money
from parhelia.state.enums import LIVE_TASK_STATUSES

app = typer.Typer(
    help="Tasks: create (dispatch an agent), list, show, cancel, retry.", no_args_is_help=True
)


@app.command("create")
def create(
    ctx: typer.Context,
    prompt: Annotated[
        str | None, typer.Argument(help="What the agent should do (asked on a terminal).")
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="local or modal (default: configured).")
    ] = None,
    gpu: Annotated[
        str | None, typer.Option("--gpu", help="GPU type (T4, A10G, H100...) or none.")
    ] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", help="CPU cores.")] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="Memory in MiB.")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Timeout in minutes.")] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="Pin to a region (costs more).")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Ask nothing: take the defaults, accept warnings.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Dispatch an agent: validated, estimated against the budget, recorded before its sandbox exists.

    On a terminal, missing values are asked for with their defaults and where each came from."""
    from parhelia.app.feedback import working
    from parhelia.app.preferences import save_last_used
    from parhelia.app.prompts import choose_task_values, on_terminal, show_estimate_and_confirm
    from parhelia.state.requests import TaskRequest

    rt = runtime(ctx, json_out)
    flag_backend = rt.flags.get("backend") if rt.flags.get("backend") != "auto" else None
    interactive = on_terminal() and not rt.json_out
    given = {
        "prompt": prompt,
        "backend": backend or flag_backend,
        "gpu": gpu,
        "cpu": cpu,
        "memory_mib": memory,
        "timeout_minutes": timeout,
    }
    prompt, chosen = choose_task_values(rt, given, ask=interactive and not yes)
    v = chosen.values
    request = TaskRequest(
        prompt=prompt,
        backend=v["backend"],
        gpu=v["gpu"],
        cpu=v["cpu"],
        memory_mib=v["memory_mib"],
        timeout_minutes=v["timeout_minutes"],
        region=region,
    )
    if interactive:
        show_estimate_and_confirm(rt, request, ask=not yes)
    label = f"Dispatching to {request.backend or rt.control.default_backend}"
    with working(label, json_out=rt.json_out) as step:
        result = rt.control.dispatch(request, actor="user", progress=step.stage)
    save_last_used(
        {
            "backend": result.backend,
            "gpu": request.gpu or "none",
            "cpu": request.cpu,
            "memory_mib": request.memory_mib,
            "timeout_minutes": request.timeout_minutes,
        },
        plane=rt.control.plane_id,
    )
    data = result.to_dict()
    data["resources"] = {k: {"value": v[k], "source": chosen.sources[k]} for k in v}

    def human() -> None:
        output.echo(
            f"Task {result.task_id} dispatched: container {result.container_id} on {result.backend} "
            f"sandbox {result.sandbox_id}"
        )
        output.echo(chosen.resources_line())
        output.echo(
            f"Rate {money(result.estimate.rate_per_hour)}/h, at most {money(result.estimate.cost_usd)} "
            f"for the timeout; {money(result.estimate.remaining_usd)} of the budget left"
        )
        if not interactive:  # on a terminal they were shown before the dispatch
            for w in result.warnings:
                output.echo(f"Warning: {w}")

    output.success(
        data,
        json_out=rt.json_out,
        human=human,
        next_actions=[
            (f"parhelia task show {result.task_id}", "follow the task"),
            (f"parhelia containers show {result.container_id}", "its container"),
            ("parhelia tui", "watch everything live"),
        ],
        cost_usd=result.estimate.cost_usd,
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only tasks in this status (pending, running...)."),
    ] = None,
    limit: LimitOpt = 50,
    json_out: JsonOpt = False,
) -> None:
    """Recent tasks, newest first."""
    from parhelia.app.payloads import task_list_data

    rt = runtime(ctx, json_out)
    tasks = task_list_data(rt.reader, status=status, limit=limit)

    def human() -> None:
        if not tasks and status:
            output.echo(f"No tasks with status {status}. Every task: parhelia task list")
            return
        if not tasks:
            output.echo("No tasks yet. Start one with: parhelia task create PROMPT")
            return
        output.echo(
            output.table(
                ["ID", "STATUS", "BACKEND", "GPU", "ATTEMPT", "ESTIMATE", "PROMPT"],
                [
                    [
                        t["id"],
                        t["status"],
                        t["backend"],
                        t["gpu"] or "-",
                        str(t["attempt"]),
                        money(t["estimated_cost_usd"]),
                        (t["prompt"][:50] + "…") if len(t["prompt"]) > 50 else t["prompt"],
                    ]
                    for t in tasks
                ],
                right={4, 5},
            )
        )
        live = sum(1 for t in tasks if t["status"] in LIVE_TASK_STATUSES)
        output.echo(f"{live} active (pending or running), {len(tasks) - live} ended")

    output.success(tasks, json_out=rt.json_out, human=human)


@app.command("show")
def show(
    ctx: typer.Context, task: Annotated[str, typer.Argument()], json_out: JsonOpt = False
) -> None:
    """A task with its containers and latest events."""
    from parhelia.app.cli_common import print_events
    from parhelia.app.payloads import task_show_parts

    rt = runtime(ctx, json_out)
    t, containers, events, data = task_show_parts(rt.control, task)

    def human() -> None:
        output.echo(
            f"Task {t.id} [{t.status}] attempt {t.attempt}"
            + (f" (retry of {t.retry_of})" if t.retry_of else "")
        )
        output.echo(f"Prompt    {t.prompt}")
        output.echo(
            f"Resources {t.cpu:g} CPU, {t.memory_mib} MiB, GPU {t.gpu or 'none'}, timeout {t.timeout_minutes} min, "
            f"estimate {money(t.estimated_cost_usd)}"
        )
        for c in containers:
            output.echo(f"Container {c.id} {c.state} {c.health} sandbox {c.sandbox_id or '-'}")
        print_events(events)

    actions = (
        [(f"parhelia task cancel {t.id}", "stop it")]
        if t.status in LIVE_TASK_STATUSES
        else [(f"parhelia task retry {t.id}", "run it again")]
    )
    output.success(data, json_out=rt.json_out, human=human, next_actions=actions)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a task: terminates its containers (asks first unless --yes)."""
    from parhelia.app.prompts import confirm_destructive

    rt = runtime(ctx, json_out)
    t = rt.control.task(task)
    live = [c for c in rt.control.task_containers(t.id) if c.state != "terminated"]
    confirm_destructive(
        rt,
        yes=yes,
        what=f"cancel task {t.id} and terminate {len(live)} container(s)",
        lines=[f"task {t.id} [{t.status}] {t.prompt[:60]}"]
        + [f"{c.id}  {c.state:<10} sandbox {c.sandbox_id or '-'}" for c in live],
        retry_cmd=f"parhelia task cancel {t.id} --yes",
        look_cmd=f"parhelia task show {t.id}",
    )
    from parhelia.app.feedback import working

    with working(f"Cancelling {t.id}", json_out=rt.json_out):
        stopped = rt.control.cancel_task(t.id, actor="user")
    output.success(
        {"task_id": task, "terminated": [c.id for c in stopped]},
        json_out=rt.json_out,
        human=f"Task {task} cancelled; terminated {len(stopped)} container(s)",
        cost_usd=sum(c.cost_accrued_usd for c in stopped),
    )


@app.command("retry")
def retry(
    ctx: typer.Context, task: Annotated[str, typer.Argument()], json_out: JsonOpt = False
) -> None:
    """Dispatch a new attempt of a task, linked to the old one."""
    from parhelia.app.feedback import working

    rt = runtime(ctx, json_out)
    with working(f"Retrying {task}", json_out=rt.json_out) as step:
        result = rt.control.retry_task(task, actor="user", progress=step.stage)
    output.success(
        result.to_dict(),
        json_out=rt.json_out,
        human=f"Task {result.task_id} (retry of {task}) dispatched: container {result.container_id}",
        cost_usd=result.estimate.cost_usd,
    )
