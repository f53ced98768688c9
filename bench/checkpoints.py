"""Benchmark the local checkpoint archive. Run: `python bench/checkpoints.py [FILES]`.

A workspace like an agent's repository: FILES small text files (default 2,000 of ~4 KB, in 40
directories) plus one 20 MB binary. Times a first snapshot (everything new), a second with nothing
changed (hashing only: content is shared), a third after 10 files changed, a restore, and a diff
with its patch; prints the archive's size against the workspace's. Prints figures only.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.state.checkpoints import diff_manifests, unified_patch
from parhelia.workers.checkpoint_archive import ContentStore, restore_dir, snapshot_dir

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<34} {1000 * (time.perf_counter() - t0):9.1f} ms")
    return out


def main() -> None:
    rng = random.Random(7)
    words = [f"word{i}" for i in range(500)]
    with tempfile.TemporaryDirectory() as tmp:
        work, out = Path(tmp) / "work", Path(tmp) / "out"
        for i in range(FILES):
            d = work / f"pkg{i % 40}"
            d.mkdir(parents=True, exist_ok=True)
            lines = (" ".join(rng.choices(words, k=8)) for _ in range(80))
            (d / f"mod{i}.py").write_text("\n".join(lines) + "\n")
        (work / "model.bin").write_bytes(os.urandom(20 * 2**20))
        content = ContentStore(Path(tmp) / "archive", "cp-bench")
        size = du(work)
        print(f"workspace: {FILES + 1} files, {size / 2**20:.1f} MiB")
        ref1 = timed("first snapshot (all new)", lambda: snapshot_dir(work, content))
        archive1 = du(content.root)
        ref2 = timed("second snapshot (nothing changed)", lambda: snapshot_dir(work, content))
        for i in range(10):
            p = work / f"pkg{i % 40}" / f"mod{i}.py"
            p.write_text(p.read_text() + "# edited\n")
        ref3 = timed("third snapshot (10 files changed)", lambda: snapshot_dir(work, content))
        archive3 = du(content.root)
        out.mkdir()
        timed("restore", lambda: restore_dir(ref3, content, out))
        m1, m3 = content.manifest(ref1), content.manifest(ref3)
        d = timed("diff (manifests)", lambda: diff_manifests(m1, m3))
        timed("patch (10 files)", lambda: unified_patch(m1, m3, content.read))
        print(f"diff: {d.stat_line()}; same ref when unchanged: {ref1 == ref2}")
        print(
            f"archive after 1 snapshot: {archive1 / 2**20:.1f} MiB "
            f"({archive1 / size:.2f}x the workspace); after 3: {archive3 / 2**20:.1f} MiB "
            f"(+{(archive3 - archive1) / 2**10:.0f} KiB for the third)"
        )


if __name__ == "__main__":
    main()
