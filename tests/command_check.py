"""Does a suggested `parhelia ...` command exist? Checked against the real Typer/Click tree.

Used by the CLI tests to hold every recovery command, example and next step to the commands
that exist: each word must walk the tree (groups, then a command), options must be that
command's (or the root's), and there must not be more arguments than the command takes.
Placeholders (ID, PROMPT, AMOUNT) are just arguments. A `HOLE` word stands for an f-string
expression whose value is unknown: it is accepted anywhere after the command is found.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

HOLE = "\x00"
ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def root_command():
    from parhelia.app.cli import click_command

    return click_command()


def is_group(cmd) -> bool:
    return hasattr(cmd, "commands")


def leaves(cmd, path: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    """(path, command) for every visible leaf command; hidden aliases are skipped."""
    if not is_group(cmd):
        yield " ".join(path), cmd
        return
    for name, sub in cmd.commands.items():
        if not sub.hidden:
            yield from leaves(sub, (*path, name))


def _option(cmd, name: str):
    for p in cmd.params:
        if p.param_type_name == "option" and name in (*p.opts, *p.secondary_opts):
            return p
    return None


def problem(text: str, root=None) -> str | None:
    """None when `text` (one shell command, `VAR=value` prefixes allowed) names a real command."""
    root = root or root_command()
    try:
        words = shlex.split(text)
    except ValueError as exc:
        return f"{text!r}: {exc}"
    while words and ENV_ASSIGN.match(words[0]):
        words.pop(0)
    if not words or words[0] != "parhelia":
        return f"{text!r} does not start with parhelia"
    cmd, path, args = root, ["parhelia"], []
    i = 1
    while i < len(words):
        word = words[i]
        if HOLE in word:
            if is_group(cmd):
                return None  # the command itself is computed: nothing to check
            i += 1
            continue
        if word in ("-h", "--help"):
            i += 1
        elif word.startswith("-") and not re.match(r"^-\d", word):
            name, eq, _ = word.partition("=")
            opt = _option(cmd, name)
            if opt is None:
                return f"{text!r}: `{' '.join(path)}` has no option {name}"
            i += 1 if (opt.is_flag or eq) else 2
        elif is_group(cmd):
            sub = cmd.commands.get(word)
            if sub is None:
                return f"{text!r}: `{' '.join(path)}` has no command {word!r}"
            cmd, i = sub, i + 1
            path.append(word)
        else:
            args.append(word)
            i += 1
    if not is_group(cmd):
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        most = sum(p.nargs for p in arguments) if all(p.nargs > 0 for p in arguments) else None
        if most is not None and len(args) > most:
            return f"{text!r}: `{' '.join(path)}` takes at most {most} argument(s), got {args}"
    return None


def commands_in_text(text: str) -> Iterator[str]:
    """The `parhelia ...` commands a help text shows: lines that start with one (up to a
    two-space gap, `|`, `#`), each side of `&&`, and `backticked` mentions in prose."""
    for raw in text.splitlines():
        for part in raw.split("&&"):
            line = re.split(r"\s{2,}|\s\|\s|\s#", part.strip())[0]
            words = line.split()
            while words and ENV_ASSIGN.match(words[0]):
                words.pop(0)
            if words[:1] == ["parhelia"]:
                yield line
    yield from re.findall(r"`(parhelia [^`]+)`", text)
    yield from (
        m.rstrip(".") for m in re.findall(r":\s+(parhelia\s[^`\n(]+?)\s*(?:$|\()", text, re.M)
    )


def suggested_commands(path: Path) -> Iterator[tuple[int, str]]:
    """(line, command) for every string literal in a module that starts with `parhelia ` (not
    docstrings); f-string expressions become HOLE words."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings or id(node) in inner:
                continue
            text = node.value
        else:
            continue
        for command in commands_in_text(text):
            yield node.lineno, command
