"""Layered configuration: order and sources, the naming rule for every setting, and errors a user
can cause (bad TOML, typos, wrong types, invalid choices). Never reads the real home."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from parhelia.app import config
from parhelia.app.config import (
    NON_SETTING_ENV,
    effective_rows,
    format_value,
    load_settings,
    resolve_backend_name,
    resolve_db_url,
)
from parhelia.app.trust import GUARDED, trust
from parhelia.state.errors import ParheliaError
from parhelia.state.settings import CHOICES, RANGES, Settings, get_value, range_problem


@pytest.fixture
def home(tmp_path: Path) -> dict:
    """An isolated world: config/data/cache dirs under tmp_path and a project that is a git root."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    env = {
        "PARHELIA_CONFIG_HOME": str(tmp_path / "cfg"),
        "PARHELIA_DATA_DIR": str(tmp_path / "data"),
        "PARHELIA_CACHE_DIR": str(tmp_path / "cache"),
    }
    return {"env": env, "project": project, "user_file": tmp_path / "cfg" / "config.toml"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(home: dict, flags=None, extra_env=None, cwd=None):
    return load_settings(
        flags=flags, cwd=cwd or home["project"], env={**home["env"], **(extra_env or {})}
    )


# -- layering ------------------------------------------------------------------------------


def test_defaults_when_nothing_is_configured(home):
    loaded = load(home)
    assert loaded.settings == Settings()
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.files == [] and loaded.warnings == []


def test_layer_order_default_user_project_env_flag_with_sources(home):
    user = write(
        home["user_file"],
        'backend = "modal"\n\n[reconciler]\ninterval_seconds = 10\n\n[budget]\nceiling_usd = 1\n',
    )
    project = write(
        home["project"] / "parhelia.toml",
        '# project\nbackend = "local"\n[reconciler]\ninterval_seconds = 20\nstale_seconds = 7\n',
    )
    base = load(home)
    s = base.settings
    assert (s.backend, s.reconciler.interval_seconds, s.budget.ceiling_usd) == ("local", 20.0, 1.0)
    assert s.reconciler.stale_seconds == 7
    assert base.sources["budget.ceiling_usd"] == f"{user}:7"
    assert base.sources["backend"] == f"{project}:2"
    assert base.sources["reconciler.interval_seconds"] == f"{project}:4"
    assert base.sources["heartbeat.interval_seconds"] == "default"
    assert base.files == [user, project]

    env = {"PARHELIA_RECONCILER_INTERVAL_SECONDS": "30"}
    with_env = load(home, extra_env=env)
    assert with_env.settings.reconciler.interval_seconds == 30.0
    assert (
        with_env.sources["reconciler.interval_seconds"]
        == "env PARHELIA_RECONCILER_INTERVAL_SECONDS"
    )

    with_flag = load(
        home, extra_env=env, flags={"reconciler.interval_seconds": 40.0, "backend": "modal"}
    )
    assert with_flag.settings.reconciler.interval_seconds == 40.0
    assert with_flag.settings.backend == "modal"
    assert with_flag.sources["backend"] == "flag --backend"
    assert with_flag.sources["reconciler.interval_seconds"] == "flag reconciler.interval_seconds"
    assert with_flag.settings.reconciler.stale_seconds == 7  # untouched layers still apply


def test_flags_none_is_skipped_and_db_flag_spelling(home):
    loaded = load(home, flags={"backend": None, "db_url": "sqlite:///x.db"})
    assert loaded.settings.backend == "auto"
    assert loaded.sources["db_url"] == "flag --db"
    assert resolve_db_url(loaded.settings) == "sqlite:///x.db"


def test_project_file_found_in_parent_but_not_above_git_root(home, tmp_path):
    write(home["project"] / "parhelia.toml", "[agent]\nmax_turns = 3\n")
    deep = home["project"] / "src" / "pkg"
    deep.mkdir(parents=True)
    assert load(home, cwd=deep).settings.agent.max_turns == 3

    write(tmp_path / "parhelia.toml", "[agent]\nmax_turns = 9\n")  # above the git root
    other = tmp_path / "other-repo"
    (other / ".git").mkdir(parents=True)
    assert load(home, cwd=other).settings.agent.max_turns == 25


def test_lists_and_dicts_replace_not_merge_across_layers(home):
    write(home["user_file"], "[rates.gpu]\nH100 = 4.0\nT4 = 0.5\n")
    write(home["project"] / "parhelia.toml", "[rates]\ngpu = { A10G = 1 }\n")
    loaded = load(home)
    assert loaded.settings.rates.gpu == {"A10G": 1.0}


# -- the naming rule, for every field of the schema ------------------------------------------


def _leaf_fields():
    """(section or None, key, type, default) straight from the dataclasses, independent of config.py."""
    hints = typing.get_type_hints(Settings)
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub_hints = typing.get_type_hints(tp)
            for sf in dataclasses.fields(tp):
                yield (
                    f.name,
                    sf.name,
                    sub_hints[sf.name],
                    getattr(getattr(defaults, f.name), sf.name),
                )
        else:
            yield None, f.name, tp, getattr(defaults, f.name)


def _sample(name: str, tp, default):
    """A value of the field's type that differs from its default."""
    if name in CHOICES:
        return next(c for c in CHOICES[name] if c != default)
    if name == "defaults.gpu":
        return "A10G:2"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return ["alpha", "beta"] if args[0] is str else [1, 2, 3]
    if origin is dict:
        return {"H100": 4.5, "A10G": 1.25}
    if tp is bool:
        return not default
    if tp is int:
        return default + 1  # +1 keeps ordered settings (missed-heartbeat thresholds) in order
    if tp is float:
        return default + 1.5
    return f"value-of-{name}"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


LEAVES = list(_leaf_fields())


def test_schema_follows_the_naming_rule():
    sections = {s for s, _, _, _ in LEAVES if s}
    assert all("_" not in s for s in sections), "section names may not contain '_'"
    env_names = [f"PARHELIA_{(s + '_' if s else '').upper()}{k.upper()}" for s, k, _, _ in LEAVES]
    assert len(env_names) == len(set(env_names))
    assert not set(env_names) & NON_SETTING_ENV
    # a top-level key must not start with a section name, or its env name would be ambiguous
    assert not [k for s, k, _, _ in LEAVES if s is None and k.split("_")[0] in sections]


@pytest.mark.parametrize(
    ("section", "key", "tp", "default"), LEAVES, ids=[f"{s}.{k}" if s else k for s, k, *_ in LEAVES]
)
def test_every_setting_round_trips_through_env_toml_and_flags(home, section, key, tp, default):
    name = f"{section}.{key}" if section else key
    value = _sample(name, tp, default)
    var = f"PARHELIA_{(section + '_' if section else '').upper()}{key.upper()}"

    from_env = load(home, extra_env={var: format_value(value)})
    assert get_value(from_env.settings, name) == value
    assert from_env.sources[name] == f"env {var}"

    text = f"[{section}]\n{key} = {_toml(value)}\n" if section else f"{key} = {_toml(value)}\n"
    toml_file = write(home["project"] / "parhelia.toml", text)
    if name in GUARDED:  # a project file sets these only once trusted (tests/test_security.py)
        assert get_value(load(home).settings, name) == default
        trust(toml_file, home["env"])
    from_file = load(home)
    assert get_value(from_file.settings, name) == value
    assert from_file.sources[name] == f"{toml_file}:{2 if section else 1}"

    from_flag = load(home, flags={name: value})
    assert get_value(from_flag.settings, name) == value

    row = next(r for r in effective_rows(from_env) if r[0] == name)
    assert row == (name, format_value(value), f"env {var}")


def test_env_coercion_of_lists_dicts_bools_and_empty(home):
    loaded = load(
        home,
        extra_env={
            "PARHELIA_RATES_GPU": "H100=4.1, A10G=1.0",
            "PARHELIA_BUDGET_WARN_PERCENT": "10, 90,",
            "PARHELIA_MODAL_SECRETS": "a,b",
            "PARHELIA_BACKEND": "",  # empty counts as unset
            "PARHELIA_POLICY_BUDGET": "Block",  # choices are case-insensitive
        },
    )
    s = loaded.settings
    assert s.rates.gpu == {"H100": 4.1, "A10G": 1.0}
    assert s.budget.warn_percent == [10, 90]
    assert s.modal.secrets == ["a", "b"]
    assert s.backend == "auto" and loaded.sources["backend"] == "default"
    assert s.policy.budget == "block"


def test_bool_text_parsing():
    fi = config.FieldInfo("x.flag", "x", "flag", bool)
    assert [config.coerce(fi, v, text=True) for v in ("1", "true", "On", "no", "0")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(config.BadValue):
        config.coerce(fi, "maybe", text=True)


# -- errors --------------------------------------------------------------------------------


def assert_recoverable(err: ParheliaError, code: str = "E103") -> None:
    assert err.code == code
    assert "parhelia config show" in err.suggestions
    assert len(err.suggestions) >= 2


def test_malformed_toml_names_file_and_line(home):
    path = write(home["project"] / "parhelia.toml", '[agent]\nmax_turns = 3\ncommand = = "x"\n')
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert f"{path}:3" in exc.value.message
    assert_recoverable(exc.value)
    assert "parhelia help config" in exc.value.suggestions
    assert any(f"+3 {path}" in s for s in exc.value.suggestions)


def test_unknown_key_is_an_error_with_did_you_mean(home):
    path = write(home["user_file"], "[reconciler]\n\nintervall_seconds = 5\n")
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert f"{path}:3" in exc.value.message
    assert "did you mean [reconciler] interval_seconds" in exc.value.message
    assert_recoverable(exc.value)


def test_unknown_section_and_misplaced_key(home):
    path = write(home["project"] / "parhelia.toml", "[reconciller]\ninterval_seconds = 5\n")
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert f"{path}:1" in exc.value.message and "did you mean [reconciler]" in exc.value.message

    write(home["project"] / "parhelia.toml", "ceiling_usd = 5\n")
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert "did you mean [budget] ceiling_usd" in exc.value.message


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[reconciler]\ninterval_seconds = "abc"\n', 2, "[reconciler] interval_seconds"),
        ("[heartbeat]\nconcurrency = true\n", 2, "expected int"),
        ("[heartbeat]\nconcurrency = 1.5\n", 2, "expected int"),
        ('[budget]\nwarn_percent = [50, "x"]\n', 2, "[budget] warn_percent"),
        ("agent = 3\n", 1, "[agent] table"),
    ],
)
def test_wrong_type_in_file_names_file_line_and_key(home, text, line, fragment):
    path = write(home["project"] / "parhelia.toml", text)
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert f"{path}:{line}" in exc.value.message and fragment in exc.value.message
    assert_recoverable(exc.value)


