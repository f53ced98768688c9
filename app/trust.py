"""Which project files the user trusts, like direnv's `allow`.

A `parhelia.toml` found in the working directory or a parent comes with whatever repository was
cloned there. Until the user trusts it (`parhelia config trust`), it may not set what decides which
program runs or where data and secrets go: those keys (`GUARDED`) are ignored with a warning naming
the file and the command. Trust is remembered by the file's resolved path and the SHA-256 of its
content, so an edited file (a `git pull`) is untrusted again until reviewed. The record lives in the
user config dir, 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

from parhelia.state.private import FILE_MODE, private_dir

TRUST_FILE = "trusted.json"
# What a project file may set only once trusted: the program an agent runs and what it sees, where
# the data goes, which Modal secrets and image a sandbox gets.
GUARDED = ("agent.command", "agent.env", "local.root", "db_url", "modal.secrets", "modal.image")


def trust_record_path(env: Mapping[str, str] | None = None) -> Path:
    from parhelia.app.config import config_dir

    return config_dir(env) / TRUST_FILE


def content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(env: Mapping[str, str] | None) -> dict[str, str]:
    try:
        data = json.loads(trust_record_path(env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save(records: dict[str, str], env: Mapping[str, str] | None) -> None:
    target = trust_record_path(env)
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=".trusted.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def trust_state(path: Path, env: Mapping[str, str] | None = None) -> str:
    """ "trusted", "changed" (trusted once, edited since) or "untrusted"."""
    recorded = _records(env).get(str(path.resolve()))
    if recorded is None:
        return "untrusted"
    try:
        return "trusted" if recorded == content_hash(path) else "changed"
    except OSError:
        return "untrusted"


def trust(path: Path, env: Mapping[str, str] | None = None) -> str:
    """Remember `path` with its current content as trusted; returns the content hash."""
    records = _records(env)
    digest = content_hash(path)
    records[str(path.resolve())] = digest
    _save(records, env)
    return digest


def untrust(path: Path, env: Mapping[str, str] | None = None) -> bool:
    """Forget `path`; False when it was not trusted."""
    records = _records(env)
    if records.pop(str(path.resolve()), None) is None:
        return False
    _save(records, env)
    return True


def trust_command(path: Path) -> str:
    return f"parhelia config trust {shlex.quote(str(path))}"


def ignored_warning(path: Path, names: list[str], state: str) -> str:
    why = "it changed since you trusted it" if state == "changed" else "it is not trusted"
    return (
        f"{path}: ignored {', '.join(names)} because {why} (a project file may not choose which "
        f"program runs or where data goes); review it, then run: {trust_command(path)}"
    )
