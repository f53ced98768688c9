"""Guided prompts (SPEC-20), driven through a pseudo-terminal against the real CLI: `task create`
asks each missing value with its default and that default's source, shows the estimate and
warnings before dispatching, and asks before a warning is overridden; destructive commands list
what they stop and ask; off a terminal nothing is asked. Last-used values are kept per store and
backend."""

from __future__ import annotations

import os
from pathlib import Path

from parhelia.app.preferences import (
    last_used_rows,
    load_last_used,
    save_last_used,
    task_defaults_with_sources,
)
from tests import pty_driver


def tty_env(env, **extra) -> dict[str, str]:
    out = {k: v for k, v in env.env.items() if k != "PARHELIA_BACKEND"}
    out.update({"PARHELIA_BACKEND": "local", **extra})
    return out


def tasks(env) -> list:
    return env.store().list_tasks()


def test_guided_create_asks_each_missing_value_with_its_default_and_source(parhelia_env):
    env = parhelia_env
    plane = env.store().plane_id
    save_last_used({"backend": "local", "memory_mib": 1024}, plane=plane)
    code, text = pty_driver.run(
        ["task", "create"],
        tty_env(env, PARHELIA_DEFAULTS_CPU="0.5"),
        answers=[
            ("Prompt", "say hello"),
            ("Backend (local or modal), default from environment PARHELIA_BACKEND [local]", ""),
            ("GPU (none, T4, A10G, H100...), built-in default [none]", ""),
            ("CPU cores, default from environment PARHELIA_DEFAULTS_CPU [0.5]", ""),
            ("Memory (MiB), default from last used [1024]", ""),
            ("Timeout (minutes), built-in default", "7"),
        ],
        cwd=env.project,
    )
    assert code == 0, text
    assert "Estimate: " in text and text.index("Estimate: ") < text.index("dispatched")
    assert (
        "Resources: backend local (environment PARHELIA_BACKEND), GPU none (built-in default), "
        "CPU 0.5 (environment PARHELIA_DEFAULTS_CPU), memory MiB 1024 (last used), "
        "timeout min 7 (entered)"
    ) in text
    [t] = tasks(env)
    assert (t.prompt, t.cpu, t.memory_mib, t.timeout_minutes) == ("say hello", 0.5, 1024, 7)
    assert load_last_used(plane=plane)["timeout_minutes"] == 7


def test_a_standing_warning_is_shown_before_dispatch_and_no_dispatches_nothing(parhelia_env):
    env = parhelia_env
    args = ["task", "create", "train a pytorch model", "--gpu", "none", "--cpu", "1"]
    args += ["--memory", "512", "--timeout", "5", "--backend", "local"]
    code, text = pty_driver.run(
        args, tty_env(env), answers=[("Dispatch anyway?", "n")], cwd=env.project
    )
    assert code != 0
    assert "Warning:" in text and text.index("Warning:") < text.index("Dispatch anyway?")
    assert tasks(env) == []


def test_yes_takes_defaults_and_accepts_warnings_without_asking(parhelia_env):
    env = parhelia_env
    code, text = pty_driver.run(
        ["task", "create", "train a pytorch model", "--yes"], tty_env(env), cwd=env.project
    )
    assert code == 0, text
    assert "?" not in text.split("Estimate:")[0]  # nothing was asked
    assert "Warning:" in text and "Resources: " in text
    assert len(tasks(env)) == 1


def test_off_a_terminal_nothing_is_asked_and_a_missing_prompt_is_E102(parhelia_env):
    r = parhelia_env.run("task", "create")
    assert r.code != 0
    assert "E102" in r.err and "Prompt" not in r.out
    assert tasks(parhelia_env) == []


