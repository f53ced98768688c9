"""`parhelia events list | watch | replay | export`: the store's events filtered, followed live from any process,
replayed in order, or exported as JSON lines or CSV. The same filters as `events list`, the same
event lines as the dashboard's events pane, SPEC-20's aggregation in the watch."""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Annotated, Any

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, LimitOpt, parse_time, print_events, runtime
from parhelia.state.errors import ParheliaError

ContainerOpt = Annotated[
    str | None, typer.Option("--container", "-c", help="Only this container's events.")
]
TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Only this task's events.")]
TypeOpt = Annotated[
    str | None, typer.Option("--type", "--events", help="Comma-separated event types.")
]
LevelOpt = Annotated[
    str | None, typer.Option("--level", help="Minimum level: debug, info, warning, error.")
]
SinceOpt = Annotated[str | None, typer.Option("--since", help="ISO time or relative: 10m, 2h, 3d.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="ISO time or relative: 10m, 2h, 3d.")]
PROGRESS_MIN_ROWS = 10_000
FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class Filters:
    container: str | None = None
    task: str | None = None
    types: str | None = None
    level: str | None = None
    since: str | None = None
    until: str | None = None

    def store_filters(self, rt) -> dict[str, Any]:
        """The `Store.events` keywords, validated: a bad level or time is E101 with examples."""
        from parhelia.app.payloads import checked_level

        checked_level(self.level, "watch")
        out: dict[str, Any] = {
            "container_id": rt.control.container(self.container).id if self.container else None,
            "task_id": rt.control.task(self.task).id if self.task else None,
            "types": self.types.split(",") if self.types else None,
            "min_level": self.level,
            "since": parse_time(self.since),
            "until": parse_time(self.until, "--until"),
        }
        return {k: v for k, v in out.items() if v is not None}


app = typer.Typer(
    help="Events: state changes, health, orphans, budget, user actions.", no_args_is_help=True
)


@app.command("list")
def events_list(
    ctx: typer.Context,
    container: ContainerOpt = None,
    task: TaskOpt = None,
    type_: TypeOpt = None,
    level: LevelOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = 50,
    json_out: JsonOpt = False,
) -> None:
    """Events filtered by container, task, type, level and time range; newest last."""
    from parhelia.app.payloads import event_views

    rt = runtime(ctx, json_out)
    views = event_views(
        rt.reader,
        container=container,
        task=task,
        types=type_,
        level=level,
        since=parse_time(since),
        until=parse_time(until, "--until"),
        limit=limit,
    )

    def human() -> None:
        if not views:
            output.echo("No events matched. Widen the filters, or see: parhelia events list")
        print_events(views)

    output.success([asdict(e) for e in views], json_out=rt.json_out, human=human)


# -- watch --------------------------------------------------------------------------------------


@app.command("watch")
def events_watch(
    ctx: typer.Context,
    container: ContainerOpt = None,
    task: TaskOpt = None,
    type_: TypeOpt = None,
    level: LevelOpt = None,
    since: SinceOpt = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Print what is stored first, then follow.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings, errors and completions.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, flushed per event.")
    ] = False,
) -> None:
    """Follow new events from any process until Ctrl-C (with `--from-start`, the stored ones first)."""
    rt = runtime(ctx, json_out)
    filters = Filters(container, task, type_, level, since).store_filters(rt)
    follow_events(rt, filters, from_start=from_start or since is not None, quiet=quiet)


def follow_events(
    rt,
    filters: dict[str, Any],
    *,
    from_start: bool = False,
    quiet: bool = False,
    stop: threading.Event | None = None,
    until_done=None,
) -> None:
    """The watch loop shared by `events watch` and `task watch`: follower → aggregation → lines.
    `until_done(events)` may end it (a task that finished)."""
    from parhelia.app.stream_out import LineOut, run_until_interrupted
    from parhelia.state.aggregation import Aggregator, is_loud
    from parhelia.state.timeutil import utcnow

    out = LineOut(json_out=rt.json_out)
    agg = Aggregator()
    stop = stop or threading.Event()
    follower = rt.control.event_follower(after_id=0 if from_start else None, filters=filters)

    def show(events) -> None:
        for e in events:
            if quiet and not is_loud(e):
                continue
            out.event(e, folded=agg.folded.pop(e.id, 0))

    def on_events(batch) -> None:
        for e in batch:
            show(agg.feed(e))
        if until_done is not None and until_done(batch):
            show(agg.drain())
            stop.set()

    def body() -> None:
        try:
            follower.run(stop, on_events, on_tick=lambda: show(agg.flush(utcnow())))
        finally:
            follower.close()

    run_until_interrupted(body)


# -- replay -------------------------------------------------------------------------------------


@app.command("replay")
def events_replay(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="A task id or a container id (or prefix).")],
    speed: Annotated[
        float,
        typer.Option("--speed", help="Real time scaled by N (2 = twice as fast); 0 = at once."),
    ] = 0.0,
    type_: TypeOpt = None,
    level: LevelOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """A task's or a container's events in order, each with the time since the first."""
    from parhelia.app.stream_out import LineOut, run_until_interrupted
    from parhelia.state.event_log import to_event_view
    from parhelia.widgets.formatting import age

    rt = runtime(ctx, json_out)
    if speed < 0:
        raise ParheliaError(
            "E101",
            f"--speed {speed:g} is negative; 0 replays at once, 1 in real time, 10 ten times faster",
            [f"parhelia events replay {ref} --speed 0", f"parhelia events replay {ref} --speed 10"],
        )
    filters = Filters(None, None, type_, level, since, until).store_filters(rt)
    filters.update(_subject(rt, ref))
    rows = rt.control.events_oldest_first(limit=10_000_000, **filters)
    out = LineOut(json_out=rt.json_out)

    def body() -> None:
        if not rows and not rt.json_out:
            out.write(f"No events for {ref}.")
        first = rows[0].ts if rows else None
        previous = first
        for row in rows:
            e = to_event_view(row)
            if speed > 0 and previous is not None:
                time.sleep(max(0.0, (e.ts - previous).total_seconds()) / speed)
            previous = e.ts
            out.event(e, prefix=f"+{age(first, e.ts):>7} ")

    run_until_interrupted(body)


