"""`parhelia db copy --to URL`: the command around `parhelia.state.copy`, with a progress bar on a
terminal (nothing decorates piped output) and the target's password masked in what it prints."""

from __future__ import annotations

import sys

from parhelia.app import output
from parhelia.state import db
from parhelia.state.copy import copy_store, row_counts


def run_copy(source_url: str, target_url: str, *, json_out: bool) -> None:
    on_terminal = not json_out and sys.stderr.isatty()
    copy = _with_bar if on_terminal else copy_store
    copied = copy(source_url, target_url)
    total = sum(copied.values())
    src, dst = db.masked(source_url), db.masked(target_url)
    output.success(
        {"from": src, "to": dst, "rows": copied, "total": total},
        json_out=json_out,
        human=f"copied {total} rows from {src} to {dst}\n"
        + "\n".join(f"  {t:<16} {n}" for t, n in copied.items()),
        next_actions=[(f"PARHELIA_DB_URL='{dst}' parhelia db status", "use the copy")],
    )


def _with_bar(source_url: str, target_url: str) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from parhelia.state.store import Store

    src = Store(source_url)
    try:
        total = sum(row_counts(src.engine).values())
    finally:
        src.close()
    with Progress(
        TextColumn("copying {task.fields[table]:<16}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rows"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("copy", total=total, table="")
        return copy_store(
            source_url,
            target_url,
            lambda table, n: bar.update(task, advance=n, table=table),
        )