def test_wrong_type_in_env_names_variable(home):
    var = "PARHELIA_RECONCILER_INTERVAL_SECONDS"
    with pytest.raises(ParheliaError) as exc:
        load(home, extra_env={var: "abc"})
    assert var in exc.value.message and "interval_seconds" in exc.value.message
    assert f"unset {var}" in exc.value.suggestions
    assert_recoverable(exc.value)

    with pytest.raises(ParheliaError) as exc:
        load(home, extra_env={"PARHELIA_RATES_GPU": "H100"})
    assert "NAME=VALUE" in exc.value.message


def test_env_typo_in_known_section_is_an_error_others_warn(home):
    with pytest.raises(ParheliaError) as exc:
        load(home, extra_env={"PARHELIA_RECONCILER_INTERVAL": "5"})
    assert "did you mean PARHELIA_RECONCILER_INTERVAL_SECONDS" in exc.value.message
    assert_recoverable(exc.value)

    loaded = load(
        home,
        extra_env={"PARHELIA_BACKNED": "local", "PARHELIA_DEBUG": "1", "PARHELIA_TASK_ID": "t-1"},
    )
    assert loaded.warnings == ["ignored environment PARHELIA_BACKNED: not a Parhelia setting"]


def test_choices_are_validated_with_the_valid_values(home):
    write(home["project"] / "parhelia.toml", 'backend = "lokal"\n')
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert "auto, local, modal" in exc.value.message and ":1" in exc.value.message
    assert_recoverable(exc.value)

    with pytest.raises(ParheliaError) as exc:
        load(home, extra_env={"PARHELIA_BUDGET_PERIOD": "year"}, cwd=home["project"].parent)
    assert "day, week, month" in exc.value.message

    with pytest.raises(ParheliaError) as exc:  # a flag is an argument: E101
        load(home, flags={"policy.orphans": "delete"}, cwd=home["project"].parent)
    assert exc.value.code == "E101" and "flag, terminate" in exc.value.message
    with pytest.raises(ParheliaError) as exc:
        load(home, flags={"reconciler.intervall": 1}, cwd=home["project"].parent)
    assert exc.value.code == "E101"


