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

from parhelia.app.config import BadValue, LoadedSettings, cache_dir, coerce, schema
from parhelia.state.private import private_dir
from parhelia.state.settings import get_value

LAST_USED_FILE = "last_used.json"
STORES_KEY = "stores"  # plane id -> {"backend": last backend, "by_backend": {backend: values}}

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


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _scoped(data: Mapping[str, Any], plane: str, backend: str | None) -> dict[str, Any]:
    """One store's values: its last backend, and the values last used with `backend` (or with
    that last backend). A demo's T4 on the local backend is not a Modal task's default."""
    stores = data.get(STORES_KEY)
    entry = stores.get(plane) if isinstance(stores, dict) else None
    if not isinstance(entry, dict):
        return {}
    out = _valid({"backend": entry.get("backend")}) if "backend" in entry else {}
    per = entry.get("by_backend")
    chosen = backend or out.get("backend")
    values = per.get(chosen) if isinstance(per, dict) and chosen else None
    if isinstance(values, dict):
        out.update({k: v for k, v in _valid(values).items() if k != "backend"})
    return out


def load_last_used(
    path: Path | None = None, *, plane: str | None = None, backend: str | None = None
) -> dict[str, Any]:
    """The cached last-used values; `{}` when the file is missing or corrupted. With `plane` (a
    store's control-plane id) only that store's values, for `backend` (default: its last one)."""
    data = _read(path or last_used_path())
    if plane is not None:
        return _scoped(data, plane, backend)
    return _valid({k: v for k, v in data.items() if k != STORES_KEY})


def save_last_used(
    values: Mapping[str, Any], path: Path | None = None, *, plane: str | None = None
) -> bool:
    """Merge `values` into the cache atomically (temp file + rename). False if it could not be
    written. With `plane` they are kept for that store and for the backend in `values`."""
    path = path or last_used_path()
    data = _read(path)
    if plane is None:
        kept = {STORES_KEY: data[STORES_KEY]} if STORES_KEY in data else {}
        merged = {**kept, **load_last_used(path), **_valid(values)}
    else:
        clean = _valid(values)
        stores = data.get(STORES_KEY) if isinstance(data.get(STORES_KEY), dict) else {}
        entry = stores.get(plane) if isinstance(stores.get(plane), dict) else {}
        per = entry.get("by_backend") if isinstance(entry.get("by_backend"), dict) else {}
        backend = clean.get("backend") or entry.get("backend")
        if backend:
            entry["backend"] = backend
            old = per.get(backend) if isinstance(per.get(backend), dict) else {}
            per[backend] = {**old, **{k: v for k, v in clean.items() if k != "backend"}}
        entry["by_backend"] = per
        stores[plane] = entry
        merged = {**data, STORES_KEY: stores}
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
    loaded: LoadedSettings,
    last_used: Mapping[str, Any] | None = None,
    *,
    plane: str | None = None,
    backend: str | None = None,
) -> dict[str, tuple[Any, str]]:
    """Each prompt field's default and why: the config source, "last used", or "default".

    `last_used=None` reads the cache: with `plane`, that store's values for `backend` (else the
    backend configured or last used there). The dashboard's `n` and `task create` both ask here."""
    if last_used is None:
        if plane is not None and backend is None:
            configured = loaded.sources.get("backend", "default") != "default"
            scoped = load_last_used(plane=plane)
            backend = loaded.settings.backend if configured else scoped.get("backend")
            backend = None if backend == "auto" else backend
        last_used = load_last_used(plane=plane, backend=backend)
    last = _valid(last_used)
    out: dict[str, tuple[Any, str]] = {}
    for key, setting in PROMPT_FIELDS.items():
        source = loaded.sources.get(setting, "default")
        if source == "default" and key in last:
            out[key] = (last[key], "last used")
        else:
            out[key] = (get_value(loaded.settings, setting), source)
    return out


def task_defaults(
    loaded: LoadedSettings, last_used: Mapping[str, Any] | None = None, **scope: Any
) -> dict[str, Any]:
    """Defaults for a new task's prompt; `last_used=None` reads the cache."""
    return {k: v for k, (v, _) in task_defaults_with_sources(loaded, last_used, **scope).items()}


def last_used_rows(plane: str, path: Path | None = None) -> list[tuple[str, str, str]]:
    """`config show`'s last-used layer: (name, value, source) for this store, per backend."""
    stores = _read(path or last_used_path()).get(STORES_KEY)
    entry = stores.get(plane) if isinstance(stores, dict) else None
    if not isinstance(entry, dict):
        return []
    rows = []
    if "backend" in entry:
        rows.append(("last_used.backend", str(entry["backend"]), "last used (this store)"))
    per = entry.get("by_backend") if isinstance(entry.get("by_backend"), dict) else {}
    for backend in sorted(per):
        values = _valid(per[backend]) if isinstance(per[backend], dict) else {}
        for key in sorted(values):
            if key != "backend":
                rows.append(
                    (f"last_used.{backend}.{key}", str(values[key]), f"last used ({backend})")
                )
    return rows
