"""`parhelia tui`: the dashboard, its headless `--once` snapshot, and the `--demo` fleet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from parhelia.app.cli_common import NoRefreshOpt, RefreshOpt, refresh_choice, runtime
from parhelia.state.errors import ParheliaError

if TYPE_CHECKING:
    from parhelia.state.views import DashboardView

FORMATS = ("text", "json", "svg")
MIN_WIDTH = 40  # below this not even id, state, health and cost fit


def tui(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Render one snapshot to stdout and exit (0 ok, 1 attention, 2 error)."
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Local backend, its own database, and a few simulated agents."),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="text, json or svg (with --once).")] = "text",
    width: Annotated[
        int | None, typer.Option("--width", help="Width in columns (with --once).")
    ] = None,
    no_refresh: NoRefreshOpt = False,
    refresh: RefreshOpt = False,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Only watch: run no reconciler or heartbeats here (a daemon or another dashboard does).",
        ),
    ] = False,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all", help="With --once: every container, not the youngest 1,000 (text and svg)."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", hidden=True)] = False,
) -> None:
    """The full-screen dashboard: containers, events, budget and help, live."""
    rt = runtime(ctx, json_out)
    if rt.json_out:  # `parhelia --json tui --once` as well as `tui --once --json`
        fmt = "json"
    if once:
        raise typer.Exit(
            _once(
                rt,
                fmt,
                width,
                demo=demo,
                refresh=refresh,
                no_refresh=no_refresh,
                all_rows=all_rows,
            )
        )
    if (err := _full_screen_refusal(ctx)) is not None:  # a script must never hang on the app
        from parhelia.app import output

        output.failure(err, json_out=rt.json_out)
        raise typer.Exit(2)
    if demo:
        from parhelia.app.demo import prepare_demo

        prepare_demo(rt, start=False)
    from parhelia.app.dashboard import DASHBOARD_WRITE_CACHE_KIB, run_dashboard

    rt.write_cache_kib = DASHBOARD_WRITE_CACHE_KIB  # before the store opens (the demo's is small)
    run_dashboard(rt, demo=demo, run_loops=not read_only)


ONCE_ONLY = {
    "fmt": "--format",
    "width": "--width",
    "no_refresh": "--no-refresh",
    "refresh": "--refresh",
    "all_rows": "--all",
}


def _full_screen_refusal(ctx: typer.Context) -> ParheliaError | None:
    """Why the full-screen app must not start: a `--once` flag without `--once`, or no terminal."""
    given = [  # by name: the enum is click's, and typer may carry its own click
        flag
        for name, flag in ONCE_ONLY.items()
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    ]
    if given:
        return ParheliaError(
            "E101",
            f"{', '.join(given)} only applies with --once (the full-screen app has no format)",
            ["parhelia tui --once --format json", "parhelia tui"],
        )
    if not sys.stdout.isatty():
        return ParheliaError(
            "E101",
            "stdout is not a terminal; the full-screen dashboard needs one",
            ["parhelia tui --once", "parhelia tui --once --format json"],
        )
    return None


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ParheliaError(
            "E101",
            f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}",
            ["parhelia tui --once --format text", "parhelia tui --once --format json"],
        )


def _once(
    rt,
    fmt: str,
    width: int | None,
    *,
    demo: bool,
    refresh: bool = False,
    no_refresh: bool = False,
    all_rows: bool = False,
) -> int:
    """One snapshot. Every failure is exit 2 (1 means "look at this", and scripts branch on it)."""
    from parhelia.app.once import render_once

    def check() -> None:
        _check_format(fmt)
        if width is not None and width < MIN_WIDTH:
            raise ParheliaError(
                "E101",
                f"--width {width} is too narrow; at least {MIN_WIDTH} columns",
                ["parhelia tui --once --width 120", "parhelia tui --once --format json"],
            )

    color = sys.stdout.isatty() and fmt == "text"
    return one_shot(
        rt,
        lambda view: render_once(
            view, fmt=fmt, width=width or _terminal_width(), color=color, all_rows=all_rows
        ),
        json_out=fmt == "json",
        command="parhelia tui --once",
        demo=demo,
        refresh=refresh,
        no_refresh=no_refresh,
        check=check,
    )


def one_shot(
    rt,
    render: Callable[[DashboardView], str],
    *,
    json_out: bool,
    command: str,
    demo: bool = False,
    refresh: bool = False,
    no_refresh: bool = False,
    check: Callable[[], None] | None = None,
) -> int:
    """The view rendered to stdout; exit 0 all well, 1 attention, 2 any failure (shared by
    `tui --once` and `parhelia status`, so they answer alike). `refresh`, `no_refresh`: the
    command's flags (`cli_common.refresh_choice`)."""
    from parhelia.app import output
    from parhelia.app.snapshot import exit_code

    try:
        if check is not None:
            check()
        choice = refresh_choice(refresh, no_refresh, command)
        view = one_shot_view(rt, demo=demo, refresh=choice)
    except ParheliaError as exc:
        output.failure(exc, json_out=json_out)
        return 2
    except Exception as exc:  # an unexpected failure is still an answer, never a traceback
        err = ParheliaError(
            "E900",
            f"{type(exc).__name__}: {exc}",
            ["parhelia db status", "parhelia reconciler status"],
            attempted="render the dashboard snapshot",
        )
        output.failure(err, json_out=json_out)
        return 2
    output.write(render(view))
    return exit_code(view)


# What a one-shot view waits on heartbeat probes at most: the sandboxes heard from longest ago
# first, the rest left as they were for the loops (10,000 of them at 16 probes at a time made a
# snapshot wait a minute). `reconciler run` probes them all.
ONE_SHOT_PROBE_S = 2.0


def one_shot_view(rt, *, demo: bool = False, refresh: bool | None = None) -> DashboardView:
    """The one-shot path (`tui --once`, `parhelia status`): a pass of the loops, then the
    dashboard view. `refresh` None: the pass only when no live reconciler elsewhere has just made
    one (`ReconcilerView.watched`; its view is what the pass would show, as the pass could not
    take the lease), so with a dashboard or a daemon running the answer is a read."""
    if demo:
        from parhelia.app.demo import prepare_demo

        prepare_demo(rt)
        refresh = True if refresh is None else refresh
    try:
        remote_agents = refresh is not False
        if refresh is None:
            now = rt.reader.clock()
            refresh = not rt.reader.reconciler_view(now).watched(now)
        if refresh:
            from parhelia.app.spinner import waiting

            with waiting("Reconciling with the backend…"):
                rt.control.refresh_once(heartbeat_within=ONE_SHOT_PROBE_S)
        # without a pass nothing is written, so the view is read as a read command reads it
        # (`Runtime.reader`); `--no-refresh` asks no backend at all: the agents on this machine
        # only (reading Modal's loads its SDK, a third of a second, then waits on the network)
        plane = rt.control if refresh or demo else rt.reader
        return plane.dashboard(remote_agents=remote_agents)
    finally:
        if demo:  # a snapshot of the demo must not leave its agents running
            from parhelia.app.demo import stop_fleet

            stop_fleet(rt)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 40)).columns
