"""SPEC-20's short forms come from one table: every alias resolves to its command, none hides a
real command or another alias, and `--help` names them."""

from __future__ import annotations

import typer.main

from parhelia.app.aliases import ALIASES
from parhelia.app.cli import _register_groups, app, click_command


def _group(root, path):
    for word in path:
        root = root.commands[word]
    return root


def test_every_alias_resolves_to_the_command_it_names():
    root = click_command()
    for path, table in ALIASES.items():
        group = _group(root, path)
        for alias, target in table.items():
            got = group.get_command(None, alias)
            assert got is not None, (path, alias)
            assert got.callback is group.commands[target].callback, (path, alias, target)
            assert got.hidden and not group.commands[target].hidden


def test_no_alias_collides_with_a_command_or_another_alias():
    _register_groups()  # the nouns join `app` on first use
    plain = typer.main.get_command(app)  # the tree without aliases
    for path, table in ALIASES.items():
        real = set(_group(plain, path).commands)
        assert not set(table) & real, (path, set(table) & real)
        assert set(table.values()) <= real, path
        assert len(table) == len(set(table)), path


def test_spec_short_forms_run(parhelia_env):
    env = parhelia_env
    made = env.ok("task", "submit", "say hello")
    assert env.ok("t", "l") == env.ok("task", "ls") == env.ok("task", "list")
    assert env.ok("t", "s", made["task_id"])["task"]["id"] == made["task_id"]
    assert [c["id"] for c in env.ok("c", "ls")] == [made["container_id"]]
    gone = env.ok("c", "rm", made["container_id"], "--yes")
    assert gone[0]["state"] == "terminated"


def test_help_names_the_aliases(parhelia_env):
    r = parhelia_env.run("task", "--help")
    assert "alias: ls, l" in r.out and "alias: submit" in r.out
    r = parhelia_env.run("--help")
    assert "alias: t" in r.out


def test_every_visible_option_has_help_and_shows_one_long_name(parhelia_env):
    from tests import command_check

    root = click_command()
    for path, cmd in command_check.leaves(root):
        ctx = cmd.make_context(path, [], resilient_parsing=True)
        for param in cmd.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            assert param.help, (path, param.opts)
            names, _ = param.get_help_record(ctx)
            assert names.count("--") == 1, (path, names)
    r = parhelia_env.run("events", "list", "--help")
    assert "--type" in r.out and "--events" not in r.out
    assert parhelia_env.ok("events", "list", "--events", "task.cancelled") == []
