"""Smart prompt defaults (SPEC-20): configured value > last used > built-in default; the cache is
atomic, merged, and ignored when corrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parhelia.app.config import load_settings
from parhelia.app.preferences import (
    load_last_used,
    save_last_used,
    task_defaults,
    task_defaults_with_sources,
)


@pytest.fixture
def world(tmp_path: Path) -> dict:
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    env = {"PARHELIA_CONFIG_HOME": str(tmp_path / "cfg"), "PARHELIA_CACHE_DIR": str(tmp_path / "c")}
    return {"env": env, "project": project, "user": tmp_path / "cfg" / "config.toml"}


def load(world, extra_env=None):
    return load_settings(cwd=world["project"], env={**world["env"], **(extra_env or {})})


LAST = {"backend": "local", "gpu": "A10G", "cpu": 4, "memory_mib": 8192, "timeout_minutes": 15}


def test_builtin_defaults_without_config_or_cache(world):
    assert task_defaults(load(world), last_used={}) == {
        "backend": "auto",
        "gpu": "none",
        "cpu": 1.0,
        "memory_mib": 2048,
        "timeout_minutes": 60,
    }


def test_last_used_beats_builtin_defaults(world):
    got = task_defaults_with_sources(load(world), last_used=LAST)
    assert got["gpu"] == ("A10G", "last used")
    assert got["cpu"] == (4.0, "last used")
    assert got["backend"] == ("local", "last used")


def test_config_files_beat_last_used_and_project_beats_user(world):
    user = world["user"]
    user.parent.mkdir(parents=True)
    user.write_text('backend = "modal"\n[defaults]\ngpu = "T4"\ntimeout_minutes = 90\n')
    project = world["project"] / "parhelia.toml"
    project.write_text('[defaults]\ngpu = "H100"\n')
    got = task_defaults_with_sources(load(world), last_used=LAST)
    assert got["gpu"] == ("H100", f"{project}:2")
    assert got["timeout_minutes"] == (90, f"{user}:4")
    assert got["backend"] == ("modal", f"{user}:1")
    assert got["cpu"] == (4.0, "last used")  # not configured anywhere: last used wins
    assert got["memory_mib"] == (8192, "last used")


def test_environment_also_beats_last_used(world):
    got = task_defaults(load(world, {"PARHELIA_DEFAULTS_CPU": "0.5"}), last_used=LAST)
    assert got["cpu"] == 0.5 and got["gpu"] == "A10G"


def test_save_then_load_round_trip_merges_and_drops_invalid(tmp_path):
    path = tmp_path / "cache" / "last_used.json"
    assert load_last_used(path) == {}
    assert save_last_used({"gpu": "T4", "cpu": 2, "junk": 1}, path)
    assert save_last_used({"timeout_minutes": 30, "memory_mib": "lots", "backend": "nope"}, path)
    assert load_last_used(path) == {"gpu": "T4", "cpu": 2.0, "timeout_minutes": 30}
    assert not list(path.parent.glob(".last_used.*"))  # no temp files left behind


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "", '{"cpu": "abc"}'])
def test_corrupted_cache_is_treated_as_empty(tmp_path, content, world):
    path = tmp_path / "last_used.json"
    path.write_text(content)
    assert load_last_used(path) == {}
    assert save_last_used({"gpu": "L4"}, path)  # and is replaced by a good one
    assert json.loads(path.read_text()) == {"gpu": "L4"}


def test_unwritable_cache_does_not_fail(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert save_last_used({"gpu": "T4"}, blocker / "last_used.json") is False


def test_default_path_follows_cache_dir_env(world, monkeypatch, tmp_path):
    monkeypatch.setenv("PARHELIA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert save_last_used({"gpu": "B200"})
    assert (tmp_path / "elsewhere" / "last_used.json").is_file()
    assert load_last_used() == {"gpu": "B200"}
    assert task_defaults(load(world))["gpu"] == "B200"  # last_used=None reads the cache
