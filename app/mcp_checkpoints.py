"""The checkpoint tools of `parhelia mcp serve` (list, create, diff, restore): registered by
`mcp_server.build_server` with its `tool` decorator and `call` runner, answering what the CLI's
`parhelia checkpoint ... --json` answers (the same functions of `parhelia.workers.checkpoints`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from parhelia.app.mcp_server import READ_ONLY, Fields, actor_of

if TYPE_CHECKING:
    from parhelia.workers.control import ControlPlane

CheckpointId = Annotated[str, Field(description="Checkpoint id (ck-…) or a unique prefix.")]


def register_checkpoint_tools(tool: Callable, call: Callable, control: ControlPlane) -> None:
    from parhelia.workers import checkpoints as ck

    @tool(annotations=READ_ONLY)
    async def checkpoint_list(
        fields: Fields = None,
        container: Annotated[str | None, Field(description="Only this container's.")] = None,
        task: Annotated[str | None, Field(description="Only this task's.")] = None,
        limit: Annotated[int, Field(ge=1, le=10_000)] = 50,
    ) -> str | CallToolResult:
        """Workspace checkpoints, newest first (as `parhelia checkpoint list --json`): id,
        container, task, trigger (manual, terminate...), time, size, files, note, ref."""
        return await call(
            lambda: [
                ck.checkpoint_dict(r)
                for r in ck.checkpoints(control, container=container, task=task, limit=limit)
            ],
            fields,
        )

    @tool()
    async def checkpoint_create(
        container_id: Annotated[str, Field(description="Container id (or sandbox id).")],
        ctx: Context,
        note: Annotated[str | None, Field(description="Why (shown in the list).")] = None,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Snapshot a container's workspace now; the agent keeps running (as `parhelia checkpoint
        create ID --json`). A failure is E600 and changes nothing but an error event."""
        actor = actor_of(ctx)
        return await call(
            lambda: ck.checkpoint_dict(
                ck.create_checkpoint(control, container_id, note=note, actor=actor)
            ),
            fields,
        )

    @tool(annotations=READ_ONLY)
    async def checkpoint_diff(
        a: Annotated[str, Field(description="The older checkpoint.")],
        b: Annotated[str, Field(description="The newer checkpoint.")],
        patch: Annotated[
            bool, Field(description="Include a unified diff of the text files.")
        ] = False,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """What the agent changed in its workspace from checkpoint a to b: files added, removed
        and changed with sizes, a summary, and with patch=true a unified diff (as `parhelia
        checkpoint diff A B --json`). Local checkpoints only (a Modal one is an image: E901)."""
        return await call(lambda: ck.diff_checkpoints(control, a, b, patch=patch).to_dict(), fields)

    @tool()
    async def checkpoint_restore(
        checkpoint_id: CheckpointId,
        ctx: Context,
        prompt: Annotated[
            str | None, Field(description="The agent's prompt (default: its task's).")
        ] = None,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Start a new container and task whose workspace is the checkpoint's (as `parhelia
        checkpoint restore ID --yes --json`): priced and budget-checked like task_create (E300
        over budget), recorded before its sandbox exists."""
        actor = actor_of(ctx)

        def run():
            row, request = ck.restore_request(control, checkpoint_id, prompt=prompt)
            result = ck.restore_checkpoint(control, row.id, request=request, actor=actor)
            return ck.restored_dict(row, result)

        return await call(run, fields)
