"""The commonest completion, an id after `containers show` or `task cancel`, answered before
Typer loads: the shell waits for it at every Tab, and building the whole command tree costs more
than the 0.3 s a completion may take. Anything else falls through to Click's protocol.

Bash, zsh and fish, each in the form Typer's own completion classes answer in
(`typer._completion_classes`): bash reads `COMP_WORDS`/`COMP_CWORD` and takes one id a line; zsh
and fish read `_TYPER_COMPLETE_ARGS`, zsh takes an `_arguments` spec, fish one id a line (and its
`is-args` question is answered by the exit code). The alias table and the completer's query are
the same as the general path's.
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


def _words(env) -> tuple[list[str], str] | None:
    """(the words before the one being completed, program name excluded; that word)."""
    shell = env.get("_PARHELIA_COMPLETE")
    if shell == "complete_bash" and "COMP_WORDS" in env:
        try:
            words = env["COMP_WORDS"].split()
            cword = int(env.get("COMP_CWORD", "0"))
        except ValueError:
            return None
        return words[1:cword], words[cword] if cword < len(words) else ""
    if shell in ("complete_zsh", "complete_fish") and "_TYPER_COMPLETE_ARGS" in env:
        import shlex

        line = env["_TYPER_COMPLETE_ARGS"]
        try:
            args = shlex.split(line)[1:]
        except ValueError:  # an open quote: Click's splitter copes, so let it
            return None
        if args and not line.endswith(" "):
            return args[:-1], args[-1]
        return args, ""
    return None


def _zsh(found: list[str]) -> str:
    if not found:
        return "_files\n"
    quoted = "\n".join(f'"{_zsh_escape(i)}"' for i in found)
    return f"_arguments '*: :(({quoted}))'\n"


def _zsh_escape(s: str) -> str:
    return (
        s.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def answer(env=os.environ) -> bool:
    """Print the shell's candidates and return True if this completion is an id; else False."""
    parsed = _words(env)
    if parsed is None:
        return False
    before, incomplete = parsed
    table = table_for(before)
    if table is None or incomplete.startswith("-"):
        return False
    from parhelia.app.completion import ids

    try:
        found = ids(table, incomplete)
    except Exception:
        found = []
    shell = env["_PARHELIA_COMPLETE"]
    if shell == "complete_bash":
        sys.stdout.write("\n".join(found))  # as Typer's bash completion prints them
    elif shell == "complete_zsh":
        sys.stdout.write(_zsh(found))
    else:
        action = env.get("_TYPER_COMPLETE_FISH_ACTION", "")
        if action == "is-args":
            return bool(found)  # exit 0: complete ids, no files; none: the general path says 1
        sys.stdout.write("\n".join(found) + "\n" if found and action == "get-args" else "\n")
    return True
