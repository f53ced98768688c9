"""The MCP server end to end: the official MCP client (`mcp.ClientSession` over the stdio client)
against a real `parhelia mcp serve` subprocess on a temporary store with the local backend.

Tools listed and called, each answer compared with the CLI's `--json` for the same question,
`fields`, preview-then-confirm on a real local process with the actor `mcp:<client>`, coded
errors (budget refusal, bad input, an unreadable table) after which the server keeps serving, and
a resource subscription notified of an event another process commits."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import asynccontextmanager

import anyio
import mcp.types as types
import psutil
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from parhelia.state.errors import CATALOGUE

CLIENT = "pytest-agent"
ACTOR = f"mcp:{CLIENT}"
RECORD_TOOLS = {
    "status",
    "containers_list",
    "containers_show",
    "containers_health",
    "containers_orphans",
    "containers_terminate",
    "events_list",
    "events_recent",
    "task_create",
    "task_estimate",
    "task_list",
    "task_show",
    "task_cancel",
    "task_retry",
    "budget_status",
    "reconcile_now",
    "cleanup_orphans",
}
# Values that move with the clock between two reads of the same store (accrued cost, the view's
# own timestamp, the reconciler's countdown); everything else must be identical.
VOLATILE = {
    "generated_at",
    "cost_accrued_usd",
    "spent_usd",
    "percent",
    "remaining_usd",
    "ceiling_at",
    "next_run_at",
    "trend",  # the spend trend's last hour grows with the accrued cost
    "agents",  # a live reading of each agent's pane: "output 2s ago" one moment, 3s the next
}


def stable(data):
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


@asynccontextmanager
async def session(env, on_message=None):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "parhelia.app", "mcp", "serve"],
        env=env.env,
        cwd=str(env.project),
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(
            read,
            write,
            client_info=types.Implementation(name=CLIENT, version="1"),
            message_handler=on_message,
        ) as s,
    ):
        await s.initialize()
        yield s


async def call(s: ClientSession, tool: str, **args):
    """A successful tool call's JSON answer."""
    result = await s.call_tool(tool, args)
    assert not result.is_error, (tool, result.content[0].text)
    return json.loads(result.content[0].text)


async def call_error(s: ClientSession, tool: str, **args) -> dict:
    """A failed tool call's coded error: the CLI's JSON error document, never a trace."""
    result = await s.call_tool(tool, args)
    assert result.is_error, (tool, result.content)
    text = result.content[0].text
    assert "Traceback" not in text
    doc = json.loads(text)
    assert doc["success"] is False
    err = doc["error"]
    assert err["code"] in CATALOGUE and len(err["suggestions"]) >= 2
    return err


def sandbox_pid(env, sandbox_id: str) -> int:
    """The pid the local backend recorded for the sandbox's process group leader."""
    return json.loads((env.sandbox_root / "registry" / f"{sandbox_id}.json").read_text())["pid"]


# -- the tools ------------------------------------------------------------------------------


def test_tools_are_listed_with_typed_schemas_descriptions_and_fields(parhelia_env):
    async def body():
        async with session(parhelia_env) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            caps = s.server_capabilities
        assert len(tools) >= 15
        assert set(tools) >= RECORD_TOOLS
        for name, tool in tools.items():
            assert len(tool.description or "") > 60, name
            schema = tool.input_schema
            assert schema["type"] == "object"
            for prop, spec in schema["properties"].items():
                assert "type" in spec or "anyOf" in spec, (name, prop)
            assert "fields" in schema["properties"], name
        for name in ("containers_terminate", "task_cancel", "cleanup_orphans"):
            assert "confirm" in tools[name].input_schema["properties"]
            assert tools[name].annotations.destructive_hint is True
        assert tools["task_create"].input_schema["required"] == ["prompt"]
        assert caps.resources.subscribe is True

    anyio.run(body)