# -- resolution and paths --------------------------------------------------------------------


def test_backend_auto_resolution(tmp_path):
    auto = Settings()
    assert resolve_backend_name(auto, env={}, home=tmp_path) == "local"
    assert resolve_backend_name(auto, env={"MODAL_TOKEN_ID": "ak-test"}, home=tmp_path) == "modal"
    (tmp_path / ".modal.toml").write_text("[default]\n")
    assert resolve_backend_name(auto, env={}, home=tmp_path) == "modal"
    assert resolve_backend_name(Settings(backend="local"), env={}, home=tmp_path) == "local"
    other = tmp_path / "elsewhere.toml"
    assert (
        resolve_backend_name(auto, env={"MODAL_CONFIG_PATH": str(other)}, home=tmp_path) == "local"
    )


def test_directories_and_default_db_url(home, tmp_path):
    env = home["env"]
    assert config.data_dir(env) == tmp_path / "data"
    assert config.cache_dir(env) == tmp_path / "cache"
    assert config.user_config_path(env) == tmp_path / "cfg" / "config.toml"
    assert config.default_db_url(env) == f"sqlite:///{tmp_path / 'data' / 'parhelia.db'}"
    assert resolve_db_url(Settings(), env) == config.default_db_url(env)
    assert config.data_dir({}) != tmp_path / "data"  # platformdirs without the override


