"""`parhelia mcp ...`: serve the fleet to agents over MCP, and register the server with Claude Code."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError

app = typer.Typer(
    help="MCP server for agents: serve (stdio or HTTP on 127.0.0.1), install (Claude Code entry).",
    no_args_is_help=True,
)

HOST = "127.0.0.1"  # never another interface: the server can stop sandboxes


@app.command("serve")
def serve(
    ctx: typer.Context,
    transport: Annotated[str, typer.Option("--transport", help="stdio or http.")] = "stdio",
    port: Annotated[
        int, typer.Option("--port", help="Port for --transport http (on 127.0.0.1).")
    ] = 8765,
) -> None:
    """Run the MCP server: stdio (what `claude mcp add` expects) or streamable HTTP on 127.0.0.1.

    Nothing but protocol messages goes to stdout; logs go to stderr."""
    import logging

    import anyio

    from parhelia.app.mcp_server import build_server

    if transport not in ("stdio", "http"):
        raise ParheliaError(
            "E101",
            f"unknown transport {transport!r}; valid: stdio, http",
            ["parhelia mcp serve", "parhelia mcp serve --transport http --port 8765"],
        )
    if not (1 <= port <= 65535):
        raise ParheliaError(
            "E101",
            f"port {port} is out of range; valid: 1-65535",
            ["parhelia mcp serve --transport http --port 8765", "parhelia help mcp"],
        )
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    rt = runtime(ctx)
    rt.store  # noqa: B018 - open (and migrate) the database before the first request, not during it
    server, _push = build_server(rt)
    if transport == "stdio":
        anyio.run(server.run_stdio_async)
    else:
        sys.stderr.write(f"MCP server listening on http://{HOST}:{port}/mcp\n")
        anyio.run(lambda: server.run_streamable_http_async(host=HOST, port=port))


def server_command() -> list[str]:
    """How Claude Code should start the server: this installation's `parhelia`."""
    exe = shutil.which("parhelia")
    here = Path(sys.executable).with_name("parhelia")
    if here.exists():
        exe = str(here)
    return [exe, "mcp", "serve"] if exe else [sys.executable, "-m", "parhelia.app", "mcp", "serve"]


def config_entry(rt) -> dict:
    """The `mcpServers` entry: command, arguments and the database this invocation uses."""
    command = server_command()
    entry: dict = {"type": "stdio", "command": command[0], "args": command[1:]}
    env = {}
    if rt.flags.get("db_url") or os.environ.get("PARHELIA_DB_URL"):
        env["PARHELIA_DB_URL"] = rt.db_url
    if env:
        entry["env"] = env
    return entry


@app.command("install")
def install(
    ctx: typer.Context,
    write: Annotated[
        bool, typer.Option("--write", help="Add the entry to .mcp.json in this directory.")
    ] = False,
    name: Annotated[
        str, typer.Option("--name", help="The server's name in Claude Code.")
    ] = "parhelia",
    json_out: JsonOpt = False,
) -> None:
    """Print the Claude Code configuration entry for this server, or add it to ./.mcp.json."""
    rt = runtime(ctx, json_out)
    entry = config_entry(rt)
    add_line = " ".join(
        ["claude", "mcp", "add", name]
        + [f"-e {k}={v}" for k, v in entry.get("env", {}).items()]
        + ["--", entry["command"], *entry["args"]]
    )
    path = Path.cwd() / ".mcp.json"
    data = {"mcpServers": {name: entry}, "claude_mcp_add": add_line}
    if write:
        doc = {}
        if path.exists():
            try:
                doc = json.loads(path.read_text() or "{}")
            except json.JSONDecodeError as exc:
                raise ParheliaError(
                    "E101",
                    f"{path} is not valid JSON ({exc}); fix or remove it first",
                    ["parhelia mcp install", f"cat {path}"],
                ) from exc
        doc.setdefault("mcpServers", {})[name] = entry
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(path)
        data["written"] = str(path)
    human = (
        f"Added {name!r} to {path}"
        if write
        else json.dumps({"mcpServers": {name: entry}}, indent=2)
    ) + f"\n\nOr register it with Claude Code by running:\n  {add_line}"
    output.success(
        data,
        json_out=rt.json_out,
        human=human,
        next_actions=[("parhelia help mcp", "what the server offers")],
    )
