"""The issue-10 probe: do reconcile and dispatch race? 40 dispatches on the local backend (real
processes) while a daemon thread, with its own store connection and its own control plane, reconciles
every 0.1 s. Prints how many dispatches were lost: rows that say ended while their process runs
(and any dispatch that failed outright, e.g. an E105). Temporary SQLite file and sandbox root.

Run: `python bench/race.py [dispatches] [interval_seconds]` (defaults 40 and 0.1).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

from parhelia.state.errors import ParheliaError
from parhelia.state.requests import TaskRequest
from parhelia.state.settings import Settings
from parhelia.state.store import Store
from parhelia.workers.backends.local import LocalBackend
from parhelia.workers.control import ControlPlane

AGENT = "sh -c 'sleep 120' agent {prompt}"


def settings() -> Settings:
    s = Settings()
    s.agent.command = AGENT
    return s


def control(db: str, root: Path, holder: str) -> ControlPlane:
    return ControlPlane(
        Store(db),
        settings(),
        default_backend="local",
        backends={"local": LocalBackend(root, terminate_grace=1.0)},
        holder=holder,
    )


def probe(n: int, interval: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="parhelia-race-") as tmp:
        db, root = f"sqlite:///{Path(tmp) / 'p.db'}", Path(tmp) / "sb"
        dispatcher = control(db, root, "bench:dispatcher")
        daemon = control(db, root, "bench:daemon")
        stop = threading.Event()
        cycles = [0]

        def reconcile_loop() -> None:
            while not stop.is_set():
                daemon.reconcile_once()
                cycles[0] += 1
                stop.wait(interval)

        loop = threading.Thread(target=reconcile_loop, daemon=True)
        loop.start()
        results, failed = [], []
        t0 = time.perf_counter()
        for i in range(n):
            try:
                results.append(dispatcher.dispatch(TaskRequest(prompt=f"probe {i}")))
            except ParheliaError as exc:
                failed.append(exc.code)
        elapsed = time.perf_counter() - t0
        time.sleep(3 * interval)  # a few more cycles: a lost row may be judged after its dispatch
        stop.set()
        loop.join()
        backend = LocalBackend(root)
        alive = {i.sandbox_id for i in backend.list() if i.running}
        lost = [
            r
            for r in results
            if r.sandbox_id in alive
            and dispatcher.store.get_container(r.container_id).state == "terminated"
        ]
        for sid in alive:
            backend.terminate(sid)
        dispatcher.store.close()
        daemon.store.close()
        return {
            "dispatches": n,
            "lost": len(lost),
            "failed": failed,
            "cycles": cycles[0],
            "seconds": round(elapsed, 2),
        }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    out = probe(n, interval)
    print(
        f"race probe: {out['lost']} of {out['dispatches']} dispatches lost "
        f"(row ended while its process runs); {len(out['failed'])} failed {out['failed'] or ''}; "
        f"{out['cycles']} reconcile cycles every {interval:g} s during {out['seconds']} s of dispatching"
    )


if __name__ == "__main__":
    main()
