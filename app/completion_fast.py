"""The commonest completion, an id after `containers show` or `task cancel`, answered before
Typer loads: the shell waits for it at every Tab, and building the whole command tree costs more
than the 0.3 s a completion may take. Anything else falls through to Click's protocol.

Bash only (its protocol is two variables and one line per candidate); zsh and fish take the
general path. The alias table and the completer's query are the same as the general path's.
"""

from __future__ import annotations

import os
import sys

# (group, verb) -> the table whose ids complete its arguments.
ID_ARGS = {
    ("containers", "show"): "containers",
    ("containers", "events"): "containers",
    ("containers", "terminate"): "containers",
    ("task", "show"): "tasks",
    ("task", "cancel"): "tasks",
    ("task", "retry"): "tasks",
    ("task", "watch"): "tasks",
}
MANY = {("containers", "terminate")}  # takes several ids


def table_for(words: list[str]) -> str | None:
    """The id table to complete from for `parhelia WORDS... <incomplete>`, or None."""
    from parhelia.app.aliases import ALIASES

    if len(words) < 2 or any(w.startswith("-") for w in words):
        return None
    group = ALIASES[()].get(words[0], words[0])
    verb = ALIASES.get((group,), {}).get(words[1], words[1])
    if len(words) > 2 and (group, verb) not in MANY:
        return None
    return ID_ARGS.get((group, verb))


def answer(env=os.environ) -> bool:
    """Print bash's candidates and return True if this completion is an id; else False."""
    if env.get("_PARHELIA_COMPLETE") != "complete_bash" or "COMP_WORDS" not in env:
        return False
    try:
        words = env["COMP_WORDS"].split()
        cword = int(env.get("COMP_CWORD", "0"))
    except ValueError:
        return False
    incomplete = words[cword] if cword < len(words) else ""
    table = table_for(words[1:cword])
    if table is None or incomplete.startswith("-"):
        return False
    from parhelia.app.completion import ids

    try:
        found = ids(table, incomplete)
    except Exception:
        found = []
    sys.stdout.write("\n".join(found))  # as Typer's bash completion prints them
    return True
