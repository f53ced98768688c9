"""`parhelia session list | attach | kill`: the tmux sessions agents run in, on this machine
(workers/sessions.py) or in their Modal sandboxes (workers/modal_sessions.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError
from parhelia.state.timeutil import compact_duration

app = typer.Typer(
    help="Agent sessions: list (the default), attach, kill.",
    invoke_without_command=True,
)

IdArg = Annotated[str, typer.Argument(help="Session id (ph-...), or its container or sandbox id.")]


@app.callback()
def default(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Bare `parhelia session` lists them."""
    if ctx.invoked_subcommand is None:
        list_(ctx, json_out=json_out)


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every running agent session: id, container, task, state, attached clients, age, activity."""
    from parhelia.workers.sessions import SessionService, tmux_available

    rt = runtime(ctx, json_out)
    sessions = SessionService(rt.control).list()
    rows = [
        [
            s.id,
            s.container_id,
            s.task_id or "-",
            s.state,
            str(s.attached_clients),
            compact_duration(s.age_seconds),
            s.activity,
        ]
        for s in sessions
    ]

    def human() -> None:
        if not sessions:
            why = "" if tmux_available() else " (tmux is not installed: agents run without one)"
            output.echo(f"No agent sessions{why}. Start one with: parhelia task create PROMPT")
            return
        output.echo(
            output.table(
                ["ID", "CONTAINER", "TASK", "STATE", "CLIENTS", "AGE", "ACTIVITY"],
                rows,
                right={4, 5},
            )
        )
        for s in sessions:
            if s.activity == "waiting":
                output.echo(f"{s.id} is waiting for input: {s.attach_command}")
            if s.error:
                output.echo(f"{s.id} could not be read: {s.error}")

    waiting = [s for s in sessions if s.activity == "waiting"]
    actions = [(s.attach_command, f"answer {s.container_id}'s agent") for s in waiting]
    if sessions and not waiting:
        actions.append((sessions[0].attach_command, "watch an agent (detach: Ctrl-b d)"))
    output.success(
        [s.to_dict() for s in sessions],
        json_out=rt.json_out,
        human=human,
        next_actions=actions,
    )


@app.command("attach")
def attach(ctx: typer.Context, session: IdArg, json_out: JsonOpt = False) -> None:
    """Attach this terminal to an agent's session (tmux); detach with Ctrl-b d: the agent goes on."""
    from parhelia.workers.sessions import SessionService, command_text

    rt = runtime(ctx, json_out)
    info, argv = SessionService(rt.control).attach_argv(session)
    command = command_text(info, argv)
    if rt.json_out or not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ParheliaError(
            "E601",
            f"attaching to {info.id} needs a terminal (stdin and stdout are not one)",
            [f"parhelia session attach {info.id}", command, f"parhelia containers logs {info.container_id}"],
            attempted=f"attach to session {info.id}",
        )  # fmt: skip
    sys.stdout.flush()
    try:
        code = subprocess.call(argv)
    except OSError as exc:
        code, reason = 127, str(exc)
    else:
        reason = f"{'modal shell' if info.backend == 'modal' else 'tmux attach'} exited with {code}"
    if code != 0:
        raise ParheliaError(
            "E601",
            f"could not attach to {info.id}: {reason}",
            ["parhelia session list", command, f"parhelia containers show {info.container_id}"],
            attempted=f"attach to session {info.id}",
        )
    if not SessionService(rt.control).still_running(info):
        output.echo(f"Session {info.id} has ended (its agent finished while attached).")
        return
    output.echo(
        f"Detached from {info.id}; its agent goes on. Again: parhelia session attach {info.id}"
    )
    from parhelia.workers.checkpoints import checkpoint_on_detach

    taken = checkpoint_on_detach(rt.control, info.container_id, info.id)  # E600 on failure
    if taken is not None:
        output.echo(
            f"Checkpoint {taken.id} of {info.container_id} taken on detach "
            f"({taken.files} files). See: parhelia checkpoint list --container {info.container_id}"
        )