def test_each_tool_answers_what_the_cli_json_answers(parhelia_env):
    env = parhelia_env
    made = env.ok("task", "create", "compare me")
    cid, tid = made["container_id"], made["task_id"]

    async def body():
        async with session(env) as s:
            pairs = [
                (
                    await call(s, "status"),
                    json.loads(env.run("tui", "--once", "--no-refresh", "--format", "json").out)[
                        "data"
                    ],
                ),
                (await call(s, "containers_list"), env.ok("containers", "list")),
                (
                    await call(s, "containers_list", all=True),
                    env.ok("containers", "list", "--all"),
                ),
                (
                    await call(s, "containers_show", container_id=cid),
                    env.ok("containers", "show", cid),
                ),
                (await call(s, "containers_health"), env.ok("containers", "health")),
                (await call(s, "containers_orphans"), env.ok("containers", "orphans")),
                (await call(s, "events_list"), env.ok("events", "list")),
                (
                    await call(s, "events_list", task=tid, level="info", limit=5),
                    env.ok("events", "list", "--task", tid, "--level", "info", "-n", "5"),
                ),
                (await call(s, "task_list"), env.ok("task", "list")),
                (await call(s, "task_show", task_id=tid), env.ok("task", "show", tid)),
                (await call(s, "budget_status"), env.ok("budget", "show")),
            ]
            for got, want in pairs:
                assert stable(got) == stable(want)
            # the dashboard's events pane is the envelope's event list
            recent = await call(s, "events_recent", limit=5)
            cli_events = json.loads(
                env.run("tui", "--once", "--no-refresh", "--format", "json").out
            )["data"]["dashboard"]["events"]
            assert recent == cli_events[-5:]

            estimate = await call(s, "task_estimate", prompt="x", cpu=2, timeout=30)
            assert estimate["budget_left_after_usd"] == pytest.approx(
                estimate["remaining_usd"] - estimate["cost_usd"]
            )
            report = await call(s, "reconcile_now")
            cli_report = env.ok("reconciler", "run")
            assert report["acted"] is True and report["known"] == cli_report["known"]

            created = await call(s, "task_create", prompt="from an agent", cpu=1, timeout=10)
            assert set(created) >= {"task_id", "container_id", "estimate", "warnings"}
            assert created["budget_left_after_usd"] == pytest.approx(
                created["estimate"]["remaining_usd"] - created["estimate"]["cost_usd"]
            )
            assert env.ok("task", "show", created["task_id"])["task"]["actor"] == ACTOR
            retried = await call(s, "task_retry", task_id=created["task_id"])
            assert (
                env.ok("task", "show", retried["task_id"])["task"]["retry_of"]
                == (created["task_id"])
            )

    anyio.run(body)


def test_fields_keep_only_the_named_fields_dotted_paths_included(parhelia_env):
    env = parhelia_env
    env.ok("task", "create", "one")
    env.ok("task", "create", "two")

    async def body():
        async with session(env) as s:
            rows = await call(s, "containers_list", fields=["id", "state"])
            assert len(rows) == 2 and all(set(r) == {"id", "state"} for r in rows)
            st = await call(s, "status", fields=["status", "dashboard.budget.level"])
            assert set(st) == {"status", "dashboard"}
            assert st["dashboard"] == {"budget": {"level": "ok"}}
            shown = await call(
                s,
                "task_show",
                task_id=rows[0]["id"] and (await call(s, "task_list"))[0]["id"],
                fields=["task.status", "containers.id"],
            )
            assert set(shown["task"]) == {"status"}
            assert all(set(c) == {"id"} for c in shown["containers"])
            full = await call(s, "events_list")
            cut = await call(s, "events_list", fields=["type"])
            assert [e["type"] for e in full] == [e["type"] for e in cut]
            err = await call_error(s, "containers_list", fields=["nope"])
            assert err["code"] == "E101" and "state" in err["message"]

    anyio.run(body)


