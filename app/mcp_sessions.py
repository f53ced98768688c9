"""MCP tools for agent sessions: list, attach info (the command a person runs) and kill (preview
unless confirm=true), over the same `SessionService` as `parhelia session`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from parhelia.app.mcp_server import DESTRUCTIVE, READ_ONLY, Confirm, Fields, actor_of

SessionId = Annotated[
    str, Field(description="Session id (ph-...), or its container or sandbox id.")
]


def register(tool, call, control) -> None:
    """Add the session tools to a server being built (`tool` and `call` are `build`'s helpers)."""
    from parhelia.workers.sessions import SessionService, command_text

    sessions = SessionService(control)

    @tool(annotations=READ_ONLY)
    async def session_list(fields: Fields = None) -> str | CallToolResult:
        """Every running agent session (as `parhelia session list --json`): id, container, task,
        state, attached clients, age, and what the agent is doing (working, idle, or waiting for
        input, with the screen line that shows it). A waiting agent needs a person: give them its
        attach_command."""
        return await call(lambda: [s.to_dict() for s in sessions.list()], fields)

    @tool(annotations=READ_ONLY)
    async def session_attach_info(
        session_id: SessionId, fields: Fields = None
    ) -> str | CallToolResult:
        """How a person attaches a terminal to an agent's session (attaching is interactive, so
        an agent cannot do it): the parhelia command, the underlying tmux command, and how to
        detach without stopping the agent."""

        def run() -> dict:
            info, argv = sessions.attach_argv(session_id)
            return {
                "session_id": info.id,
                "container_id": info.container_id,
                "command": info.attach_command,
                "tmux_command": command_text(info, argv),
                "detach": "Ctrl-b d (the agent goes on)",
                "activity": info.activity,
            }

        return await call(run, fields)

    @tool(annotations=DESTRUCTIVE)
    async def session_kill(
        session_id: SessionId, ctx: Context, confirm: Confirm = False, fields: Fields = None
    ) -> str | CallToolResult:
        """Kill an agent's session (as `parhelia session kill ID --yes --json`): the agent gets a
        hangup and its sandbox ends. Without confirm=true nothing happens: the answer previews it."""
        actor = actor_of(ctx)

        def run() -> dict:
            info = sessions.get(session_id)
            if not confirm:
                return {
                    "preview": True,
                    "action": "session_kill",
                    "actor": actor,
                    "targets": [info.to_dict()],
                    "would": f"hang up the agent of {info.id}; container {info.container_id} ends",
                    "confirm": "call again with confirm=true to do exactly this",
                }
            return sessions.kill(info.id, actor=actor).to_dict()

        return await call(run, fields)