def _subject(rt, ref: str) -> dict[str, str]:
    """`task_id` or `container_id` for a reference to either."""
    if ref.startswith("t-"):
        return {"task_id": rt.control.task(ref).id}
    try:
        return {"container_id": rt.control.container(ref).id}
    except ParheliaError as exc:
        try:
            return {"task_id": rt.control.task(ref).id}
        except ParheliaError:
            raise ParheliaError(
                "E101",
                f"{ref!r} is neither a task nor a container",
                ["parhelia task list", "parhelia containers list --all"],
            ) from exc


# -- export -------------------------------------------------------------------------------------


@app.command("export")
def events_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write this file (atomically) instead of stdout."),
    ] = None,
    container: ContainerOpt = None,
    task: TaskOpt = None,
    type_: TypeOpt = None,
    level: LevelOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One envelope with the rows instead of a stream.")
    ] = False,
) -> None:
    """Events oldest first as JSON lines or CSV, to stdout or a file, for replay elsewhere."""
    from parhelia.app.stream_out import PipeClosed, run_until_interrupted, silence_stdout

    rt = runtime(ctx, json_out)
    if fmt not in FORMATS:
        raise ParheliaError(
            "E101",
            f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}",
            ["parhelia events export --format jsonl", "parhelia events export --format csv"],
        )
    filters = Filters(container, task, type_, level, since, until).store_filters(rt)
    if rt.json_out and output_path is None:
        rows = [export_record(r) for rows in rt.control.event_batches(**filters) for r in rows]
        return output.success(rows, json_out=True)

    def body() -> None:
        if output_path is None:
            try:
                n = write_rows(rt, sys.stdout, fmt, filters)
            except BrokenPipeError as exc:
                silence_stdout()
                raise PipeClosed from exc
            return
        from parhelia.app.feedback import working

        with working(f"Exporting to {output_path}", json_out=rt.json_out):
            n = write_atomically(output_path, lambda f: write_rows(rt, f, fmt, filters))
        summary = {"path": str(output_path), "rows": n, "format": fmt}
        if rt.json_out:
            return output.success(summary, json_out=True)
        sys.stderr.write(f"{n} event(s) written to {output_path} ({fmt})\n")

    run_until_interrupted(body)


def export_record(row: tuple) -> dict[str, Any]:
    from parhelia.state.event_log import EVENT_ROW_COLUMNS

    return dict(zip(EVENT_ROW_COLUMNS, row, strict=True))


def jsonl_line(row: tuple) -> str:
    """One exported event as a JSON line, the very text of `json.dumps(export_record(row),
    ensure_ascii=False)` plus a newline, without a dict and an encoder call per row: the C string
    encoder `json.dumps` itself uses, per column, in `EVENT_ROW_COLUMNS` order (5 times faster)."""
    i, ts, type_, level, source, container, task, old, new, actor, message = row
    return (
        f'{{"id": {i}, "ts": {_s(ts)}, "type": {_s(type_)}, "level": {_s(level)}, '
        f'"source": {_s(source)}, "container_id": {_n(container)}, "task_id": {_n(task)}, '
        f'"old_value": {_n(old)}, "new_value": {_n(new)}, "actor": {_n(actor)}, '
        f'"message": {_s(message)}}}\n'
    )


_s = encode_basestring  # a str as JSON, as `ensure_ascii=False` writes it


def _n(value: str | None) -> str:
    return "null" if value is None else _s(value)


def write_rows(rt, f, fmt: str, filters: dict[str, Any]) -> int:
    """Stream the matching events into `f`, a batch of rows per write; a Rich progress bar on
    stderr for a big export at a terminal. Returns the row count."""
    from parhelia.state.event_log import EVENT_ROW_COLUMNS

    progress = _progress(rt, filters)
    n = 0
    if fmt == "csv":
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(EVENT_ROW_COLUMNS)
        emit = writer.writerows
    else:
        write = f.write

        def emit(rows: list[tuple]) -> None:
            write("".join(map(jsonl_line, rows)))

    for rows in rt.store.event_batches(**filters):
        emit(rows)
        n += len(rows)
        if progress:
            progress(n)
    if progress:
        progress(n, done=True)
    f.flush()
    return n


def _progress(rt, filters):
    """A progress callback when stderr is a terminal and the export is big, else None."""
    if not sys.stderr.isatty():
        return None
    total = rt.control.count_events(**filters)
    if total <= PROGRESS_MIN_ROWS:
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=sys.stderr), transient=True)
    task = bar.add_task("exporting events", total=total)
    bar.start()

    def advance(n: int, done: bool = False) -> None:
        bar.update(task, completed=n)
        if done:
            bar.stop()

    return advance


def write_atomically(path: Path, write) -> int:
    """Write through a temporary file beside `path`, renamed over it only when complete: a
    reader never sees half an export, and a failed export leaves the old file."""
    path = path.expanduser()
    if not path.parent.is_dir():
        raise ParheliaError(
            "E101",
            f"no directory {str(path.parent)!r} for --output",
            [f"mkdir -p {path.parent}", "parhelia events export --output events.jsonl"],
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            n = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