def test_terminate_previews_then_stops_a_real_process_as_the_mcp_client(parhelia_env):
    env = parhelia_env

    async def body():
        async with session(env) as s:
            made = await call(s, "task_create", prompt="stop me", timeout=10)
            cid = made["container_id"]
            proc = psutil.Process(sandbox_pid(env, made["sandbox_id"]))
            assert proc.is_running()

            preview = await call(s, "containers_terminate", container_ids=[cid])
            assert preview["preview"] is True and preview["actor"] == ACTOR
            (target,) = preview["targets"]
            assert target["id"] == cid and target["sandbox_id"] == made["sandbox_id"]
            assert target["would"].startswith(f"terminate sandbox {made['sandbox_id']}")
            assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            assert env.ok("containers", "show", cid)["container"]["state"] == "running"

            (done,) = await call(s, "containers_terminate", container_ids=[cid], confirm=True)
            assert done["state"] == "terminated" and done["termination_reason"] == "user"
            proc.wait(timeout=10)
            events = await call(s, "events_list", container=cid, types="container.state")
            assert events[-1]["actor"] == ACTOR and events[-1]["new_value"] == "terminated"
            again = await call(s, "containers_terminate", container_ids=[cid])
            assert again["targets"][0]["would"].startswith("nothing")

            # cancel: the same preview, then the task's container stops
            other = await call(s, "task_create", prompt="cancel me", timeout=10)
            p = await call(s, "task_cancel", task_id=other["task_id"])
            assert [t["id"] for t in p["targets"]] == [other["container_id"]]
            assert p["task"]["status"] == "running"
            done = await call(s, "task_cancel", task_id=other["task_id"], confirm=True)
            assert done == {"task_id": other["task_id"], "terminated": [other["container_id"]]}

            # cleanup with no orphans: an empty preview and nothing done
            assert (await call(s, "cleanup_orphans"))["targets"] == []
            assert await call(s, "cleanup_orphans", confirm=True) == []
            missing = await call_error(s, "containers_terminate", container_ids=["c-nope"])
            assert missing["code"].startswith("E2")

    anyio.run(body)


def test_budget_refusal_and_bad_input_are_coded_errors(parhelia_env, monkeypatch):
    monkeypatch.setenv("PARHELIA_BUDGET_CEILING_USD", "1")

    async def body():
        async with session(parhelia_env) as s:
            err = await call_error(
                s, "task_create", prompt="too dear", backend="modal", gpu="H100", timeout=600
            )
            assert err["code"] == "E300"
            assert "parhelia budget set AMOUNT" in err["suggestions"]
            err = await call_error(s, "task_estimate", prompt="x", timeout=100000)
            assert err["code"] == "E101"
            err = await call_error(s, "events_list", level="loud")
            assert err["code"] == "E101"
            # nothing was dispatched by the refusal
            assert await call(s, "task_list") == []

    anyio.run(body)


def test_a_database_failure_is_a_tool_error_and_the_server_keeps_serving(parhelia_env):
    env = parhelia_env
    env.ok("task", "list")  # creates the schema

    async def body():
        async with session(env) as s:
            db = sqlite3.connect(env.db_path)
            db.execute("ALTER TABLE events RENAME TO events_away")
            db.commit()
            err = await call_error(s, "events_list")
            assert err["code"] == "E701"
            db.execute("ALTER TABLE events_away RENAME TO events")
            db.commit()
            db.close()
            assert await call(s, "events_list") == []
            assert len((await s.list_tools()).tools) >= 15

    anyio.run(body)