@app.command("kill")
def kill(
    ctx: typer.Context,
    session: IdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Kill an agent's session: the agent gets a hangup and its sandbox ends (asks first)."""
    from parhelia.app.prompts import confirm_destructive
    from parhelia.workers.sessions import SessionService

    rt = runtime(ctx, json_out)
    service = SessionService(rt.control)
    info = service.get(session)
    confirm_destructive(
        rt,
        yes=yes,
        what=f"kill session {info.id}",
        lines=[
            f"{info.id}  container {info.container_id}  task {info.task_id or '-'}  "
            f"{info.attached_clients} attached, up {compact_duration(info.age_seconds)}",
            "its agent stops and its sandbox ends",
        ],
        retry_cmd=f"parhelia session kill {info.id} --yes",
        look_cmd="parhelia session list",
    )
    done = service.kill(info.id)
    output.success(
        done.to_dict(),
        json_out=rt.json_out,
        human=f"Killed session {done.id}; container {done.container_id} is ending.",
        next_actions=[(f"parhelia containers show {done.container_id}", "how it ended")],
    )


@app.command("hook")
def hook(
    ctx: typer.Context,
    event: Annotated[
        str | None,
        typer.Argument(
            help="The Claude Code hook event (Notification, Stop, UserPromptSubmit, PreToolUse...); "
            "default: the hook_event_name of the JSON on stdin."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """What Claude Code's hooks call: record what the agent of this session is doing.

    Silent (a hook's output can reach the agent's context) and a no-op outside a Parhelia
    session (no PARHELIA_CONTAINER_ID) or for a container this store does not know. `parhelia session hooks-config` prints the settings."""
    import json
    import os

    from parhelia.state.agent_activity import activity_of

    rt = runtime(ctx, json_out)
    payload: dict = {}
    if not sys.stdin.isatty():
        try:
            payload = json.loads(sys.stdin.read() or "{}")
        except (OSError, ValueError):  # no readable stdin, or not JSON: the argument decides
            payload = {}
        payload = payload if isinstance(payload, dict) else {}
    name = event or payload.get("hook_event_name")
    if not name:
        raise ParheliaError(
            "E102",
            "which hook event? Give it (parhelia session hook Notification) or pipe Claude "
            "Code's hook JSON with hook_event_name",
            ["parhelia session hook Notification", "parhelia session hooks-config"],
        )
    activity_of(str(name))  # E101 for an event Parhelia does not read
    container = os.environ.get("PARHELIA_CONTAINER_ID")  # set in the agent's session
    recorded = None
    if container:  # (the store and its libraries are loaded only here: a hook runs often)
        from parhelia.state.timeutil import utcnow
        from parhelia.workers.agent_hooks import SESSION_ENV, record_hook

        message = payload.get("message")
        try:
            recorded = record_hook(
                rt.store,
                container,
                str(name),
                session_id=os.environ.get(SESSION_ENV),
                message=message if isinstance(message, str) else None,
                now=utcnow(),
            )
        except ParheliaError as exc:
            # An agent of another store (its own PARHELIA_DB_URL, or a store since deleted): this
            # one has nothing to record, and a failing hook would interrupt the agent at every
            # tool call. Silent, as outside a session.
            if exc.code != "E204":
                raise
    if rt.json_out:
        output.success(
            {
                "container_id": container,
                "event": name,
                "recorded": recorded is not None,
                "activity": recorded.new_value if recorded is not None else None,
            },
            json_out=True,
        )


@app.command("hooks-config")
def hooks_config(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The Claude Code settings (.claude/settings.json) whose hooks tell Parhelia what each agent
    is doing: waiting for input (Notification), idle (Stop), working (UserPromptSubmit,
    PreToolUse). Merge its "hooks" into your project's or user's settings."""
    import json

    from parhelia.workers.agent_hooks import hooks_config as config

    rt = runtime(ctx, json_out)
    doc = config()
    output.success(
        doc,
        json_out=rt.json_out,
        human=json.dumps(doc, indent=2),
        next_actions=[("parhelia session list", "see each agent's activity (source: hook)")],
    )
