"""Seeded bench databases built once and copied for each run.

Seeding 10,000 containers with 5,000,000 events takes minutes; the measured runs write into their
copy (heartbeats, events), so each run starts from the same bytes. Kept under
`PARHELIA_BENCH_CACHE` (default: the user cache dir's `parhelia/bench`), keyed by a name the
caller makes from its sizes; a copy from an older schema is migrated when the store opens it.
`PARHELIA_BENCH_CACHE=off` builds every time, in the run's own directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path | None:
    value = os.environ.get("PARHELIA_BENCH_CACHE", "")
    if value == "off":
        return None
    if value:
        return Path(value)
    import platformdirs

    return Path(platformdirs.user_cache_dir("parhelia")) / "bench"


def seeded_db(name: str, into: Path, build: Callable[[str], None]) -> tuple[str, bool]:
    """A database at `into` seeded by `build(url)`: copied from the cache when it holds one for
    `name`, else built (and kept). (url, whether it came from the cache)."""
    cache = cache_dir()
    url = f"sqlite:///{into}"
    if cache is None:
        build(url)
        return url, False
    kept = cache / f"{name}.db"
    if not kept.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(f"sqlite:///{partial}")
        _checkpoint(partial)
        partial.rename(kept)
        shutil.copyfile(kept, into)
        return url, False
    shutil.copyfile(kept, into)
    return url, True


def _checkpoint(path: Path) -> None:
    """Everything in the main file (the cache keeps one file, no WAL beside it)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
