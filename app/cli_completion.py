"""`parhelia completion bash|zsh|fish|install`: shell completion scripts (app/completion.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError

app = typer.Typer(
    help="Shell completion: print the script for bash, zsh or fish, or install it.",
    no_args_is_help=True,
)


def _print(ctx: typer.Context, shell: str, json_out: bool) -> None:
    from parhelia.app.completion import script

    rt = runtime(ctx, json_out)
    text = script(shell)
    if rt.json_out:
        return output.success({"shell": shell, "script": text}, json_out=True)
    output.write(text if text.endswith("\n") else text + "\n")


@app.command("bash")
def bash(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Print the bash script: eval "$(parhelia completion bash)"."""
    _print(ctx, "bash", json_out)


@app.command("zsh")
def zsh(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Print the zsh script: eval "$(parhelia completion zsh)"."""
    _print(ctx, "zsh", json_out)


@app.command("fish")
def fish(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Print the fish script: parhelia completion fish | source."""
    _print(ctx, "fish", json_out)


@app.command("install")
def install(
    ctx: typer.Context,
    shell: Annotated[
        str | None, typer.Option("--shell", help="bash, zsh or fish (default: from $SHELL).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Install completion for the current shell (or --shell); takes effect in a new shell."""
    from parhelia.app.completion import SHELLS, current_shell
    from parhelia.app.completion import install as do_install

    rt = runtime(ctx, json_out)
    shell = shell or current_shell()
    if shell not in SHELLS:
        raise ParheliaError(
            "E101",
            f"cannot tell which shell to install for ({shell or '$SHELL is not set'}); "
            f"choose one of {', '.join(SHELLS)}",
            ["parhelia completion install --shell bash", "parhelia completion bash"],
        )
    path = do_install(shell)
    output.success(
        {"shell": shell, "path": str(path)},
        json_out=rt.json_out,
        human=f"Installed {shell} completion in {path}; open a new shell to use it.",
    )
