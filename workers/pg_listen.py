"""The change signal on PostgreSQL: every `Store` write transaction sends one `NOTIFY` on
`parhelia.state.db.CHANGE_CHANNEL` as it commits (see `Store.write`), so a dashboard, `events
watch` or MCP subscriber on any machine connected to the same database hears of it at once, where
SQLite uses the file watcher (`parhelia.workers.db_watch`).

One dedicated autocommit connection that `LISTEN`s; a burst of notifications is grouped into one
call, never held back longer than `db_watch.DEBOUNCE_MS`. A lost connection is opened again (with a
backoff) and reported as a change, since writes may have been missed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from parhelia.state.db import CHANGE_CHANNEL

STEP_S = 0.1  # how often `stop` is looked at while no notification comes
RETRY_S = (0.5, 1, 2, 5)


def conninfo(url: str) -> str:
    """The libpq URI of a SQLAlchemy `postgresql+psycopg://` URL (the driver name dropped)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def listen_database(
    url: str,
    on_change: Callable[[], object],
    stop: threading.Event,
    *,
    ready: threading.Event | None = None,
    debounce_ms: int | None = None,
) -> None:
    """Call `on_change` after each committed write batch anyone makes to the database at `url`,
    until `stop` is set. `ready` is set once listening (for tests and benches)."""
    import psycopg

    from parhelia.workers.db_watch import DEBOUNCE_MS

    window = (DEBOUNCE_MS if debounce_ms is None else debounce_ms) / 1000
    failures = 0
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {CHANGE_CHANNEL}")
                if failures:
                    on_change()  # writes made while the connection was down were not heard
                failures = 0
                if ready is not None:
                    ready.set()
                _deliver(conn, on_change, stop, window)
        except psycopg.Error:
            delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
            failures += 1
            stop.wait(delay)


def _deliver(conn, on_change: Callable[[], object], stop: threading.Event, window: float) -> None:
    while not stop.is_set():
        got = False
        for _ in conn.notifies(timeout=STEP_S):
            got = True
            break
        if not got:
            continue
        # the first notification of a burst: take what else arrives within the window, then call
        for _ in conn.notifies(timeout=window):
            pass
        on_change()
