"""Load the layered configuration into `parhelia.state.settings.Settings`, remembering where each
value came from, and the one place for Parhelia's directories.

Layers, later wins: built-in defaults < user `config.toml` < project `parhelia.toml` <
`PARHELIA_*` environment < command-line flags.

- User file: `<user config dir>/config.toml` (platformdirs, e.g. `~/.config/parhelia/config.toml`);
  `PARHELIA_CONFIG_HOME` relocates the directory.
- Project file: `parhelia.toml` in the working directory or a parent, searched up to the git root
  (a directory holding `.git`) or the filesystem root.
- Environment: `[section] key` is `PARHELIA_SECTION_KEY`, top-level keys have no section
  (`PARHELIA_BACKEND`). Lists are comma-separated, `rates.gpu` is `H100=4.1,A10G=1.0`, booleans
  are true/false/1/0/yes/no/on/off. An empty variable counts as unset.
- Flags: `{"backend": "local"}` or `{"section.key": value}`; `None` values are skipped.

Unknown keys in files (and unknown keys of a known section in the environment) are errors (E103)
with the closest real name, so a typo cannot silently fall back to a default. Other unknown
`PARHELIA_*` variables are reported in `LoadedSettings.warnings` and otherwise ignored.

Kept cheap to import (`parhelia --help` must start fast): platformdirs only; tomllib loads when a
file is there to read.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import (
    CHOICES,
    DATABASE_SOURCE,
    NORMALISE,
    ORDER,
    RETIRED,
    SECTIONS,
    Settings,
    effective_setting,
    env_name,
    get_value,
    range_problem,
)

APP_NAME = "parhelia"
PROJECT_FILE = "parhelia.toml"
USER_FILE = "config.toml"

# PARHELIA_* variables that are not settings: directory overrides, debugging, and the identity
# variables Parhelia itself sets inside the sandboxes it starts.
NON_SETTING_ENV = frozenset(
    {
        "PARHELIA_CONFIG_HOME",
        "PARHELIA_DATA_DIR",
        "PARHELIA_CACHE_DIR",
        "PARHELIA_DEBUG",
        "PARHELIA_CONTAINER_ID",
        "PARHELIA_TASK_ID",
        "PARHELIA_SANDBOX_ID",
    }
)

# Flags whose spelling on the command line is not `--<name>`.
FLAG_SPELLING = {"db_url": "--db"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
HELP_COMMANDS = ["parhelia config show", "parhelia help config"]


# -- directories ---------------------------------------------------------------------------


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the user config lives; `PARHELIA_CONFIG_HOME` relocates it (tests, demos)."""
    override = _env(env).get("PARHELIA_CONFIG_HOME")
    return Path(override).expanduser() if override else Path(platformdirs.user_config_dir(APP_NAME))


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / USER_FILE


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Database and local sandboxes; `PARHELIA_DATA_DIR` relocates it."""
    override = _env(env).get("PARHELIA_DATA_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Disposable state such as last-used prompt values; `PARHELIA_CACHE_DIR` relocates it."""
    override = _env(env).get("PARHELIA_CACHE_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_cache_dir(APP_NAME))


def default_db_url(env: Mapping[str, str] | None = None) -> str:
    return f"sqlite:///{data_dir(env) / 'parhelia.db'}"


def resolve_db_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The configured `db_url`, or SQLite in the user data dir when it is empty."""
    return settings.db_url or default_db_url(env)


def resolve_backend_name(
    settings: Settings, env: Mapping[str, str] | None = None, home: Path | None = None
) -> str:
    """`auto` means modal when Modal credentials are configured (MODAL_TOKEN_ID, or a Modal
    config file: MODAL_CONFIG_PATH or ~/.modal.toml), otherwise local."""
    if settings.backend != "auto":
        return settings.backend
    env = _env(env)
    if env.get("MODAL_TOKEN_ID"):
        return "modal"
    modal_toml = env.get("MODAL_CONFIG_PATH") or (home or Path.home()) / ".modal.toml"
    return "modal" if Path(modal_toml).expanduser().is_file() else "local"


def find_project_file(cwd: Path) -> Path | None:
    """`parhelia.toml` in `cwd` or its parents, not above the git root."""
    for d in [cwd, *cwd.parents]:
        candidate = d / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if (d / ".git").exists():
            return None
    return None


# -- the schema, read from the dataclasses --------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    name: str  # dotted: "backend", "agent.command"
    section: str | None
    key: str
    type: Any

    @property
    def env(self) -> str:
        return env_name(self.section, self.key)


@functools.cache
def schema() -> dict[str, FieldInfo]:
    """Every leaf setting by dotted name, with its real type (from the dataclass annotations)."""
    out: dict[str, FieldInfo] = {}
    for f, tp in _hints(Settings):
        if f in SECTIONS:
            for k, ktp in _hints(tp):
                out[f"{f}.{k}"] = FieldInfo(f"{f}.{k}", f, k, ktp)
        else:
            out[f] = FieldInfo(f, None, f, tp)
    return out


def _hints(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


@functools.cache
def _env_index() -> dict[str, FieldInfo]:
    return {fi.env: fi for fi in schema().values()}


# -- values ------------------------------------------------------------------------------


class BadValue(ValueError):
    """A value of the wrong type or outside the choices; the caller adds where it came from."""


class OutOfRange(BadValue):
    """A number outside its setting's `RANGES` entry (or not finite)."""


def _scalar(tp: type, value: Any, text: bool) -> Any:
    if text:
        s = str(value).strip()
        try:
            if tp is bool:
                if s.lower() in _TRUE | _FALSE:
                    return s.lower() in _TRUE
                raise ValueError
            return tp(s) if tp is not str else str(value)
        except ValueError:
            raise BadValue(f"{value!r} is not a valid {tp.__name__}") from None
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type(value) is tp:
        return value
    raise BadValue(f"{value!r} is a {type(value).__name__}, expected {tp.__name__}")


def coerce(fi: FieldInfo, value: Any, *, text: bool) -> Any:
    """`value` as the field's type. `text=True` parses the environment's string forms; otherwise the
    value must already have the type (TOML, typed flags). Choice-valued settings are checked."""
    origin, args = typing.get_origin(fi.type), typing.get_args(fi.type)
    if origin is list:
        items = [x.strip() for x in str(value).split(",")] if text else value
        if not isinstance(items, list):
            raise BadValue(f"{value!r} is not a list")
        out: Any = [_scalar(args[0], v, text) for v in items if not (text and v == "")]
    elif origin is dict:
        if text:
            pairs = [p.strip() for p in str(value).split(",") if p.strip()]
            if any("=" not in p for p in pairs):
                raise BadValue(f"{value!r} is not NAME=VALUE,NAME=VALUE")
            items = dict(p.split("=", 1) for p in pairs)
            items = {k.strip(): v for k, v in items.items()}
        else:
            items = value
        if not isinstance(items, dict):
            raise BadValue(f"{value!r} is not a table of NAME = VALUE")
        out = {str(k): _scalar(args[1], v, text) for k, v in items.items()}
    else:
        out = _scalar(fi.type, value, text)
    if normalise := NORMALISE.get(fi.name):
        try:
            out = normalise(out)
        except ValueError as exc:
            raise BadValue(str(exc)) from None
    if problem := range_problem(fi.name, out):
        raise OutOfRange(problem)
    choices = CHOICES.get(fi.name)
    if choices is not None:
        if str(out).lower() not in choices:
            raise BadValue(f"{out!r} is not one of {', '.join(choices)}")
        out = str(out).lower()
    return out


def format_value(value: Any) -> str:
    """The environment's spelling of a value, so `config show` output can be pasted back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    if value == "":
        return '""'
    return str(value)


def _did_you_mean(name: str) -> str:
    """A hint naming the closest real setting, in TOML spelling."""
    names = list(schema())
    close = difflib.get_close_matches(name, names + list(SECTIONS), n=1, cutoff=0.6)
    if not close:  # a right key in the wrong place: `interval_seconds` at top level
        key = name.rsplit(".", 1)[-1]
        close = [n for n in names if n.rsplit(".", 1)[-1] == key][:1]
    if not close:
        return ""
    return f"; did you mean {_toml_name(close[0])}?"


def _toml_name(name: str) -> str:
    section, _, key = name.rpartition(".")
    if not section:
        return f"[{name}]" if name in SECTIONS else name
    return f"[{section}] {key}"


# -- layers ------------------------------------------------------------------------------

Layer = dict[str, tuple[Any, str]]  # dotted name -> (value, source)

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"']+)\s*\]")
_KEY = re.compile(r"^\s*[\"']?([A-Za-z0-9_.\-]+)[\"']?\s*=")
_TOML_POS = re.compile(r"line (\d+), column (\d+)")


def _key_lines(text: str) -> dict[str, int]:
    """Best-effort line numbers for dotted names in a TOML file (tomllib keeps no positions)."""
    lines: dict[str, int] = {}
    table = ""
    for n, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            table = m.group(1).replace('"', "").replace("'", "")
            lines.setdefault(table, n)
        elif m := _KEY.match(line):
            lines.setdefault(f"{table}.{m.group(1)}" if table else m.group(1), n)
    return lines


def _file_error(path: Path, line: int | None, message: str) -> ParheliaError:
    where = f"{path}:{line}" if line else str(path)
    edit = f"${{EDITOR:-vi}} +{line} {path}" if line else f"${{EDITOR:-vi}} {path}"
    return ParheliaError(
        "E103", f"{where}: {message}", [edit, *HELP_COMMANDS], attempted=f"read {path}"
    )


def read_toml_layer(path: Path, warnings: list[str] | None = None) -> Layer:
    """The settings in one TOML file, typed and checked; E103 naming the file and line otherwise.
    A retired setting is skipped with a warning in `warnings`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(path, None, f"cannot be read ({exc})") from None
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        lineno = getattr(exc, "lineno", None)
        if lineno is None and (m := _TOML_POS.search(str(exc))):
            lineno = int(m.group(1))
        raise _file_error(path, lineno, f"not valid TOML: {exc}") from None
    lines = _key_lines(text)
    known = schema()
    layer: Layer = {}

    def put(name: str, value: Any) -> None:
        line = lines.get(name)
        if name in RETIRED:
            if warnings is not None:
                where = f"{path}:{line}" if line else str(path)
                warnings.append(f"{where}: ignored {_toml_name(name)}: retired; {RETIRED[name]}")
            return
        if name not in known:
            raise _file_error(
                path, line, f"unknown setting {_toml_name(name)}{_did_you_mean(name)}"
            )
        try:
            layer[name] = (
                coerce(known[name], value, text=False),
                f"{path}:{line}" if line else str(path),
            )
        except BadValue as exc:
            raise _file_error(path, line, f"{_toml_name(name)}: {exc}") from None

    for key, value in doc.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise _file_error(path, lines.get(key), f"{key} must be a [{key}] table")
            for sub, subvalue in value.items():
                put(f"{key}.{sub}", subvalue)
        elif key not in known and isinstance(value, dict):  # an unknown [section]
            raise _file_error(path, lines.get(key), f"unknown section [{key}]{_did_you_mean(key)}")
        else:
            put(key, value)
    return layer


def read_env_layer(env: Mapping[str, str], warnings: list[str]) -> Layer:
    index = _env_index()
    layer: Layer = {}
    for var, raw in sorted(env.items()):
        if not var.startswith("PARHELIA_") or var in NON_SETTING_ENV or raw == "":
            continue
        fi = index.get(var)
        if fi is None:
            section = var.removeprefix("PARHELIA_").split("_", 1)[0].lower()
            if section in SECTIONS:  # a typo inside a real section: refuse rather than ignore
                close = difflib.get_close_matches(var, list(index), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ParheliaError(
                    "E103",
                    f"environment {var}: not a setting of [{section}]{hint}",
                    [f"unset {var}", *HELP_COMMANDS],
                )
            warnings.append(f"ignored environment {var}: not a Parhelia setting")
            continue
        try:
            layer[fi.name] = (coerce(fi, raw, text=True), f"env {var}")
        except BadValue as exc:
            raise ParheliaError(
                "E103",
                f"environment {var} ({_toml_name(fi.name)}): {exc}",
                [f"unset {var}", *HELP_COMMANDS],
                attempted=f"read {var}",
            ) from None
    return layer


def read_flag_layer(flags: Mapping[str, Any]) -> Layer:
    known = schema()
    layer: Layer = {}
    for name, value in flags.items():
        if value is None:
            continue
        spelling = FLAG_SPELLING.get(
            name, f"--{name.replace('_', '-')}" if "." not in name else name
        )
        if name not in known:
            raise ParheliaError(
                "E101", f"unknown setting {name!r}{_did_you_mean(name)}", HELP_COMMANDS
            )
        try:
            layer[name] = (
                coerce(known[name], value, text=isinstance(value, str)),
                f"flag {spelling}",
            )
        except OutOfRange as exc:
            raise ParheliaError(
                "E103",
                f"flag {spelling} ({_toml_name(name)}): {exc}",
                ["parhelia --help", *HELP_COMMANDS],
                attempted=f"read {spelling}",
            ) from None
        except BadValue as exc:
            raise ParheliaError(
                "E101", f"{spelling}: {exc}", ["parhelia --help", *HELP_COMMANDS]
            ) from None
    return layer


# -- loading -----------------------------------------------------------------------------


@dataclass
class LoadedSettings:
    """The effective settings, where each came from, the files read, and non-fatal warnings."""

    settings: Settings
    sources: dict[str, str]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # settings an untrusted project file tried to set, and where: ignored (app/trust.py)
    ignored: dict[str, str] = field(default_factory=dict)

    def from_file(self, name: str) -> bool:
        """Whether the effective value of `name` was set in a config file (user or project)."""
        src = self.sources.get(name, "default")
        return src != "default" and not src.startswith(("env ", "flag "))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": dataclasses.asdict(self.settings),
            "sources": dict(self.sources),
            "files": [str(p) for p in self.files],
            "warnings": list(self.warnings),
            "ignored": dict(self.ignored),
        }


def load_settings(
    flags: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Defaults < user file < project file < environment < flags; raises ParheliaError on bad input."""
    env = _env(env)
    warnings: list[str] = []
    user, project = user_config_path(env), find_project_file(cwd or Path.cwd())
    files = [p for p in (user, project) if p and p.is_file()]
    layers = [read_toml_layer(p, warnings) for p in files]
    ignored: dict[str, str] = {}
    if project in files and project != user:
        ignored = _drop_untrusted(project, layers[-1], env, warnings)
    layers.append(read_env_layer(env, warnings))
    layers.append(read_flag_layer(flags or {}))

    settings = Settings()
    sources = dict.fromkeys(schema(), "default")
    for layer in layers:
        for name, (value, source) in layer.items():
            _set(settings, name, value)
            sources[name] = source
    check_order(settings, sources)
    return LoadedSettings(settings, sources, files, warnings, ignored)


def _drop_untrusted(
    path: Path, layer: Layer, env: Mapping[str, str], warnings: list[str]
) -> dict[str, str]:
    """Remove the guarded keys from an untrusted project file's layer; {name: where it was set}."""
    from parhelia.app.trust import GUARDED, ignored_warning, trust_state

    guarded = [name for name in layer if name in GUARDED]
    if not guarded:
        return {}
    state = trust_state(path, env)
    if state == "trusted":
        return {}
    ignored = {name: layer.pop(name)[1] for name in guarded}
    warnings.append(ignored_warning(path, [_toml_name(n) for n in guarded], state))
    return ignored


def check_order(settings: Settings, sources: Mapping[str, str]) -> None:
    """E103 when two settings that must keep an order (`ORDER`) do not, naming both and their sources."""
    for small, large, why in ORDER:
        a, b = get_value(settings, small), get_value(settings, large)
        if a < b:
            continue
        raise ParheliaError(
            "E103",
            f"{_toml_name(large)} = {b:g} ({sources[large]}) must be more than "
            f"{_toml_name(small)} = {a:g} ({sources[small]}): {why}; "
            f"allowed: {_toml_name(large)} more than {a:g}",
            [_fix_command(sources[large], large), _fix_command(sources[small], small)],
            attempted="check settings",
        )


def _fix_command(source: str, name: str) -> str:
    """Where to change a setting that came from `source`."""
    if source.startswith("env "):
        return f"unset {source.removeprefix('env ')}"
    if source.startswith("flag ") or source == "default":
        section, _, key = name.rpartition(".")
        return f"{env_name(section or None, key)}=VALUE parhelia config show"
    path, _, line = source.rpartition(":")
    if not line.isdigit():
        return f"${{EDITOR:-vi}} {source}"
    return f"${{EDITOR:-vi}} +{line} {path}"


def _set(settings: Settings, name: str, value: Any) -> None:
    section, _, key = name.rpartition(".")
    setattr(getattr(settings, section) if section else settings, key, value)


def effective_rows(
    loaded: LoadedSettings, stored: Mapping[str, Any] | None = None
) -> list[tuple[str, str, str]]:
    """(setting, value, source) for every setting, in schema order, for `parhelia config show`:
    the configured value, or the one a command stored in the database (`stored`), which wins for
    every reader (`state.settings.effective_setting`)."""
    from parhelia.state.db import masked

    def row(name: str) -> tuple[str, str, str]:
        source = loaded.sources[name]
        if name in loaded.ignored:
            source += f" (ignored {loaded.ignored[name]}: untrusted)"
        try:
            value, source = effective_setting(name, loaded.settings, stored or {}, source)
        except ParheliaError as exc:  # shown as it is stored: what every reader refuses (E103)
            value, source = (stored or {})[name], f"{DATABASE_SOURCE} ({exc.code}: {exc.message})"
        shown = format_value(value)
        if name == "db_url" and shown:
            shown = masked(shown)  # never print a password
        return name, shown, source

    return [row(name) for name in schema()]
