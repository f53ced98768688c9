"""`parhelia config show | trust | untrust`: every effective setting with its source (files,
environment, flags, the database), and which project files may choose what runs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import ParheliaError

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
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
    """Every effective setting, and the file, variable, flag or database it came from."""
    from parhelia.app.config import effective_rows
    from parhelia.app.preferences import last_used_rows
    from parhelia.app.trust import trust_command

    rt = runtime(ctx, json_out)
    rt.warn_on_stderr = False  # listed below instead
    # The store's control-plane id (made on its first open), the tag its sandboxes carry, and the
    # settings a command stored there (`parhelia budget set`), which win over the configured ones.
    try:
        plane = rt.control.plane_id
        stored = rt.control.stored_settings()
    except ParheliaError as exc:  # config show must still show the configuration
        plane, stored = f"(database unavailable: {exc.code})", {}
    rows = [*effective_rows(rt.loaded, stored), ("control_plane_id", plane, "store")]
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


@app.command("trust")
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


@app.command("untrust")
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
