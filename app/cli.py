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
from typing import Annotated

import typer

try:  # Typer >= 0.28 vendors Click; its exceptions are not the `click` package's.
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt
from parhelia.app.runtime import Runtime
from parhelia.state.errors import ParheliaError

app = typer.Typer(
    name="parhelia",
    help="Run Claude Code agents in sandboxes and always know what is running, its health and its cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    ctx.call_on_close(ctx.obj.close)  # the store's connections end with the command


@functools.cache
def _register_groups() -> None:
    """Every noun and its verbs joins `app` here, on the first `click_command()`, not at import:
    `parhelia status` never imports (or builds) the other commands (bench/events.py)."""
    from parhelia.app import (
        cli_budget,
        cli_checkpoint,
        cli_cleanup,
        cli_completion,
        cli_config,
        cli_containers,
        cli_db,
        cli_events,
        cli_help,
        cli_mcp,
        cli_reconciler,
        cli_session,
        cli_status,
        cli_tasks,
        cli_tui,
    )

    app.command("help")(cli_help.help_)
    app.command("examples")(cli_help.examples)
    app.add_typer(cli_config.app, name="config")
    app.add_typer(cli_db.app, name="db")
    for module, name in (
        (cli_tasks, "task"),
        (cli_containers, "containers"),
        (cli_events, "events"),
        (cli_budget, "budget"),
        (cli_reconciler, "reconciler"),
        (cli_checkpoint, "checkpoint"),
        (cli_session, "session"),
    ):
        app.add_typer(module.app, name=name)
    app.command("cleanup")(cli_cleanup.cleanup)
    app.command("tui")(cli_tui.tui)
    app.add_typer(cli_mcp.app, name="mcp")
    app.add_typer(cli_completion.app, name="completion")
    app.command("status")(cli_status.status)
    for noun in _WATCHES:
        _register_watch(noun)


# The nouns with a `watch` verb, and its function in `cli_watch`.
_WATCHES = {"containers": "containers_watch", "task": "task_watch"}


@functools.cache
def _register_watch(noun: str) -> None:
    """`noun watch` joins its noun's commands: `containers list` imports no task commands."""
    import importlib

    from parhelia.app import cli_watch

    module = importlib.import_module(f"parhelia.app.{_NOUN_MODULES[noun]}")
    module.app.command("watch")(getattr(cli_watch, _WATCHES[noun]))


# A noun's own tree (`click_command(only=noun)`): `parhelia containers list` imports and builds
# the containers commands alone, not every other noun's (their imports are most of a read
# command's cost above SQLModel's; bench/cli.py).
_NOUN_MODULES = {
    "task": "cli_tasks",
    "containers": "cli_containers",
    "events": "cli_events",
    "budget": "cli_budget",
    "reconciler": "cli_reconciler",
    "checkpoint": "cli_checkpoint",
}


# A root command's own tree (`click_command(only=name)`): the root options and that command alone.
# Neither has a parameter that completes ids or an option with two long names, so neither needs
# `completion.attach` or `aliases`.
_SINGLE_COMMANDS = {"status": "cli_status", "tui": "cli_tui"}


def _noun(args: list[str]) -> str | None:
    """The noun `args` name (its short form resolved), when it has a tree of its own."""
    from parhelia.app.aliases import ALIASES

    verb = _verb(args)
    noun = ALIASES[()].get(verb, verb) if verb else None
    return noun if noun in _NOUN_MODULES else None


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


def _small_root():
    """A root with the global options and no command yet: the tree of one command or noun."""
    small = typer.Typer(
        name="parhelia",
        help=app.info.help,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    small.callback()(root)
    return small


@functools.cache
def click_command(only: str | None = None):
    """The Click command tree Typer builds from `app`, built once per process: building it reads
    every command's signature (a third of a second), which an in-process caller (the MCP server,
    the tests) would otherwise pay on every call. `only="status"` (or `"tui"`) is the tree of the
    root options and that command alone: it pays for no other command's imports."""
    import typer.main

    if only in _SINGLE_COMMANDS:
        import importlib

        module = importlib.import_module(f"parhelia.app.{_SINGLE_COMMANDS[only]}")
        small = _small_root()
        small.command(only)(getattr(module, only))
        return typer.main.get_command(small)
    from parhelia.app import aliases, completion

    if only in _NOUN_MODULES:
        import importlib

        module = importlib.import_module(f"parhelia.app.{_NOUN_MODULES[only]}")
        if only in _WATCHES:
            _register_watch(only)
        small = _small_root()
        small.add_typer(module.app, name=only)
        tree = typer.main.get_command(small)
        completion.attach(tree)
        short = {a: n for a, n in aliases.ALIASES[()].items() if n == only}
        aliases.install(tree, {(): short, (only,): aliases.ALIASES.get((only,), {})})
        aliases.one_name_in_help(tree)
        return tree
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
        only = verb if (verb := _verb(args)) in _SINGLE_COMMANDS else _noun(args)
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
