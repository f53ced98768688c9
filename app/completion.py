"""Shell completion (SPEC-20): `parhelia completion bash|zsh|fish` prints the script, `completion
install` installs it, and ids, error codes and help topics complete from the store and catalogue.

The scripts are Typer's (Click's protocol: the shell runs `parhelia` with `_PARHELIA_COMPLETE` set).
Completers are attached by parameter name once the Click tree is built (`attach`), so no command
body carries completion code. Ids are read with plain `sqlite3` from a SQLite store: a completion
must not pay for SQLModel; any other database goes through the Store.
"""

from __future__ import annotations

import os
from pathlib import Path

PROG = "parhelia"
COMPLETE_VAR = "_PARHELIA_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
LIMIT = 200  # more candidates than this help nobody at a prompt


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)


def current_shell(env: dict[str, str] | None = None) -> str | None:
    """The login shell's name from $SHELL, if it is one we complete for."""
    name = Path((env if env is not None else os.environ).get("SHELL", "")).name
    return name if name in SHELLS else None


def install(shell: str) -> Path:
    """Write the script where `shell` reads it (Typer's locations); returns that path."""
    from typer._completion_shared import install as typer_install

    _, path = typer_install(shell=shell, prog_name=PROG, complete_var=COMPLETE_VAR)
    return path


# -- candidates -----------------------------------------------------------------------------


def _db_url() -> str:
    from parhelia.app.config import load_settings, resolve_db_url

    return resolve_db_url(load_settings(flags={}).settings)


def ids(table: str, incomplete: str, url: str | None = None) -> list[str]:
    """Ids in `table` ("containers" or "tasks") starting with `incomplete`, newest first."""
    url = url or _db_url()
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        if not Path(path).is_file():
            return []
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as conn:
                rows = conn.execute(
                    f"SELECT id FROM {table} WHERE substr(id, 1, ?) = ? "
                    "ORDER BY created_at DESC LIMIT ?",
                    (len(incomplete), incomplete, LIMIT),
                ).fetchall()
        except sqlite3.Error:
            return []
        return [r[0] for r in rows]
    from parhelia.state.store import Store

    store = Store(url)
    rows = store.containers() if table == "containers" else store.list_tasks(limit=LIMIT)
    return [r.id for r in rows if r.id.startswith(incomplete)][:LIMIT]


def help_topics(incomplete: str) -> list[str]:
    from parhelia.app.help_texts import TOPICS
    from parhelia.state.errors import CATALOGUE

    words = [*TOPICS, *CATALOGUE]
    return [w for w in words if w.lower().startswith(incomplete.lower())]


def setting_names(incomplete: str) -> list[str]:
    from parhelia.app.config import schema

    return [n for n in schema() if n.startswith(incomplete)]


def _safe(fn):
    """A completer that fails completes nothing: a broken store must not break the shell."""

    def complete(ctx, param, incomplete: str):
        try:
            return fn(incomplete or "")
        except Exception:
            return []

    return complete


COMPLETERS = {
    "container": _safe(lambda s: ids("containers", s)),
    "containers": _safe(lambda s: ids("containers", s)),
    "task": _safe(lambda s: ids("tasks", s)),
    "ref": _safe(lambda s: ids("tasks", s) + ids("containers", s)),
    "topic": _safe(help_topics),
    "setting": _safe(setting_names),
}


def attach(root) -> None:
    """Give every parameter named in COMPLETERS (arguments and --container/--task) its completer."""
    stack = [root]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            fn = COMPLETERS.get(param.name or "")
            if fn is not None and getattr(param, "_custom_shell_complete", None) is None:
                param._custom_shell_complete = fn
