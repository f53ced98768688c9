"""The local checkpoint archive: workspace files stored by content hash under the data dir.

`<data dir>/checkpoints/objects/ab/cdef…` holds each distinct content once (zlib-compressed), so
repeated checkpoints of a workspace cost only what changed. A checkpoint's manifest
(`state.checkpoints.Manifest`) is an object too; its hash is the checkpoint's reference and
checksum. Writes are temp-file-then-rename, so a crash leaves at most an unreferenced object (the
cleanup's garbage collection removes it), never a half object under a real name.

Symlinks are recorded, never followed: a link to /etc/passwd is archived as its target's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from parhelia.state.checkpoints import Manifest, ManifestEntry, check_path
from parhelia.state.errors import ParheliaError
from parhelia.state.private import FILE_MODE, private_dir
from parhelia.workers.backends.base import WorkspaceSnapshot

CHUNK = 1 << 20
REF_PREFIX = "sha256:"
# Objects newer than this are never collected: a checkpoint being written has objects on disk
# before its row exists.
GC_GRACE_SECONDS = 3600.0
LOCK_NAME = ".lock"


def archive_root(data_dir: Path) -> Path:
    """Where the local archive lives: the one place this fact is written."""
    return Path(data_dir) / "checkpoints"


class ContentStore:
    """One control plane's archive, `<archive>/<plane id>/`: planes sharing a data dir (two
    databases) never collect each other's objects."""

    def __init__(self, archive: Path, plane: str | None) -> None:
        self.root = Path(archive) / (plane or "no-plane")
        self.objects = self.root / "objects"
        self._made: set[Path] = set()  # directories known to exist (one check each, not per file)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.objects / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def read(self, digest: str) -> bytes:
        data = zlib.decompress(self.path(digest).read_bytes())
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"object {digest[:12]} is damaged (its content has another hash)")
        return data

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self._touch(digest):
            self._write([data])
        return digest

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's content; (hash, size). Hashes first and copies only new content; a file
        that changes between the two reads is stored as the copy read it."""
        digest, size = _hash_file(path)
        if self._touch(digest):
            return digest, size
        with path.open("rb") as fh:
            return self._write(iter(lambda: fh.read(CHUNK), b""))

    def _touch(self, digest: str) -> bool:
        """True if the object exists (its mtime renewed, so a running cleanup keeps it)."""
        try:
            os.utime(self.path(digest))
            return True
        except FileNotFoundError:
            return False

    def _write(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Compress `chunks` into a temp file, then rename it to its hash; (hash, size)."""
        self._dir(self.root)
        self._dir(self.objects)
        fd, tmp = tempfile.mkstemp(dir=self.objects, prefix=".tmp-")
        try:
            h, size, comp = hashlib.sha256(), 0, zlib.compressobj(1)
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    fh.write(comp.compress(chunk))
                fh.write(comp.flush())
            digest = h.hexdigest()
            target = self.path(digest)
            self._dir(target.parent)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest, size

    def _dir(self, path: Path) -> None:
        if path not in self._made:
            private_dir(path)
            self._made.add(path)

    # -- manifests ------------------------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> str:
        return REF_PREFIX + self.put_bytes(manifest.to_bytes())

    def manifest(self, ref: str) -> Manifest:
        if not ref.startswith(REF_PREFIX):
            raise ValueError(f"{ref!r} is not a local checkpoint reference")
        return Manifest.from_bytes(self.read(ref.removeprefix(REF_PREFIX)))

    # -- garbage collection ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
        """The archive's lock (`flock`, across processes): a checkpoint holds it shared from its
        first object until its row is recorded, a collection holds it alone. So a collection
        never removes the objects of a checkpoint being taken, whatever their age. Without
        `wait`, a lock held elsewhere is BlockingIOError at once."""
        self._dir(self.root)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def collect(
        self,
        keep_refs: Iterable[str],
        *,
        grace: float = GC_GRACE_SECONDS,
        dry_run: bool = False,
    ) -> int:
        """Delete objects no kept manifest reaches (older than `grace`); bytes freed (or, with
        `dry_run`, that would be). Under `lock(exclusive=True)` a grace of 0 is safe."""
        keep: set[str] = set()
        for ref in keep_refs:
            keep.add(ref.removeprefix(REF_PREFIX))
            with contextlib.suppress(OSError, ValueError):
                keep.update(e.hash for e in self.manifest(ref).entries if not e.is_link)
        if not self.objects.is_dir():
            return 0
        freed, cutoff = 0, time.time() - grace
        for sub in self.objects.iterdir():
            if not sub.is_dir():
                continue  # a temp file of a write in flight
            for obj in sub.iterdir():
                digest = sub.name + obj.name
                with contextlib.suppress(FileNotFoundError):
                    st = obj.stat()
                    if digest not in keep and st.st_mtime < cutoff:
                        if not dry_run:
                            obj.unlink()
                        freed += st.st_size
        return freed


