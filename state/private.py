"""Files and directories only their owner can read: Parhelia's database (and its -wal and -shm,
which SQLite creates with the database file's mode), logs, caches and trust records hold prompts,
costs and credentials' whereabouts. Files are created 0600, directories 0700, whatever the umask."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a directory; if this call creates it, it is 0700 (parents keep the usual mode)."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=DIR_MODE)
            os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def create_private_file(path: Path) -> bool:
    """Create `path` empty and 0600 unless it exists; True if it was created here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return True


def open_private_append(path: Path):
    """`open(path, "ab")`, but a file it creates is 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    return os.fdopen(fd, "ab")
