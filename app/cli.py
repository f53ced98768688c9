"""The `parhelia` command line: `parhelia <noun> <verb>`, aliases, `--json` everywhere, and errors
with codes and recovery commands instead of tracebacks.

Kept cheap to import: Textual, Modal, SQLModel and MCP load only inside the commands that need them.
"""

from __future__ import annotations

import os as _os

if "_PARHELIA_COMPLETE" in _os.environ:  # a Tab in the shell: an id answers before Typer loads
    from parhelia.app.completion_fast import answer as _answer

    if _answer():
        raise SystemExit(0)

import difflib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # Typer >= 0.28 vendors Click; its exceptions are not the `click` package's.
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click

from parhelia.app import output
from parhelia.app.runtime import Runtime
from parhelia.state.errors import CATALOGUE, RESERVED, ParheliaError

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (for scripts and agents).")
]

# The most rows a `--limit` may ask for: beyond this a listing is not a listing, and SQLite's
# integers end at 2**63 (a bigger number was an OverflowError, E900).
MAX_LIMIT = 1_000_000

app = typer.Typer(
    name="parhelia",
    help="Run Claude Code agents in sandboxes and always know what is running, its health and its cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def runtime(ctx: typer.Context, json_out: bool = False) -> Runtime:
    """The invocation's runtime, created by the root callback; `--json` may come before or after the verb."""
    rt: Runtime = ctx.find_root().obj
    rt.json_out = rt.json_out or json_out
    return rt


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("parhelia")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            v = "unknown"
        sys.stdout.write(f"parhelia {v}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (any SQLAlchemy URL).")
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="auto, local or modal.")] = None,
    json_out: JsonOpt = False,
    fields: Annotated[
        str | None,
        typer.Option(
            "--fields", help="With --json: keep only these fields of data (a,b.c); any position."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    flags = {}
    if db:
        flags["db_url"] = db
    if backend:
        flags["backend"] = backend
    ctx.obj = Runtime(flags=flags, json_out=json_out)


# -- help, examples, config, db -------------------------------------------------------------


@app.command("help")
def help_(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(help="A topic or an error code.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Help on a topic (workflow, tasks, containers, budget, errors, config...) or an error code (E200)."""
    from parhelia.app.help_texts import TOPICS, explain, render_error_help

    rt = runtime(ctx, json_out)
    if topic is None:
        text = (
            TOPICS["workflow"]
            + "\n\nTopics: "
            + ", ".join(TOPICS)
            + "\nErrors: parhelia help E200 (any code)"
        )
        return output.success(
            {"topics": list(TOPICS), "codes": list(CATALOGUE)}, json_out=rt.json_out, human=text
        )
    key = topic.upper() if topic.upper() in CATALOGUE else topic.lower()
    if key in CATALOGUE:
        e = CATALOGUE[key]
        return output.success(
            {
                "code": e.code,
                "title": e.title,
                "explanation": explain(key),
                "recovery": list(e.recovery),
                "topic": e.topic,
                "reserved": key in RESERVED,
            },
            json_out=rt.json_out,
            human=render_error_help(key),
        )
    if key in TOPICS:
        return output.success(
            {"topic": key, "text": TOPICS[key]}, json_out=rt.json_out, human=TOPICS[key]
        )
    close = difflib.get_close_matches(key, [*TOPICS, *CATALOGUE], n=1)
    raise ParheliaError(
        "E101",
        f"no help topic {topic!r}; topics: {', '.join(TOPICS)}; or an error code E100-E901",
        [f"parhelia help {close[0]}" if close else "parhelia help errors", "parhelia help"],
    )


@app.command("examples")
def examples(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument()] = None,
    json_out: JsonOpt = False,
) -> None:
    """Worked examples (gpu, budget, tasks, containers)."""
    from parhelia.app.help_texts import EXAMPLES

    rt = runtime(ctx, json_out)
    if topic is None:
        text = "\n\n".join(f"# {k}\n{v}" for k, v in EXAMPLES.items())
        return output.success(EXAMPLES, json_out=rt.json_out, human=text)
    if topic.lower() not in EXAMPLES:
        raise ParheliaError(
            "E101",
            f"no examples for {topic!r}; topics: {', '.join(EXAMPLES)}",
            ["parhelia examples gpu", "parhelia examples"],
        )
    output.success(
        {"topic": topic, "examples": EXAMPLES[topic.lower()]},
        json_out=rt.json_out,
        human=EXAMPLES[topic.lower()],
    )


config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    setting: Annotated[
        str | None,
        typer.Argument(
            help="Only settings whose name starts with this (defaults, budget.ceiling_usd)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every effective setting, and the file, variable or flag it came from."""
    from parhelia.app.config import effective_rows
    from parhelia.app.preferences import last_used_rows
    from parhelia.app.trust import trust_command

    rt = runtime(ctx, json_out)
    rt.warn_on_stderr = False  # listed below instead
    # The store's control-plane id (made on its first open), the tag its sandboxes carry.
    try:
        plane = rt.store.plane_id
    except ParheliaError as exc:  # config show must still show the configuration
        plane = f"(database unavailable: {exc.code})"
    rows = [*effective_rows(rt.loaded), ("control_plane_id", plane, "store")]
    rows += last_used_rows(plane)
    if setting:
        names = [r[0] for r in rows]
        rows = [r for r in rows if r[0] == setting or r[0].startswith(setting.rstrip(".") + ".")]
        if not rows:
            close = difflib.get_close_matches(setting, names, n=1)
            raise ParheliaError(
                "E101",
                f"no setting {setting!r}",
                [
                    f"parhelia config show {close[0]}" if close else "parhelia help config",
                    "parhelia config show",
                ],
            )
    data = [{"name": n, "value": v, "source": s} for n, v, s in rows]
    untrusted = {src.rsplit(":", 1)[0] for src in rt.loaded.ignored.values()}
    actions = [(trust_command(Path(p)), "use its ignored settings") for p in sorted(untrusted)]

    def human() -> None:
        output.echo(output.table(["SETTING", "VALUE", "SOURCE"], [list(r) for r in rows]))
        for warning in rt.loaded.warnings:
            output.echo(f"Warning: {warning}")

    output.success(data, json_out=rt.json_out, human=human, next_actions=actions)


def _project_file_arg(path: str | None) -> Path:
    """PATH (a file, or a directory holding parhelia.toml), or the project file found from here."""
    from parhelia.app.config import PROJECT_FILE, find_project_file

    found = Path(path).expanduser() if path else find_project_file(Path.cwd())
    if found is not None and found.is_dir():
        found = found / PROJECT_FILE
    if found is None or not found.is_file():
        where = f"{path!r} is not a file" if path else f"no {PROJECT_FILE} in {Path.cwd()}"
        raise ParheliaError(
            "E101",
            f"{where}; nothing to trust",
            ["parhelia config trust ./parhelia.toml", "parhelia config show"],
        )
    return found.resolve()


@config_app.command("trust")
def config_trust(
    ctx: typer.Context,
    path: Annotated[
        str | None, typer.Argument(help="The parhelia.toml (default: found from here).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Trust a project parhelia.toml as it is now: it may then set [agent] command, db_url and the
    other settings that choose what runs and where data goes."""
    from parhelia.app.config import _toml_name, read_toml_layer
    from parhelia.app.trust import GUARDED, trust

    rt = runtime(ctx, json_out)
    target = _project_file_arg(path)
    layer = read_toml_layer(target)  # a file that does not load is not trusted
    digest = trust(target)
    guarded = {name: layer[name][0] for name in GUARDED if name in layer}
    lines = [f"Trusted {target} (sha256 {digest[:12]})."]
    lines += [f"  {_toml_name(n)} = {v!r}" for n, v in guarded.items()]
    output.success(
        {"path": str(target), "sha256": digest, "guarded": guarded},
        json_out=rt.json_out,
        human="\n".join(lines),
        next_actions=[("parhelia config show", "see the settings it now sets")],
    )


@config_app.command("untrust")
def config_untrust(
    ctx: typer.Context,
    path: Annotated[
        str | None, typer.Argument(help="The parhelia.toml (default: found from here).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Forget that a project parhelia.toml is trusted; its guarded settings are ignored again."""
    from parhelia.app.trust import untrust

    rt = runtime(ctx, json_out)
    target = _project_file_arg(path)
    was = untrust(target)
    output.success(
        {"path": str(target), "was_trusted": was},
        json_out=rt.json_out,
        human=f"{target}: {'no longer trusted' if was else 'was not trusted'}.",
    )


db_app = typer.Typer(help="The database: status and migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _open_engine(url: str, *, immediate: bool = False):
    """An engine for `db status`/`db migrate`; a URL or driver that cannot work is E701."""
    from parhelia.state import db as dbmod

    try:
        return dbmod.make_engine(url, immediate=immediate)
    except ParheliaError:
        raise
    except Exception as exc:  # not a URL, an unknown dialect, a driver that is not installed
        raise dbmod.open_error(url, exc, attempted="open the database") from exc


def _reading(url: str, fn):
    """`fn()`, with any database error reported as E701/E703 (the store's words), never E900."""
    from parhelia.state import db as dbmod

    try:
        return fn()
    except ParheliaError:
        raise
    except Exception as exc:
        raise dbmod.open_error(url, exc, attempted="read the database") from exc


@db_app.command("status")
def db_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Where the database is, its schema revision, and the row counts."""
    from parhelia.state import db as dbmod
    from parhelia.state.counts import row_counts
    from parhelia.state.safe_text import mask_password

    rt = runtime(ctx, json_out)
    engine = _open_engine(rt.db_url)
    try:
        current = _reading(rt.db_url, lambda: dbmod.current_revision(engine))
        counts = _reading(rt.db_url, lambda: row_counts(engine))
    finally:
        engine.dispose()
    shown = mask_password(rt.db_url)
    data = {
        "url": shown,
        "revision": current,
        "head": dbmod.HEAD_REVISION,
        "up_to_date": current == dbmod.HEAD_REVISION,
        "rows": counts,
    }
    lines = [
        f"database  {shown}",
        f"revision  {current or '(empty)'}",
        f"head      {dbmod.HEAD_REVISION}",
        "status    " + ("up to date" if data["up_to_date"] else "needs `parhelia db migrate`"),
        "rows      "
        + (", ".join(f"{name} {n}" for name, n in counts.items()) or "(no tables yet)"),
    ]
    actions = [] if data["up_to_date"] else [("parhelia db migrate", "upgrade the schema")]
    output.success(data, json_out=rt.json_out, human="\n".join(lines), next_actions=actions)


@db_app.command("migrate")
def db_migrate(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Upgrade the schema to this Parhelia's newest revision."""
    from parhelia.state import db as dbmod
    from parhelia.state.safe_text import mask_password

    rt = runtime(ctx, json_out)
    _reading(rt.db_url, lambda: dbmod.check_not_newer(rt.db_url))
    engine = _open_engine(rt.db_url, immediate=True)
    try:
        from parhelia.app.feedback import working

        with working("Migrating the database", json_out=rt.json_out):
            before, after = _reading(rt.db_url, lambda: dbmod.migrate(engine))
    finally:
        engine.dispose()
    shown = mask_password(rt.db_url)
    output.success(
        {"url": shown, "before": before, "after": after},
        json_out=rt.json_out,
        human=f"{shown}: {before or '(empty)'} -> {after}",
    )


@db_app.command("copy")
def db_copy(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The empty database to copy this one into.")],
    json_out: JsonOpt = False,
) -> None:
    """Copy every row of this database into an empty one (SQLite to PostgreSQL, or back)."""
    from parhelia.app.db_copy import run_copy

    rt = runtime(ctx, json_out)
    run_copy(rt.db_url, to, json_out=rt.json_out)


@functools.cache
def _register_groups() -> None:
    """Every noun and its verbs joins `app` here, on the first `click_command()`, not at import:
    `parhelia status` never imports (or builds) the other commands (bench/events.py)."""
    from parhelia.app import (
        cli_budget,
        cli_completion,
        cli_containers,
        cli_events,
        cli_mcp,
        cli_ops,
        cli_session,
        cli_status,
        cli_tasks,
        cli_tui,
        cli_watch,
    )

    del cli_budget, cli_events  # their commands join `budget` and `events` as they are imported

    for module, name in (
        (cli_tasks, "task"),
        (cli_containers, "containers"),
        (cli_ops.events_app, "events"),
        (cli_ops.budget_app, "budget"),
        (cli_ops.reconciler_app, "reconciler"),
        (cli_session, "session"),
    ):
        sub = module if isinstance(module, typer.Typer) else module.app
        app.add_typer(sub, name=name)
    app.command("cleanup")(cli_ops.cleanup)
    app.command("tui")(cli_tui.tui)
    app.add_typer(cli_mcp.app, name="mcp")
    app.add_typer(cli_completion.app, name="completion")
    app.command("status")(cli_status.status)
    cli_containers.app.command("watch")(cli_watch.containers_watch)
    cli_tasks.app.command("watch")(cli_watch.task_watch)


# -- entry point ----------------------------------------------------------------------------


def _command_names(group, ctx) -> list[str]:
    return [n for n in group.list_commands(ctx)]


def _usage_error(exc) -> ParheliaError:
    ctx = exc.ctx
    path = ctx.command_path if ctx else "parhelia"
    if isinstance(exc, click.exceptions.MissingParameter):
        return ParheliaError("E102", exc.format_message(), [f"{path} --help", "parhelia examples"])
    if isinstance(
        exc,
        click.exceptions.NoSuchOption
        | click.exceptions.BadParameter
        | click.exceptions.BadOptionUsage,
    ):
        return ParheliaError(
            "E101", exc.format_message(), [f"{path} --help", "parhelia help workflow"]
        )
    message = exc.format_message()
    if "No such command" in message and ctx is not None and hasattr(ctx.command, "list_commands"):
        typo = message.split("'")[1] if "'" in message else ""
        close = difflib.get_close_matches(typo, _command_names(ctx.command, ctx), n=1, cutoff=0.5)
        suggestions = [f"{path} {close[0]}"] if close else []
        return ParheliaError(
            "E104", message, [*suggestions, f"{path} --help", "parhelia help workflow"]
        )
    return ParheliaError("E101", message, [f"{path} --help", "parhelia help workflow"])


@functools.cache
def click_command(only: str | None = None):
    """The Click command tree Typer builds from `app`, built once per process: building it reads
    every command's signature (a third of a second), which an in-process caller (the MCP server,
    the tests) would otherwise pay on every call. `only="status"` is the tree of the root options
    and `status` alone: the at-a-glance command pays for no other command's imports."""
    import typer.main

    if only == "status":
        from parhelia.app.cli_status import status

        small = typer.Typer(
            name="parhelia",
            help=app.info.help,
            pretty_exceptions_enable=False,
            rich_markup_mode=None,
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        small.callback()(root)
        small.command("status")(status)
        return typer.main.get_command(small)
    from parhelia.app import aliases, completion

    _register_groups()
    tree = typer.main.get_command(app)
    completion.attach(tree)  # ids, topics and codes complete from the store and catalogue
    aliases.install(tree)  # SPEC-20's short forms, from one table
    aliases.one_name_in_help(tree)
    return tree


def _verb(args: list[str]) -> str | None:
    """The command word of `args`: the first that is not a root option or its value."""
    it = iter(args)
    for arg in it:
        if arg in ("--db", "--backend"):
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _not_utf8(args: list[str]) -> ParheliaError | None:
    """E101 for an argument whose bytes are not UTF-8 (Python hands them over as lone surrogates,
    which no strict UTF-8 output, database or sandbox can carry)."""
    from parhelia.state.safe_text import escape_controls, has_surrogates

    for position, arg in enumerate(args, 1):
        if has_surrogates(arg):
            return ParheliaError(
                "E101",
                f"argument {position} ('{escape_controls(arg)}') is not valid UTF-8 text",
                ["locale", "parhelia --help", "parhelia help workflow"],
            )
    return None


def _take_fields(args: list[str]) -> tuple[list[str], str | None]:
    """`--fields a,b` (or `--fields=a,b`) anywhere before `--`, for every command at once."""
    rest: list[str] = []
    fields = None
    it = iter(args)
    for arg in it:
        if arg == "--":
            rest += [arg, *it]
            break
        if arg == "--fields":
            fields = next(it, "")
        elif arg.startswith("--fields="):
            fields = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, fields


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    json_out = "--json" in args
    args, output.FIELDS = _take_fields(args)
    if (bad := _not_utf8(args)) is not None:
        return output.failure(bad, json_out=json_out) + 1
    try:
        only = "status" if _verb(args) == "status" else None
        result = click_command(only)(args=args, prog_name="parhelia", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except ParheliaError as exc:
        return output.failure(exc, json_out=json_out)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        return 0
    except click.exceptions.UsageError as exc:
        return output.failure(_usage_error(exc), json_out=json_out) + 1
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so plainly; PARHELIA_DEBUG=1 shows the traceback
        if os.environ.get("PARHELIA_DEBUG"):
            raise
        err = ParheliaError(
            "E900",
            f"{type(exc).__name__}: {exc}",
            ["PARHELIA_DEBUG=1 parhelia " + " ".join(args), "parhelia events list --level error"],
        )
        return output.failure(err, json_out=json_out)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