def _hash_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def snapshot_dir(workdir: Path, content: ContentStore, exclude: Iterable[str] = ()) -> str:
    """Archive every regular file and symlink under `workdir` (not following links); the ref.

    `exclude` names top-level entries left out (the local backend's own agent log)."""
    skip = set(exclude)
    entries: list[ManifestEntry] = []
    for dirpath, dirnames, filenames in os.walk(workdir, followlinks=False):
        rel_dir = os.path.relpath(dirpath, workdir)
        top = rel_dir == "."
        if top:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in sorted([*filenames, *(d for d in dirnames if _is_link(dirpath, d))]):
            if top and name in skip:
                continue
            full = Path(dirpath) / name
            rel = name if top else f"{rel_dir}/{name}".replace(os.sep, "/")
            try:
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(full)
                    digest = hashlib.sha256(target.encode()).hexdigest()
                    entries.append(ManifestEntry(rel, len(target), st.st_mode, digest, target))
                elif stat.S_ISREG(st.st_mode):
                    digest, size = content.put_file(full)
                    entries.append(ManifestEntry(rel, size, stat.S_IMODE(st.st_mode), digest))
            except FileNotFoundError:
                continue  # deleted by the agent while we walked: not part of this state
    return content.put_manifest(Manifest(tuple(entries)))


def _is_link(dirpath: str, name: str) -> bool:
    return os.path.islink(os.path.join(dirpath, name))


def restore_dir(ref: str, content: ContentStore, workdir: Path) -> Manifest:
    """Write the checkpoint's files into `workdir` (which exists): regular files first, symlinks
    last, so no file is ever written through a link. Returns the manifest."""
    manifest = content.manifest(ref)
    root = Path(workdir)
    files = [e for e in manifest.entries if not e.is_link]
    links = [e for e in manifest.entries if e.is_link]
    for e in files:
        target = root / check_path(e.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.read(e.hash))
        os.chmod(target, stat.S_IMODE(e.mode))
    for e in links:
        target = root / check_path(e.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(e.link, target)
    return manifest


# -- what the local backend calls: the same, with failures as E600 ---------------------------


def snapshot_workspace(
    workdir: Path, archive: Path, plane: str | None, exclude: Iterable[str] = ()
) -> WorkspaceSnapshot:
    content = ContentStore(archive, plane)
    try:
        if not workdir.is_dir():
            raise FileNotFoundError(f"the workspace {workdir} is gone")
        ref = snapshot_dir(workdir, content, exclude)
        manifest = content.manifest(ref)
    except (OSError, ValueError, zlib.error) as exc:
        raise ParheliaError(
            "E600",
            f"cannot archive {workdir} into {content.root}: {exc}",
            ["df -h " + str(archive), "parhelia checkpoint cleanup --yes", "parhelia config show"],
            attempted="checkpoint a local workspace",
        ) from exc
    return WorkspaceSnapshot(ref, manifest.size, manifest.files)


def seed_workspace(ref: str, archive: Path, plane: str | None, workdir: Path) -> None:
    try:
        restore_dir(ref, ContentStore(archive, plane), workdir)
    except (OSError, ValueError, zlib.error) as exc:
        raise ParheliaError(
            "E600",
            f"cannot restore checkpoint {ref[:19]} from {archive}: {exc}",
            ["parhelia checkpoint list", "parhelia checkpoint create CONTAINER"],
            attempted="restore a local workspace",
        ) from exc
