"""`parhelia checkpoint ...`: snapshots of an agent's workspace: create, list, diff, restore into
a new container and task, and retention. The work is in `parhelia.workers.checkpoints`."""

from __future__ import annotations

from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, LimitOpt, runtime
from parhelia.app.textfmt import age, money

app = typer.Typer(
    help="Checkpoints: snapshots of an agent's workspace (create, list, diff, restore, cleanup).",
    no_args_is_help=True,
)


@app.command("create")
def create(
    ctx: typer.Context,
    container: Annotated[str, typer.Argument(help="Container id (or sandbox id, or prefix).")],
    note: Annotated[str | None, typer.Option("--note", help="Why (shown in the list).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Snapshot a container's workspace now (the agent keeps running)."""
    from parhelia.app.feedback import working
    from parhelia.state.checkpoints import size_text
    from parhelia.workers.checkpoints import checkpoint_dict, create_checkpoint

    rt = runtime(ctx, json_out)
    with working(f"Checkpointing {container}", json_out=rt.json_out):
        row = create_checkpoint(rt.control, container, note=note, actor="user")
    output.success(
        checkpoint_dict(row),
        json_out=rt.json_out,
        human=f"Checkpoint {row.id} of {row.container_id}: {row.files} files, "
        f"{size_text(row.size_bytes)} ({row.ref[:19]})",
        next_actions=[
            (f"parhelia checkpoint list --container {row.container_id}", "its checkpoints"),
            (f"parhelia checkpoint restore {row.id}", "start a new agent from it"),
        ],
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    container: Annotated[
        str | None, typer.Option("--container", "-c", help="Only this container's.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task's.")] = None,
    limit: LimitOpt = 50,
    json_out: JsonOpt = False,
) -> None:
    """Checkpoints, newest first: id, container, task, trigger, age, size, files, note."""
    from parhelia.state.checkpoints import size_text
    from parhelia.state.timeutil import utcnow
    from parhelia.workers.checkpoints import checkpoint_dict, checkpoints

    rt = runtime(ctx, json_out)
    rows = checkpoints(rt.control, container=container, task=task, limit=limit)
    now = utcnow()

    def human() -> None:
        if not rows:
            output.echo("No checkpoints yet. Take one with: parhelia checkpoint create CONTAINER")
            return
        output.echo(
            output.table(
                ["ID", "CONTAINER", "TASK", "TRIGGER", "AGE", "SIZE", "FILES", "NOTE"],
                [
                    [
                        r.id,
                        r.container_id,
                        r.task_id or "-",
                        r.trigger,
                        age(r.created_at, now),
                        size_text(r.size_bytes),
                        str(r.files),
                        (r.note or "")[:40],
                    ]
                    for r in rows
                ],
                right={5, 6},
            )
        )

    output.success([checkpoint_dict(r) for r in rows], json_out=rt.json_out, human=human)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The older checkpoint.")],
    b: Annotated[str, typer.Argument(help="The newer checkpoint.")],
    stat: Annotated[bool, typer.Option("--stat", help="Only the summary line.")] = False,
    patch: Annotated[
        bool, typer.Option("--patch", "-p", help="A unified diff of the text files.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """What changed in the workspace from checkpoint A to B: files added, removed, changed."""
    from parhelia.state.checkpoints import size_text
    from parhelia.workers.checkpoints import diff_checkpoints

    rt = runtime(ctx, json_out)
    result = diff_checkpoints(rt.control, a, b, patch=patch)
    d = result.diff

    def human() -> None:
        if not stat:
            for c in d.all:
                mark = {"added": "A", "removed": "D", "changed": "M"}[c.kind]
                sizes = (
                    size_text(c.new_size)
                    if c.kind == "added"
                    else size_text(c.old_size)
                    if c.kind == "removed"
                    else f"{size_text(c.old_size)} -> {size_text(c.new_size)}"
                )
                output.echo(f"{mark}  {c.path}  ({sizes})")
        output.echo(d.stat_line())
        if result.patch:
            output.write(result.patch)

    output.success(result.to_dict(), json_out=rt.json_out, human=human)


@app.command("restore")
def restore(
    ctx: typer.Context,
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint id (or prefix).")],
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="The agent's prompt (default: its task's).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept warnings; ask nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """A new container and task whose workspace starts as the checkpoint's; estimated against
    the budget and recorded before its sandbox exists, as `task create` does."""
    from parhelia.app.feedback import working
    from parhelia.app.prompts import on_terminal, show_estimate_and_confirm
    from parhelia.workers.checkpoints import restore_checkpoint, restore_request, restored_dict

    rt = runtime(ctx, json_out)
    row, request = restore_request(rt.control, checkpoint, prompt=prompt)
    if on_terminal() and not rt.json_out:
        show_estimate_and_confirm(rt, request, ask=not yes)
    with working(f"Restoring {row.id} into a new {row.backend} sandbox", json_out=rt.json_out):
        result = restore_checkpoint(rt.control, row.id, request=request, actor="user")
    data = restored_dict(row, result)
    output.success(
        data,
        json_out=rt.json_out,
        human=(
            f"Checkpoint {row.id} restored: task {result.task_id}, container "
            f"{result.container_id} on {result.backend} sandbox {result.sandbox_id}\n"
            f"Rate {money(result.estimate.rate_per_hour)}/h, at most "
            f"{money(result.estimate.cost_usd)} for the timeout"
        ),
        next_actions=[
            (f"parhelia containers show {result.container_id}", "the new container"),
            (f"parhelia task show {result.task_id}", "follow the task"),
        ],
        cost_usd=result.estimate.cost_usd,
    )


@app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    keep: Annotated[
        int | None,
        typer.Option("--keep", help="Keep this many per container (default: [checkpoint] keep)."),
    ] = None,
    container: Annotated[
        str | None, typer.Option("--container", "-c", help="Only this container's.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what would go (and the bytes freed); delete nothing."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete each container's checkpoints past the newest KEEP (oldest first, never the newest
    nor one a live container was restored from) and the archived files no other one uses."""
    from parhelia.app.prompts import confirm_destructive
    from parhelia.state.checkpoints import size_text
    from parhelia.workers.checkpoints import apply_cleanup, plan_cleanup

    rt = runtime(ctx, json_out)
    plan = plan_cleanup(rt.control, keep, container=container)
    lines = [
        f"{r.id}  {r.container_id}  {r.trigger}  {r.created_at:%Y-%m-%d %H:%M}  "
        f"{size_text(r.size_bytes)}"
        for r in plan.delete
    ]
    scope = f" --container {container}" if container else ""
    again = f"parhelia checkpoint cleanup --keep {plan.keep}{scope}"
    if dry_run:
        done = plan
    else:
        if plan.delete:
            confirm_destructive(
                rt,
                yes=yes,
                what=f"delete {len(plan.delete)} checkpoint(s), keeping the newest {plan.keep} "
                f"of each container (frees {size_text(plan.freed_bytes)} of archive)",
                lines=lines,
                retry_cmd=f"{again} --yes",
                look_cmd=f"{again} --dry-run",
            )
        done = apply_cleanup(rt.control, plan, actor="user")
    verb = "Would delete" if dry_run else "Deleted"
    held = [f"{r.id} (kept: a live container was restored from it)" for r in done.held]

    def human() -> None:
        if dry_run and lines:
            output.echo("\n".join(f"  {line}" for line in lines))
        for line in held:
            output.echo(f"  {line}")
        freed = f"{'frees' if dry_run else 'freed'} {size_text(done.freed_bytes)} of archive"
        output.echo(f"{verb} {len(done.delete)} checkpoint(s); {freed}")

    output.success(
        {
            "keep": done.keep,
            "dry_run": dry_run,
            "deleted": [] if dry_run else [r.id for r in done.delete],
            "would_delete": [r.id for r in done.delete] if dry_run else [],
            "held": [r.id for r in done.held],
            "freed_bytes": 0 if dry_run else done.freed_bytes,
            "would_free_bytes": done.freed_bytes if dry_run else 0,
        },
        json_out=rt.json_out,
        human=human,
        next_actions=[(f"{again} --yes", "delete them")] if dry_run and done.delete else [],
    )


app.command("prune", help="Same as `checkpoint cleanup`.")(cleanup)