def test_to_dict_is_json_and_rows_cover_every_setting(home):
    write(home["user_file"], "[rates.gpu]\nH100 = 4.0\n")
    loaded = load(home)
    doc = json.loads(json.dumps(loaded.to_dict()))
    assert doc["settings"]["rates"]["gpu"] == {"H100": 4.0}
    assert doc["sources"]["rates.gpu"] == f"{home['user_file']}:1"
    rows = effective_rows(loaded)
    assert [r[0] for r in rows] == list(loaded.sources)
    assert ("rates.gpu", "H100=4.0", f"{home['user_file']}:1") in rows
    assert loaded.from_file("rates.gpu") and not loaded.from_file("backend")


# -- ranges (issue 11: settings that cannot hurt) ---------------------------------------------


def _numeric(tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    inner = args[-1] if origin in (list, dict) else tp
    return inner in (int, float)


def test_every_numeric_setting_has_a_range_and_every_range_a_setting():
    numeric = {f"{s}.{k}" if s else k for s, k, tp, _ in LEAVES if _numeric(tp)}
    assert numeric - set(RANGES) == set(), "give these settings a range in state/settings.py"
    assert set(RANGES) - numeric == set()
    defaults = Settings()
    for name, rng in RANGES.items():  # the built-in defaults are allowed values
        assert range_problem(name, get_value(defaults, name)) is None, (name, rng)


BAD_NUMBERS = [
    ("reconciler", "interval_seconds", "0", "1 to 86400 seconds"),
    ("reconciler", "lease_seconds", "-5", "1 to 604800 seconds"),
    ("reconciler", "interval_seconds", "nan", "1 to 86400 seconds"),
    ("heartbeat", "interval_seconds", "inf", "0.5 to 3600 seconds"),
    ("heartbeat", "probe_timeout_seconds", "0", "more than 0"),
    ("heartbeat", "retention_hours", "-inf", "more than 0"),
    ("retention", "events_days", "0", "more than 0"),
    ("budget", "ceiling_usd", "nan", "at least 0.01 and less than 1e+06 USD"),
    ("budget", "ceiling_usd", "1e-70", "at least 0.01 and less than 1e+06 USD"),
    ("heartbeat", "concurrency", "0", "1 to 256"),
]


@pytest.mark.parametrize(("section", "key", "raw", "allowed"), BAD_NUMBERS)
def test_out_of_range_in_a_file_is_e103_with_file_line_setting_and_range(
    home, section, key, raw, allowed
):
    path = write(home["project"] / "parhelia.toml", f"# c\n[{section}]\n{key} = {raw}\n")
    with pytest.raises(ParheliaError) as exc:
        load(home)
    msg = exc.value.message
    assert exc.value.code == "E103"
    assert f"{path}:3" in msg and f"[{section}] {key}" in msg and allowed in msg, msg


@pytest.mark.parametrize(("section", "key", "raw", "allowed"), BAD_NUMBERS)
def test_out_of_range_in_the_environment_is_e103_naming_the_variable(
    home, section, key, raw, allowed
):
    var = f"PARHELIA_{section.upper()}_{key.upper()}"
    with pytest.raises(ParheliaError) as exc:
        load(home, extra_env={var: raw})
    assert exc.value.code == "E103"
    assert var in exc.value.message and allowed in exc.value.message
    assert f"unset {var}" in exc.value.suggestions


@pytest.mark.parametrize(("section", "key", "raw", "allowed"), BAD_NUMBERS)
def test_out_of_range_flag_is_e103_naming_the_flag(home, section, key, raw, allowed):
    with pytest.raises(ParheliaError) as exc:
        load(home, flags={f"{section}.{key}": raw})
    assert exc.value.code == "E103"
    assert f"flag {section}.{key}" in exc.value.message and allowed in exc.value.message


def test_list_and_table_values_are_checked_one_by_one(home):
    with pytest.raises(ParheliaError, match=r"warn_percent\): 0 is out of range"):
        load(home, extra_env={"PARHELIA_BUDGET_WARN_PERCENT": "50,0"})
    path = write(home["project"] / "parhelia.toml", "[rates]\ngpu = { H100 = 0 }\n")
    with pytest.raises(ParheliaError, match=rf"{path}:2: \[rates\] gpu: 0.0 is out of range"):
        load(home)


def test_lease_must_be_longer_than_the_interval_naming_both_sources(home):
    path = write(home["project"] / "parhelia.toml", "[reconciler]\ninterval_seconds = 200\n")
    with pytest.raises(ParheliaError) as exc:
        load(home)
    msg = exc.value.message
    assert exc.value.code == "E103"
    assert "[reconciler] lease_seconds = 180 (default)" in msg
    assert f"[reconciler] interval_seconds = 200 ({path}:2)" in msg
    assert "more than 200" in msg
    with pytest.raises(ParheliaError, match="PARHELIA_RECONCILER_LEASE_SECONDS"):
        load(home, extra_env={"PARHELIA_RECONCILER_LEASE_SECONDS": "60"})  # equal is not longer
    ok = load(home, extra_env={"PARHELIA_RECONCILER_LEASE_SECONDS": "400"})
    assert ok.settings.reconciler.lease_seconds == 400.0


def test_missed_heartbeat_thresholds_keep_their_order(home):
    with pytest.raises(ParheliaError, match=r"dead_missed = 4 .*more than .*unhealthy_missed = 5"):
        load(home, extra_env={"PARHELIA_HEARTBEAT_DEAD_MISSED": "4"})


def test_retired_batch_setting_is_ignored_with_a_warning(home):
    path = write(home["project"] / "parhelia.toml", "[reconciler]\nbatch = 100\n")
    loaded = load(home)
    assert not hasattr(loaded.settings.reconciler, "batch")
    assert "reconciler.batch" not in loaded.sources
    assert any(f"{path}:2: ignored [reconciler] batch: retired" in w for w in loaded.warnings)


def test_gpu_settings_use_modal_spellings_and_refuse_unknown_names(home):
    write(
        home["project"] / "parhelia.toml",
        '[defaults]\ngpu = "h100"\n[rates]\ngpu = { a100 = 3.0 }\n',
    )
    s = load(home).settings
    assert s.defaults.gpu == "H100" and s.rates.gpu == {"A100-40GB": 3.0}
    assert (
        load(home, extra_env={"PARHELIA_DEFAULTS_GPU": "a10:2"}).settings.defaults.gpu == "A10G:2"
    )
    assert load(home, extra_env={"PARHELIA_DEFAULTS_GPU": "None"}).settings.defaults.gpu == "none"
    path = write(home["project"] / "parhelia.toml", '# gpu\n[defaults]\ngpu = "v100"\n')
    with pytest.raises(ParheliaError) as exc:
        load(home)
    assert exc.value.code == "E103"
    assert f"{path}:3: [defaults] gpu: unknown GPU type 'v100'" in exc.value.message
    assert "H100" in exc.value.message
    path = write(home["project"] / "parhelia.toml", "[rates]\ngpu = { V100 = 1.0 }\n")
    with pytest.raises(ParheliaError, match=rf"{path}:2: \[rates\] gpu: unknown GPU type"):
        load(home)