def test_plain_create_names_each_resource_and_its_source(parhelia_env):
    r = parhelia_env.run("task", "create", "say hello", "--cpu", "0.5")
    assert r.code == 0, r.err
    assert "CPU 0.5 (command line)" in r.out and "memory MiB 2048 (built-in default)" in r.out
    doc = parhelia_env.ok("task", "create", "again")
    assert doc["resources"]["cpu"] == {"value": 0.5, "source": "last used"}


def test_last_used_is_kept_per_store_and_backend(tmp_path, parhelia_env):
    from parhelia.app.config import load_settings

    loaded = load_settings(flags={}, env={})
    save_last_used({"backend": "local", "gpu": "T4", "cpu": 3}, plane="pl-a")
    save_last_used({"backend": "modal", "cpu": 8}, plane="pl-a")
    assert load_last_used(plane="pl-b") == {}
    assert load_last_used(plane="pl-a", backend="local") == {
        "backend": "modal",
        "gpu": "T4",
        "cpu": 3.0,
    }
    other = task_defaults_with_sources(loaded, plane="pl-b")
    assert other["gpu"] == (loaded.settings.defaults.gpu, "default")
    mine = task_defaults_with_sources(loaded, plane="pl-a")  # last backend: modal
    assert mine["backend"] == ("modal", "last used") and mine["cpu"] == (8.0, "last used")
    assert mine["gpu"][1] == "default"  # the T4 was used on local, not on modal
    assert ("last_used.local.gpu", "T4", "last used (local)") in last_used_rows("pl-a")


def test_config_show_lists_the_last_used_layer(parhelia_env):
    parhelia_env.ok("task", "create", "say hello", "--cpu", "0.5")
    rows = {r["name"]: r for r in parhelia_env.ok("config", "show")}
    assert rows["last_used.local.cpu"]["value"] == "0.5"
    assert rows["last_used.backend"]["source"] == "last used (this store)"


def test_task_cancel_refuses_off_a_terminal_without_yes(parhelia_env):
    tid = parhelia_env.ok("task", "create", "say hello")["task_id"]
    r = parhelia_env.run("task", "cancel", tid)
    assert r.code != 0 and "E102" in r.err and "--yes" in r.err
    assert parhelia_env.store().get_task(tid).status != "cancelled"


def test_task_cancel_on_a_terminal_shows_what_stops_and_asks(parhelia_env):
    env = parhelia_env
    made = env.ok("task", "create", "say hello")
    code, text = pty_driver.run(
        ["task", "cancel", made["task_id"]],
        tty_env(env),
        answers=[("?", "n")],
        cwd=env.project,
    )
    assert code != 0
    assert made["container_id"] in text and made["task_id"] in text
    assert env.store().get_task(made["task_id"]).status != "cancelled"
    code, text = pty_driver.run(
        ["task", "cancel", made["task_id"]], tty_env(env), answers=[("?", "y")], cwd=env.project
    )
    assert code == 0, text
    assert env.store().get_task(made["task_id"]).status == "cancelled"


def test_containers_rm_on_a_terminal_lists_what_stops_and_no_keeps_it(parhelia_env):
    env = parhelia_env
    made = env.ok("task", "create", "say hello")
    code, text = pty_driver.run(
        ["c", "rm", made["container_id"]], tty_env(env), answers=[("?", "n")], cwd=env.project
    )
    assert code != 0 and made["container_id"] in text and "sandbox" in text
    assert env.store().get_container(made["container_id"]).state != "terminated"


def test_sources_name_the_project_and_user_config_files(parhelia_env):
    env = parhelia_env
    user = Path(os.environ["PARHELIA_CONFIG_HOME"]) / "config.toml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("[defaults]\nmemory_mib = 4096\n")
    (env.project / "parhelia.toml").write_text("[defaults]\ntimeout_minutes = 30\n")
    r = env.run("task", "create", "say hello")
    assert r.code == 0, r.err
    assert f"memory MiB 4096 (user config {user}:2)" in r.out
    assert f"timeout min 30 (project config {env.project / 'parhelia.toml'}:2)" in r.out
