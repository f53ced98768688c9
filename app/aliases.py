"""SPEC-20's short forms, in one table: `parhelia t l`, `task ls`, `submit`, `rm`/`kill`...

Installed on the Click tree once it is built (`install`): each alias is a hidden copy of its
command, and the command's one-line help names its aliases, so `--help` shows them without a
second row per alias. tests/test_aliases.py checks every alias resolves and none collides.
"""

from __future__ import annotations

import copy

# group path -> {alias: the name it stands for}. The root's entries are groups.
ALIASES: dict[tuple[str, ...], dict[str, str]] = {
    (): {"t": "task", "c": "containers", "e": "events", "b": "budget", "r": "reconciler"},
    ("task",): {"ls": "list", "l": "list", "s": "show", "submit": "create"},
    ("containers",): {
        "ls": "list",
        "l": "list",
        "s": "show",
        "rm": "terminate",
        "kill": "terminate",
    },
    ("events",): {"ls": "list", "l": "list", "follow": "watch"},
    ("budget",): {"s": "show"},
    ("reconciler",): {"s": "status"},
}


def aliases_of(path: tuple[str, ...], name: str) -> list[str]:
    return [a for a, target in ALIASES.get(path, {}).items() if target == name]


def one_name_in_help(root) -> None:
    """Help shows an option by one long name (`--type`, not `--type, --events`); the others are
    still accepted (SPEC-20 spells `--events`)."""
    stack = [root]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            longs = [o for o in param.opts if o.startswith("--")]
            if param.param_type_name != "option" or len(longs) < 2:
                continue
            shown = [o for o in param.opts if not o.startswith("--")] + longs[:1]
            param.get_help_record = _help_with(param, shown)


def _help_with(param, shown: list[str]):
    original = param.get_help_record

    def get_help_record(ctx):
        record = original(ctx)
        if record is None:
            return None
        names, text = record
        last = names.split(", ")[-1]
        metavar = last.split(" ", 1)[1] if " " in last else ""
        return ", ".join(shown) + (f" {metavar}" if metavar else ""), text

    return get_help_record


def install(root, aliases: dict[tuple[str, ...], dict[str, str]] = ALIASES) -> None:
    """Add every alias (or those of `aliases`, part of the table, for a tree holding one noun) to
    the Click tree under `root` and name it in its command's help."""
    for path, table in aliases.items():
        group = root
        for word in path:
            group = group.commands[word]
        for alias, target in table.items():
            cmd = group.commands[target]
            hidden = copy.copy(cmd)
            hidden.hidden = True
            group.commands[alias] = hidden
        for target in set(table.values()):
            cmd = group.commands[target]
            names = ", ".join(aliases_of(path, target))
            cmd.short_help = f"(alias: {names}) {cmd.get_short_help_str(limit=80)}"
