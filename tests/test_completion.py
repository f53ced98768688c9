"""Shell completion through Click's protocol (`_PARHELIA_COMPLETE`), against the real CLI in a
subprocess: container and task ids from the store, error codes and topics from the catalogue;
`completion bash|zsh|fish` prints the script and `completion install` writes it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parhelia.app.completion import COMPLETE_VAR


def complete(env, words: str, *, shell: str = "bash", extra: dict | None = None) -> list[str]:
    """What the shell would offer for the last word of `words` (bash's protocol)."""
    argv = words.split(" ")
    run_env = {**env.env, COMPLETE_VAR: f"complete_{shell}", **(extra or {})}
    run_env.update({"COMP_WORDS": words, "COMP_CWORD": str(len(argv) - 1)})
    r = subprocess.run(
        [sys.executable, "-m", "parhelia.app"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_container_and_task_ids_complete_from_the_store(parhelia_env):
    env = parhelia_env
    a = env.ok("task", "create", "one")
    b = env.ok("task", "create", "two")
    got = complete(env, "parhelia containers show c-")
    assert set(got) == {a["container_id"], b["container_id"]}
    prefix = a["container_id"][:6]
    assert a["container_id"] in complete(env, f"parhelia containers terminate {prefix}")
    assert set(complete(env, "parhelia task show ")) == {a["task_id"], b["task_id"]}
    assert set(complete(env, "parhelia t cancel ")) == {a["task_id"], b["task_id"]}  # via alias
    assert a["container_id"] in complete(env, "parhelia events list --container ")


def test_error_codes_and_help_topics_complete_from_the_catalogue(parhelia_env):
    got = complete(parhelia_env, "parhelia help E60")
    assert got == ["E600", "E601", "E602", "E603", "E604", "E605"]
    assert "workflow" in complete(parhelia_env, "parhelia help w")
    assert "defaults.cpu" in complete(parhelia_env, "parhelia config show defaults.")


def test_a_store_that_cannot_be_read_completes_nothing(parhelia_env, tmp_path):
    bad = {"PARHELIA_DB_URL": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"}
    assert complete(parhelia_env, "parhelia containers show c-", extra=bad) == []


@pytest.mark.parametrize(
    "shell, needle",
    [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete --command parhelia")],
)
def test_completion_prints_each_shells_script(parhelia_env, shell, needle):
    r = parhelia_env.run("completion", shell)
    assert r.code == 0 and needle in r.out and COMPLETE_VAR in r.out


def test_completion_install_writes_for_the_current_shell(parhelia_env, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SHELL", "/bin/bash")
    data = parhelia_env.ok("completion", "install")
    assert data["shell"] == "bash" and os.path.isfile(data["path"])
    assert "source" in (tmp_path / ".bashrc").read_text()
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    r = parhelia_env.run("completion", "install", "--json")
    assert r.code != 0 and r.json["error"]["code"] == "E101"


def test_the_fast_path_answers_ids_as_the_general_path_does(parhelia_env, monkeypatch, capsys):
    """An id completion answered before Typer loads offers what Click's protocol offers."""
    from parhelia.app import completion_fast

    env = parhelia_env
    made = [env.ok("task", "create", f"task {i}") for i in range(3)]
    from typer._completion_classes import BashComplete

    from parhelia.app.cli import click_command

    click_way = BashComplete(click_command(), {}, "parhelia", "_PARHELIA_COMPLETE")
    general = [i.value for i in click_way.get_completions(["c", "rm", "x"], "c-")]
    assert set(general) == {m["container_id"] for m in made}
    words = {"_PARHELIA_COMPLETE": "complete_bash", "COMP_WORDS": "parhelia c rm x c-"}
    assert completion_fast.answer({**words, "COMP_CWORD": "4"})
    assert set(capsys.readouterr().out.split()) == set(general)
    for not_ids in ("parhelia containers list --", "parhelia help E", "parhelia task create "):
        argv = not_ids.split(" ")
        bash = {"_PARHELIA_COMPLETE": "complete_bash", "COMP_WORDS": not_ids}
        assert not completion_fast.answer({**bash, "COMP_CWORD": str(len(argv) - 1)})


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_fast_path_answers_zsh_and_fish_exactly_as_typer_does(
    parhelia_env, monkeypatch, capsys, shell
):
    """zsh and fish ask through `_TYPER_COMPLETE_ARGS`; the fast path prints, byte for byte, what
    Typer's own completion class prints for the same line (with ids, and with none)."""
    from typer._completion_classes import FishComplete, ZshComplete

    from parhelia.app import completion_fast
    from parhelia.app.cli import click_command

    made = [parhelia_env.ok("task", "create", f"task {i}") for i in range(2)]
    cls = ZshComplete if shell == "zsh" else FishComplete
    seen = {}
    for line in ("parhelia c rm x c-", "parhelia containers show zz", "parhelia t show "):
        env = {"_PARHELIA_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line}
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        general = cls(click_command(), {}, "parhelia", "_PARHELIA_COMPLETE").complete() + "\n"
        capsys.readouterr()
        assert completion_fast.answer(env)
        assert capsys.readouterr().out == general, line
        seen[line] = general
    assert all(m["container_id"] in seen["parhelia c rm x c-"] for m in made)
    assert all(m["task_id"] in seen["parhelia t show "] for m in made)
    assert "c-" not in seen["parhelia containers show zz"]
    not_ids = {"_PARHELIA_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "parhelia help E"}
    assert not completion_fast.answer(not_ids)
