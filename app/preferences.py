"""Last-used prompt values and the smart defaults built from them (SPEC-20 smart prompts).

Precedence for each task default: a value set explicitly in configuration (project file, user
file, environment or flag) beats the last-used value, which beats the built-in default. The cache
is a convenience: a missing, unreadable or corrupted file counts as empty, and a failed write never
fails the command that made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parhelia.app.config import BadValue, LoadedSettings, cache_dir, coerce, get_value, schema
from parhelia.state.private import private_dir

LAST_USED_FILE = "last_used.json"

# Prompt field -> the setting that configures it.
PROMPT_FIELDS = {
    "backend": "backend",
    "gpu": "defaults.gpu",
    "cpu": "defaults.cpu",
    "memory_mib": "defaults.memory_mib",
    "timeout_minutes": "defaults.timeout_minutes",
}


def last_used_path(env: Mapping[str, str] | None = None) -> Path:
    return cache_dir(env) / LAST_USED_FILE


def _valid(values: Mapping[str, Any]) -> dict[str, Any]:
    """Only known prompt fields whose values have the setting's type (and choice)."""
    out: dict[str, Any] = {}
    for key, setting in PROMPT_FIELDS.items():
        if key not in values:
            continue
        with contextlib.suppress(BadValue):
            out[key] = coerce(schema()[setting], values[key], text=False)
    return out


def load_last_used(path: Path | None = None) -> dict[str, Any]:
    """The cached last-used values; `{}` when the file is missing or corrupted."""
    path = path or last_used_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return _valid(data) if isinstance(data, dict) else {}


def save_last_used(values: Mapping[str, Any], path: Path | None = None) -> bool:
    """Merge `values` into the cache atomically (temp file + rename). False if it could not be written."""
    path = path or last_used_path()
    merged = {**load_last_used(path), **_valid(values)}
    try:
        private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".last_used.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(merged, fh, indent=2, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return False
    return True


def task_defaults_with_sources(
    loaded: LoadedSettings, last_used: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, str]]:
    """Each prompt field's default and why: the config source, "last used", or "default"."""
    last = _valid(load_last_used() if last_used is None else last_used)
    out: dict[str, tuple[Any, str]] = {}
    for key, setting in PROMPT_FIELDS.items():
        source = loaded.sources.get(setting, "default")
        if source == "default" and key in last:
            out[key] = (last[key], "last used")
        else:
            out[key] = (get_value(loaded.settings, setting), source)
    return out


def task_defaults(
    loaded: LoadedSettings, last_used: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults for a new task's prompt; `last_used=None` reads the cache."""
    return {k: v for k, (v, _) in task_defaults_with_sources(loaded, last_used).items()}
