"""`parhelia mcp serve`: the fleet for agents, over the official MCP SDK's `MCPServer`.

Every tool asks `ControlPlane` and the dashboard view, through the same functions the CLI's
`--json` uses (`parhelia.app.payloads`), so an agent and a person see the same data. The core is
synchronous: tools run it in one worker thread at a time. A `ParheliaError` (bad input, a budget
refusal, a failed backend or database) becomes a tool error whose text is the CLI's JSON error
(code, message, recovery commands), never a trace; the server keeps serving.

Destructive tools (terminate, cancel, cleanup) answer with a preview unless `confirm` is true, and
act as `mcp:<client name>`. New events reach subscribers as resource update notifications:
`resources/subscribe` (the handshake-era protocol Claude Code speaks) and the SDK's
`subscriptions/listen` bus (2026-07-28), both fed by the database watcher the dashboard uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import (
    CallToolResult,
    EmptyResult,
    SubscribeRequestParams,
    TextContent,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from pydantic import Field

from parhelia.app import payloads
from parhelia.state.errors import ParheliaError
from parhelia.state.fields import select_fields
from parhelia.workers.event_tail import EventTail

if TYPE_CHECKING:
    from parhelia.app.runtime import Runtime
    from parhelia.workers.control import ControlPlane

log = logging.getLogger("parhelia.mcp")

EVENTS_URI = "parhelia://events"
RECENT_URI = "parhelia://events/recent"
STATUS_URI = "parhelia://status"
CONTAINER_URI = "parhelia://containers/{container_id}"
POLL_SECONDS = 0.5  # where the database cannot be watched (an in-memory SQLite)

Fields = Annotated[
    list[str] | None,
    Field(
        description="Keep only these fields of each record; dotted paths reach nested ones "
        "(e.g. ['id', 'state', 'cost_accrued_usd'] or ['budget.spent_usd']). Omit for every field."
    ),
]
Confirm = Annotated[
    bool,
    Field(description="false (default): only preview exactly what would happen. true: do it."),
]
Prompt = Annotated[str, Field(description="What the agent should do.", min_length=1)]
Backend = Annotated[str | None, Field(description="local or modal (default: configured).")]
Gpu = Annotated[str | None, Field(description="GPU type (T4, L4, A10G, H100...) or none.")]
Cpu = Annotated[float | None, Field(description="CPU cores (default: configured).")]
Memory = Annotated[int | None, Field(description="Memory in MiB (default: configured).")]
Timeout = Annotated[int | None, Field(description="Timeout in minutes (default: configured).")]
Region = Annotated[str | None, Field(description="Pin to a region (costs 1.5-1.75x).")]
DESTRUCTIVE = ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def as_error(exc: BaseException) -> ParheliaError:
    """Any failure as a coded error: a database that cannot be read is E701, the rest E900."""
    if isinstance(exc, ParheliaError):
        return exc
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return ParheliaError(
            "E701",
            f"the database could not be read: {type(exc.orig or exc).__name__}: {exc.orig or exc}",
            ["parhelia db status", "parhelia config show"],
        )
    return ParheliaError(
        "E900",
        f"{type(exc).__name__}: {exc}",
        ["parhelia events list --level error", "parhelia db status"],
    )


def error_text(err: ParheliaError) -> str | CallToolResult:
    """The CLI's `--json` failure document: what an agent needs to recover."""
    return json.dumps({"success": False, "error": err.to_dict()}, ensure_ascii=False)


def compact(data: Any) -> str | CallToolResult:
    return json.dumps(payloads.plain(data), ensure_ascii=False, separators=(",", ":"))


def actor_of(ctx: Context | None) -> str | CallToolResult:
    """`mcp:<client name>`, from the client's initialize request."""
    params = ctx.session.client_params if ctx is not None else None
    name = params.client_info.name if params and params.client_info else "unknown"
    return f"mcp:{name}"


