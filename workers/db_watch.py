"""The database change watcher: other processes (CLI, MCP, the daemon) write the store; this tells
the dashboard within a few hundred milliseconds, through the same refresh an in-process change uses.

watchfiles (inotify on Linux) on the database's folder, filtered to the database file and its WAL;
`-shm` is skipped because readers touch it too. In WAL mode (its `-wal` file there) a change to
the database file alone is a checkpoint copying pages already committed: nothing new to read, and
under a heartbeating fleet a third of the signals (bench/tui.py). Returns when `stop` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

# Group a burst of writes (a heartbeat batch touches the WAL many times) into one signal, but
# never hold a change back longer than DEBOUNCE_MS: the dashboard promises 500 ms, and at 10,000
# containers a refresh under a heartbeating fleet takes much of that (a signal during one costs a
# second read, `ParheliaApp._collect`; more signals only mark a refresh pending, never overlap).
STEP_MS = 20
DEBOUNCE_MS = 50


def watch_database(
    path: str | Path, on_change: Callable[[], object], stop: threading.Event
) -> None:
    from watchfiles import watch

    db = Path(path).resolve()
    wal = db.with_name(f"{db.name}-wal")
    names = {db.name, wal.name, f"{db.name}-journal"}
    db.parent.mkdir(parents=True, exist_ok=True)
    for changes in watch(
        db.parent,
        watch_filter=lambda _change, changed: Path(changed).name in names,
        stop_event=stop,
        step=STEP_MS,
        debounce=DEBOUNCE_MS,
        recursive=False,
        raise_interrupt=False,
    ):
        if wal.exists() and all(Path(changed).name == db.name for _, changed in changes):
            continue  # a checkpoint (every commit in WAL mode writes the `-wal` file)
        on_change()


def watch_store(url: str, on_change: Callable[[], object], stop: threading.Event) -> None:
    """The change signal for any store: the file watcher for an SQLite file, LISTEN/NOTIFY on
    PostgreSQL (`parhelia.workers.pg_listen`). Returns at once for a database it cannot watch
    (an in-memory SQLite), where the caller's periodic refresh is all there is."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        from parhelia.workers.pg_listen import listen_database

        listen_database(url, on_change, stop)
    elif parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        watch_database(parsed.database, on_change, stop)


def can_watch(url: str) -> bool:
    """Whether `watch_store` delivers changes for this database."""
    return url.startswith("postgresql") or (
        url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:")
    )
