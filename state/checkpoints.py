"""Checkpoints as data: a workspace manifest (path, size, mode, content hash per file) and the diff
of two manifests. Pure: reading files and objects is the caller's (`workers/checkpoint_archive.py`);
a patch takes a `read(hash) -> bytes` so it can be tested without a disk.

A manifest names content by SHA-256, so two checkpoints of one workspace share every unchanged
file, and the manifest's own hash is the checkpoint's reference and verification checksum.
"""

from __future__ import annotations

import difflib
import json
import posixpath
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

MANIFEST_VERSION = 1
# Triggers a checkpoint row may carry (SPEC-03's, plus `terminate`: before a loop's terminate).
TRIGGERS = ("manual", "terminate", "detach", "periodic", "error", "complete")
# A patch shows text files up to this size; bigger or binary files are named, not diffed.
PATCH_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a workspace: a regular file (content `hash`) or a symlink (`link` target)."""

    path: str  # relative, POSIX separators, never absolute or with `..`
    size: int
    mode: int  # st_mode permission bits (and the type, for symlinks)
    hash: str  # sha256 hex of the content (of the link target for symlinks)
    link: str | None = None

    @property
    def is_link(self) -> bool:
        return self.link is not None


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...] = ()
    version: int = MANIFEST_VERSION

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def files(self) -> int:
        return len(self.entries)

    def by_path(self) -> dict[str, ManifestEntry]:
        return {e.path: e for e in self.entries}

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted entries and keys), so one workspace state has one hash."""
        doc = {
            "version": self.version,
            "entries": [
                {k: v for k, v in asdict(e).items() if v is not None}
                for e in sorted(self.entries, key=lambda e: e.path)
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        if doc.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {doc.get('version')!r} is not {MANIFEST_VERSION}")
        entries = tuple(ManifestEntry(**e) for e in doc["entries"])
        for e in entries:
            check_path(e.path)
        return cls(entries)


def check_path(path: str) -> str:
    """`path` if it stays inside the workspace (relative, no `..`); ValueError otherwise."""
    norm = posixpath.normpath(path)
    if not path or path.startswith("/") or norm != path or norm == ".." or norm.startswith("../"):
        raise ValueError(f"manifest path {path!r} leaves the workspace")
    return path


@dataclass(frozen=True)
class Change:
    path: str
    old_size: int | None  # None: added
    new_size: int | None  # None: removed
    old_mode: int | None = None
    new_mode: int | None = None

    @property
    def kind(self) -> str:
        if self.old_size is None:
            return "added"
        if self.new_size is None:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class ManifestDiff:
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def all(self) -> list[Change]:
        return sorted([*self.added, *self.removed, *self.changed], key=lambda c: c.path)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def stat_line(self) -> str:
        grown = sum((c.new_size or 0) - (c.old_size or 0) for c in self.all)
        sign = "+" if grown >= 0 else "-"
        return (
            f"{len(self.all)} files changed: {len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.changed)} changed ({sign}{abs(grown)} bytes)"
        )

    def to_dict(self) -> dict:
        def row(c: Change) -> dict:
            return {"path": c.path, "old_size": c.old_size, "new_size": c.new_size}

        return {
            "added": [row(c) for c in self.added],
            "removed": [row(c) for c in self.removed],
            "changed": [row(c) for c in self.changed],
            "summary": self.stat_line(),
        }


def diff_manifests(a: Manifest, b: Manifest) -> ManifestDiff:
    """What changed from `a` to `b`: files added, removed, and changed (content, link or mode)."""
    old, new = a.by_path(), b.by_path()
    added = [Change(p, None, new[p].size, None, new[p].mode) for p in sorted(new.keys() - old)]
    removed = [Change(p, old[p].size, None, old[p].mode, None) for p in sorted(old.keys() - new)]
    changed = [
        Change(p, old[p].size, new[p].size, old[p].mode, new[p].mode)
        for p in sorted(old.keys() & new.keys())
        if (old[p].hash, old[p].mode, old[p].link) != (new[p].hash, new[p].mode, new[p].link)
    ]
    return ManifestDiff(added, removed, changed)


def _text(data: bytes) -> list[str] | None:
    """The lines of `data` if it is UTF-8 text without NULs, else None (binary)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def unified_patch(
    a: Manifest,
    b: Manifest,
    read: Callable[[str], bytes],
    *,
    labels: tuple[str, str] = ("a", "b"),
    paths: Iterable[str] | None = None,
) -> str:
    """A unified diff (difflib) of every added, removed or changed text file from `a` to `b`.

    `read(hash)` returns a file's content. Binary and oversized files get a one-line note."""
    old, new = a.by_path(), b.by_path()
    wanted = set(paths) if paths is not None else None
    out: list[str] = []
    for change in diff_manifests(a, b).all:
        if wanted is not None and change.path not in wanted:
            continue
        before, after = old.get(change.path), new.get(change.path)
        la = f"{labels[0]}/{change.path}" if before else "/dev/null"
        lb = f"{labels[1]}/{change.path}" if after else "/dev/null"
        if before and after and before.hash == after.hash:
            out.append(f"mode {before.mode:o} -> {after.mode:o}: {change.path}\n")
            continue
        if any(e is not None and e.size > PATCH_MAX_BYTES for e in (before, after)):
            out.append(f"Files {la} and {lb} differ (over {PATCH_MAX_BYTES} bytes)\n")
            continue
        texts = [_content(e, read) for e in (before, after)]
        if any(t is None for t in texts):
            out.append(f"Binary files {la} and {lb} differ\n")
            continue
        lines = difflib.unified_diff(texts[0], texts[1], la, lb)
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _content(entry: ManifestEntry | None, read: Callable[[str], bytes]) -> list[str] | None:
    if entry is None:
        return []
    if entry.is_link:
        return [f"-> {entry.link}\n"]
    return _text(read(entry.hash))


def mode_text(mode: int) -> str:
    return stat.filemode(mode)


def size_text(n: int | None) -> str:
    """Bytes as 512B, 4.0K, 1.5M, 2.1G (the column width of `ls -lh`)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"  # pragma: no cover


@dataclass(frozen=True)
class WorkspaceChanges:
    """What a container's agent changed since its task began (the dashboard's diff view): from
    the checkpoint it was restored from, or from an empty workspace, to a checkpoint taken now."""

    container_id: str
    checkpoint_id: str  # the checkpoint taken for this view
    baseline_id: str | None  # the checkpoint the container was restored from, if any
    diff: ManifestDiff
    patch: str

    @property
    def title(self) -> str:
        since = f"checkpoint {self.baseline_id}" if self.baseline_id else "its task began"
        return f"{self.container_id}: changes since {since} (now: {self.checkpoint_id})"