class EventPush:
    """Tails new events by id after each database change and tells subscribers what changed:
    the events and status resources, and each container an event names."""

    def __init__(self, control: ControlPlane, bus: InMemorySubscriptionBus) -> None:
        self.control = control
        self.bus = bus
        self.subscribers: dict[Any, set[str]] = {}
        self.stop = threading.Event()
        self.tail: EventTail | None = None  # set when the watch starts: news from then on
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changes: asyncio.Queue[list[str]] = asyncio.Queue()

    async def subscribe(self, ctx, params: SubscribeRequestParams) -> EmptyResult:
        self.subscribers.setdefault(ctx.session, set()).add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(self, ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        self.subscribers.get(ctx.session, set()).discard(str(params.uri))
        return EmptyResult()

    def changed_uris(self) -> list[str]:
        """The resources the events committed since the last call touched (none: no new events)."""
        if self.tail is None:
            self.tail = self.control.event_tail()
        rows = self.tail.read()
        if not rows:
            return []
        containers = dict.fromkeys(e.container_id for e in rows if e.container_id)
        return [EVENTS_URI, RECENT_URI, STATUS_URI] + [
            CONTAINER_URI.format(container_id=c) for c in containers
        ]

    async def publish(self, uris: list[str]) -> None:
        for uri in uris:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for session, wanted in list(self.subscribers.items()):
            for uri in uris:
                if uri in wanted:
                    try:
                        await session.send_resource_updated(uri)
                    except Exception:  # that client went away; the others still hear
                        self.subscribers.pop(session, None)
                        break

    def _on_change(self) -> None:
        """On the watcher thread: hand the changed resources to the event loop without waiting
        for it (a thread blocked on a loop that is shutting down would keep the process alive)."""
        try:
            uris = self.changed_uris()
        except Exception as exc:  # a database hiccup: say so on stderr, keep watching
            log.warning("event tail failed: %s", exc)
            return
        if uris and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is ending
                self._loop.call_soon_threadsafe(self._changes.put_nowait, uris)

    def _watch(self) -> None:
        try:
            self.tail = self.control.event_tail()
            # the SQLite file watcher, or LISTEN/NOTIFY on PostgreSQL; polling where neither works
            if not self.control.watch_changes(self._on_change, self.stop):
                while not self.stop.wait(POLL_SECONDS):
                    self._on_change()
        except Exception as exc:
            log.warning("event push stopped: %s", exc)

    async def run(self) -> None:
        """Watch on a daemon thread (it never holds the process open at exit) and publish what
        it reports, here on the loop."""
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._watch, name="parhelia-event-push", daemon=True).start()
        try:
            while True:
                await self.publish(await self._changes.get())
        finally:
            self.stop.set()