# -- push and resources ---------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from parhelia.state.store import Store
    store = Store(sys.argv[1])
    store.add_event("note", sys.argv[2], container_id=sys.argv[3] if len(sys.argv) > 3 else None)
    store.close()
    """
)


# resources/subscribe is the handshake-era (2025-11-25) way, the one Claude Code speaks today
@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
def test_a_subscriber_is_notified_of_an_event_another_process_commits(parhelia_env):
    env = parhelia_env
    made = env.ok("task", "create", "watch me")
    cid = made["container_id"]
    container_uri = f"parhelia://containers/{cid}"

    async def body():
        updated: list[str] = []
        arrived = anyio.Event()

        async def on_message(message):
            if isinstance(message, types.ResourceUpdatedNotification):
                updated.append(str(message.params.uri))
                if container_uri in updated:
                    arrived.set()

        async with session(env, on_message) as s:
            await s.subscribe_resource("parhelia://events")
            await s.subscribe_resource(container_uri)
            await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [sys.executable, "-c", WRITER, env.db_url, "written elsewhere", cid],
                    check=True,
                    env=env.env,
                )
            )
            with anyio.fail_after(15):
                await arrived.wait()
            assert "parhelia://events" in updated
            contents = await s.read_resource("parhelia://events/recent")
            recent = json.loads(contents.contents[0].text)
            assert recent[-1]["message"] == "written elsewhere"
            detail = json.loads((await s.read_resource(container_uri)).contents[0].text)
            assert detail["container"]["id"] == cid
            status = json.loads((await s.read_resource("parhelia://status")).contents[0].text)
            assert status["dashboard"]["containers"][0]["id"] == cid

    anyio.run(body)


def test_a_2026_listen_stream_is_told_of_an_event_another_process_commits(parhelia_env):
    """The 2026-07-28 protocol's `subscriptions/listen`, as `mcp.Client` negotiates by default."""
    from mcp import Client

    env = parhelia_env
    env.ok("task", "list")  # creates the schema
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "parhelia.app", "mcp", "serve"], env=env.env
    )

    async def body():
        async with Client(params) as client:
            assert client.session.protocol_version >= "2026-07-28"
            async with client.listen(resource_subscriptions=["parhelia://events"]) as sub:
                await anyio.to_thread.run_sync(
                    lambda: subprocess.run(
                        [sys.executable, "-c", WRITER, env.db_url, "listened"],
                        check=True,
                        env=env.env,
                    )
                )
                with anyio.fail_after(15):
                    event = await sub.__anext__()
            assert event.uri == "parhelia://events"

    anyio.run(body)


# -- install, help, http ----------------------------------------------------------------------


def test_install_prints_and_writes_the_claude_code_entry(parhelia_env):
    env = parhelia_env
    printed = env.ok("mcp", "install")
    entry = printed["mcpServers"]["parhelia"]
    assert entry["args"] == ["mcp", "serve"] and entry["type"] == "stdio"
    assert entry["env"]["PARHELIA_DB_URL"] == env.db_url
    assert printed["claude_mcp_add"].startswith("claude mcp add parhelia ")
    (env.project / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}))
    written = env.ok("mcp", "install", "--write")
    doc = json.loads((env.project / ".mcp.json").read_text())
    assert set(doc["mcpServers"]) == {"other", "parhelia"} and written["written"]
    assert "confirm=true" in env.run("help", "mcp").out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_transport_serves_on_loopback_only(parhelia_env):
    from mcp.client.streamable_http import streamable_http_client

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parhelia.app",
            "mcp",
            "serve",
            "--transport",
            "http",
            "--port",
            str(port),
        ],
        env=parhelia_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        async def body():
            with anyio.fail_after(20):
                while True:  # polling a real process's port, with a deadline
                    try:
                        await anyio.connect_tcp("127.0.0.1", port)
                        break
                    except OSError:
                        await anyio.sleep(0.05)
            url = f"http://127.0.0.1:{port}/mcp"
            async with (
                streamable_http_client(url) as streams,
                ClientSession(streams[0], streams[1]) as s,
            ):
                await s.initialize()
                assert len((await s.list_tools()).tools) >= 15
                assert (await call(s, "budget_status"))["level"] == "ok"

        anyio.run(body)
        listening = [
            c.laddr
            for c in psutil.Process(proc.pid).net_connections()
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
    finally:
        proc.terminate()
        out, _err = proc.communicate(timeout=10)
    assert out == b""


def test_stdout_carries_only_protocol_messages(parhelia_env):
    """Raw stdio, no client library: every line the server writes is a JSON-RPC message, even
    while it dispatches a real agent process and reads a broken table."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhelia.app", "mcp", "serve"],
        env=parhelia_env.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": CLIENT, "version": "1"},
    }
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "status"}},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "task_create", "arguments": {"prompt": "hi", "timeout": 5}},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}},
    ]
    proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
    proc.stdin.flush()
    answered: set[int] = set()
    try:
        while not answered >= {
            1,
            2,
            3,
            4,
        }:  # ends at EOF if the server dies (pytest-timeout bounds it)
            line = proc.stdout.readline()
            assert line, "the server closed stdout before answering"
            message = json.loads(line)  # anything but JSON-RPC on stdout fails here
            assert message["jsonrpc"] == "2.0"
            answered.add(message.get("id"))
    finally:
        try:  # communicate closes stdin: at its EOF the server ends, and must not linger
            rest, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest.splitlines())