def build_server(rt: Runtime) -> tuple[MCPServer, EventPush]:
    """The server with its tools and resources over this runtime's control plane."""
    from parhelia.app.cli_common import parse_time

    bus = InMemorySubscriptionBus()
    control = rt.control
    push = EventPush(control, bus)
    limiter = anyio.CapacityLimiter(1)

    @asynccontextmanager
    async def lifespan(_server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(push.run)
            try:
                yield {}
            finally:
                push.stop.set()
                tg.cancel_scope.cancel()

    server = MCPServer(
        "parhelia",
        instructions=(
            "Parhelia runs Claude Code agents in sandboxes and tracks what runs, its health and its "
            "cost. Start with `status`. Destructive tools preview unless confirm=true. Errors carry "
            "a code (E300 over budget, E603 budget guard) and the commands that recover."
        ),
        subscriptions=bus,
        lifespan=lifespan,
        log_level="WARNING",
    )
    server._lowlevel_server.add_request_handler(  # MCPServer has no public hook for the 2025 subscribe
        "resources/subscribe", SubscribeRequestParams, push.subscribe
    )
    server._lowlevel_server.add_request_handler(
        "resources/unsubscribe", UnsubscribeRequestParams, push.unsubscribe
    )

    def tool(**kw):
        """A tool whose answer is one JSON text (not repeated as structured content: half the tokens)."""
        return server.tool(structured_output=False, **kw)

    async def call(fn: Callable[[], Any], fields: list[str] | None = None) -> str | CallToolResult:
        """Run `fn` in the worker thread; its data (cut to `fields`) as compact JSON, or a tool error."""
        try:
            data = payloads.plain(await anyio.to_thread.run_sync(fn, limiter=limiter))
            if isinstance(data, dict) and data.get("preview") is True:
                return compact(data)  # a preview is shown whole: it is what confirm would do
            return compact(select_fields(data, fields))
        except Exception as exc:
            err = as_error(exc)
            if err.code == "E900":
                log.exception("tool failed")
            return CallToolResult(
                content=[TextContent(type="text", text=error_text(err))], is_error=True
            )

    # -- at a glance ------------------------------------------------------------------------

    @tool(annotations=READ_ONLY)
    async def status(
        fields: Fields = None,
        refresh: Annotated[
            bool, Field(description="Reconcile with the backends first (slower; takes the lease).")
        ] = False,
    ) -> str | CallToolResult:
        """The fleet at a glance, as `parhelia tui --once --format json`: verdict ('ok' or
        'attention'), attention reasons each with the command that fixes it, stale banner, and the
        dashboard (containers, budget, reconciler, recent events). Use fields, e.g.
        ['status', 'attention', 'dashboard.budget'], to keep it short."""

        def run():
            if refresh:
                payloads.reconcile_now(control)
            return payloads.status_data(control.dashboard())

        return await call(run, fields)

    # -- containers -------------------------------------------------------------------------

    @tool(annotations=READ_ONLY)
    async def containers_list(
        fields: Fields = None,
        all: Annotated[
            bool, Field(description="Include containers that ended more than an hour ago.")
        ] = False,
        state: Annotated[
            str | None,
            Field(description="Only this state: created, running, stopped, terminated, orphaned."),
        ] = None,
    ) -> str | CallToolResult:
        """Every container Parhelia knows (as `parhelia containers list --json`): id, sandbox,
        state, health, task, resources, rate and accrued cost. Typical fields:
        ['id', 'state', 'health', 'cost_accrued_usd']."""
        return await call(
            lambda: [
                asdict(c) for c in payloads.select_containers(control, all_=all, state=state)[1]
            ],
            fields,
        )

    @tool(annotations=READ_ONLY)
    async def containers_show(
        container_id: Annotated[str, Field(description="Container id, id prefix or sandbox id.")],
        fields: Fields = None,
    ) -> str | CallToolResult:
        """One container in detail (as `parhelia containers show ID --json`): identity, state,
        health and heartbeats, task, resources and usage, lifecycle, cost, recent events."""
        return await call(lambda: asdict(control.container_detail(container_id)), fields)

    @tool(annotations=READ_ONLY)
    async def containers_health(fields: Fields = None) -> str | CallToolResult:
        """Active containers counted by health (healthy, degraded, unhealthy, dead, unknown) with
        their ids, as `parhelia containers health --json`. Terminate dead ones to stop paying."""
        return await call(
            lambda: payloads.health_data(payloads.health_groups(control.dashboard(event_limit=0))),
            fields,
        )

    @tool(annotations=READ_ONLY)
    async def containers_orphans(fields: Fields = None) -> str | CallToolResult:
        """Sandboxes running with Parhelia's tags that no dispatch recorded (costing money nobody
        watches), as `parhelia containers orphans --json`. Stop them with cleanup_orphans."""
        return await call(
            lambda: [asdict(c) for c in payloads.orphan_rows(control.dashboard(event_limit=0))],
            fields,
        )

    @tool(annotations=DESTRUCTIVE)
    async def containers_terminate(
        container_ids: Annotated[list[str], Field(description="Container ids (or prefixes).")],
        ctx: Context,
        confirm: Confirm = False,
        reason: Annotated[str, Field(description="Why, recorded with the event.")] = "user",
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Stop containers' sandboxes and record who, why, exit code and final cost (as
        `parhelia containers terminate ID --yes --json`). Only Parhelia's own sandboxes are ever
        touched. Without confirm=true nothing happens: the answer previews each target."""
        actor = actor_of(ctx)

        def run():
            targets = [control.container(ref) for ref in container_ids]
            if not confirm:
                return preview("terminate", actor, targets, reason)
            return [asdict(control.terminate(c.id, actor=actor, reason=reason)) for c in targets]

        return await call(run, fields)

    # -- events -----------------------------------------------------------------------------

    @tool(annotations=READ_ONLY)
    async def events_list(
        fields: Fields = None,
        container: Annotated[str | None, Field(description="Only this container's events.")] = None,
        task: Annotated[str | None, Field(description="Only this task's events.")] = None,
        types: Annotated[
            str | None,
            Field(
                description="Comma-separated event types, e.g. 'container.state,budget.warning'."
            ),
        ] = None,
        level: Annotated[
            str | None, Field(description="Minimum level: debug, info, warning or error.")
        ] = None,
        since: Annotated[str | None, Field(description="ISO time, e.g. 2026-11-24T09:00.")] = None,
        until: Annotated[str | None, Field(description="ISO time.")] = None,
        limit: Annotated[int, Field(ge=1, le=10_000)] = 50,
    ) -> str | CallToolResult:
        """Stored events filtered by container, task, type, level and time, newest last (as
        `parhelia events list --json`). Typical fields: ['ts', 'type', 'message']."""
        return await call(
            lambda: [
                asdict(e)
                for e in payloads.event_views(
                    control,
                    container=container,
                    task=task,
                    types=types,
                    level=level,
                    since=parse_time(since),
                    until=parse_time(until),
                    limit=limit,
                )
            ],
            fields,
        )

    @tool(annotations=READ_ONLY)
    async def events_recent(
        fields: Fields = None, limit: Annotated[int, Field(ge=1, le=1000)] = 20
    ) -> str | CallToolResult:
        """The newest events, as the dashboard's events pane shows them, newest last. Subscribe to
        parhelia://events to be told when new ones arrive."""
        return await call(lambda: payloads.recent_events(control, limit), fields)

    # -- tasks ------------------------------------------------------------------------------

    def request(prompt, backend, gpu, cpu, memory, timeout, region):
        from parhelia.app.preferences import task_defaults
        from parhelia.state.requests import TaskRequest

        defaults = task_defaults(rt.loaded, plane=control.plane_id, backend=backend)
        return TaskRequest(
            prompt=prompt,
            backend=backend,
            gpu=gpu if gpu is not None else defaults.get("gpu"),
            cpu=cpu if cpu is not None else defaults["cpu"],
            memory_mib=memory if memory is not None else defaults["memory_mib"],
            timeout_minutes=timeout if timeout is not None else defaults["timeout_minutes"],
            region=region,
        )

    @tool()
    async def task_create(
        prompt: Prompt,
        ctx: Context,
        backend: Backend = None,
        gpu: Gpu = None,
        cpu: Cpu = None,
        memory: Memory = None,
        timeout: Timeout = None,
        region: Region = None,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Dispatch an agent (as `parhelia task create PROMPT --json`): validated, priced against
        the budget, recorded before its sandbox exists. The answer carries the estimate, the budget
        left after this task and every warning. Over budget: error E300 (or E603 when the budget
        guard blocks dispatch) with the commands that recover; call task_estimate first to check."""
        actor = actor_of(ctx)
        req = request(prompt, backend, gpu, cpu, memory, timeout, region)
        return await call(lambda: control.dispatch(req, actor=actor).to_dict(), fields)

    @tool(annotations=READ_ONLY)
    async def task_estimate(
        prompt: Prompt,
        backend: Backend = None,
        gpu: Gpu = None,
        cpu: Cpu = None,
        memory: Memory = None,
        timeout: Timeout = None,
        region: Region = None,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Price a task before dispatching it: hourly rate, cost for the whole timeout, budget spent,
        ceiling, what is left now and after it, and warnings. Nothing is started."""
        req = request(prompt, backend, gpu, cpu, memory, timeout, region)
        return await call(lambda: payloads.estimate_data(control.estimate(req)), fields)

    @tool(annotations=READ_ONLY)
    async def task_list(
        fields: Fields = None,
        status: Annotated[
            str | None,
            Field(description="Only this status: pending, running, completed, failed, cancelled."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=10_000)] = 50,
    ) -> str | CallToolResult:
        """Recent tasks, newest first (as `parhelia task list --json`). Typical fields:
        ['id', 'status', 'estimated_cost_usd']."""
        return await call(
            lambda: payloads.task_list_data(control, status=status, limit=limit), fields
        )

    @tool(annotations=READ_ONLY)
    async def task_show(
        task_id: Annotated[str, Field(description="Task id.")], fields: Fields = None
    ) -> str | CallToolResult:
        """A task with its containers and latest events (as `parhelia task show ID --json`)."""
        return await call(lambda: payloads.task_show_parts(control, task_id)[3], fields)

    @tool(annotations=DESTRUCTIVE)
    async def task_cancel(
        task_id: Annotated[str, Field(description="Task id.")],
        ctx: Context,
        confirm: Confirm = False,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Cancel a task and terminate its running containers (as `parhelia task cancel ID
        --json`). Without confirm=true nothing happens: the answer previews what would stop."""
        actor = actor_of(ctx)

        def run():
            if not confirm:
                from parhelia.state.enums import ContainerState

                task = control.task(task_id)
                live = [
                    c
                    for c in control.task_containers(task.id)
                    if c.state != ContainerState.TERMINATED
                ]
                out = preview("cancel task " + task.id, actor, live, "task_cancelled")
                out["task"] = {"id": task.id, "status": task.status}
                return out
            stopped = control.cancel_task(task_id, actor=actor)
            return {"task_id": task_id, "terminated": [c.id for c in stopped]}

        return await call(run, fields)

    @tool()
    async def task_retry(
        task_id: Annotated[str, Field(description="The task to run again.")],
        ctx: Context,
        fields: Fields = None,
    ) -> str | CallToolResult:
        """Dispatch a new attempt of a task, linked to the old one (as `parhelia task retry ID
        --json`); priced and budget-checked like task_create."""
        actor = actor_of(ctx)
        return await call(lambda: control.retry_task(task_id, actor=actor).to_dict(), fields)

    # -- budget, reconciler, cleanup --------------------------------------------------------

    @tool(annotations=READ_ONLY)
    async def budget_status(fields: Fields = None) -> str | CallToolResult:
        """Spend against the ceiling this period, percent and level, burn rate, running GPUs, when
        the ceiling is reached at this rate, and the policy (as `parhelia budget show --json`)."""
        return await call(lambda: payloads.budget_data(control.dashboard(event_limit=0)), fields)

    @tool()
    async def reconcile_now(fields: Fields = None) -> str | CallToolResult:
        """One reconcile cycle now (list sandboxes, adopt, find orphans, correct states), then a
        heartbeat pass and a budget check, as `parhelia reconciler run --json`. If another process
        holds the lease, nothing is done and acted is false."""

        def run():
            report = payloads.reconcile_now(control)
            if report.error_code:
                raise ParheliaError(
                    report.error_code,
                    report.error or "listing failed",
                    ["parhelia reconciler status", "parhelia config show"],
                )
            return report.to_dict()

        return await call(run, fields)

    @tool(annotations=DESTRUCTIVE)
    async def cleanup_orphans(
        ctx: Context, confirm: Confirm = False, fields: Fields = None
    ) -> str | CallToolResult:
        """Terminate every orphan (a sandbox with Parhelia's tags no dispatch recorded), as
        `parhelia cleanup --orphans --yes --json`. Without confirm=true: a preview of each."""
        actor = actor_of(ctx)

        def run():
            targets = control.orphans()
            if not confirm:
                return preview("terminate orphans", actor, targets, "orphan_cleanup")
            return [
                asdict(control.terminate(c.id, actor=actor, reason="orphan_cleanup"))
                for c in targets
            ]

        return await call(run, fields)

    from parhelia.app.mcp_checkpoints import register_checkpoint_tools

    register_checkpoint_tools(tool, call, control)

    # -- resources --------------------------------------------------------------------------

    async def read(fn: Callable[[], Any]) -> str | CallToolResult:
        try:
            return compact(await anyio.to_thread.run_sync(fn, limiter=limiter))
        except Exception as exc:
            raise ResourceError(error_text(as_error(exc))) from None

    @server.resource(STATUS_URI, mime_type="application/json")
    async def status_resource() -> str | CallToolResult:
        """The status envelope's data: verdict, attention reasons, the dashboard view."""
        return await read(lambda: payloads.status_data(control.dashboard()))

    @server.resource(RECENT_URI, mime_type="application/json")
    async def recent_resource() -> str | CallToolResult:
        """The newest 20 events, newest last."""
        return await read(lambda: payloads.recent_events(control, 20))

    @server.resource(EVENTS_URI, mime_type="application/json")
    async def events_resource() -> str | CallToolResult:
        """The newest 20 events; subscribe to be told of each new one."""
        return await read(lambda: payloads.recent_events(control, 20))

    @server.resource(CONTAINER_URI, mime_type="application/json")
    async def container_resource(container_id: str) -> str | CallToolResult:
        """One container in detail; subscribe to be told when its events change."""
        return await read(lambda: asdict(control.container_detail(container_id)))

    from parhelia.app import mcp_sessions

    mcp_sessions.register(tool, call, control)  # session list, attach info, kill (issue 19)
    return server, push


def preview(action: str, actor: str, containers, reason: str) -> dict:
    """What a destructive call would do, container by container, and how to make it happen."""
    from parhelia.state.enums import ContainerState

    items = [
        {
            "id": c.id,
            "sandbox_id": c.sandbox_id,
            "backend": c.backend,
            "state": c.state,
            "task_id": c.task_id,
            "cost_rate_per_hour": c.cost_rate_per_hour,
            "would": "nothing (already terminated)"
            if c.state == ContainerState.TERMINATED
            else f"terminate sandbox {c.sandbox_id or '(none yet)'} and record it as {reason} by {actor}",
        }
        for c in containers
    ]
    return {
        "preview": True,
        "action": action,
        "actor": actor,
        "targets": items,
        "confirm": "call again with confirm=true to do exactly this",
    }
