"""Benchmark orphan detection: how long after 25 untracked Parhelia sandboxes appear are they
recorded as orphans, with the default settings (poll 60 s, grace 120 s; SPEC-21: within 2 min)?

The sandboxes start behind the store's back on the fake Modal API (tests/fake_modal.py), at random
moments over five minutes, and are listed through the unmodified `modal` SDK, whose listing gives
no creation time. The loops run as `parhelia reconciler start` runs them (`workers/loops.py`) but on
a virtual clock: the runner's waits advance it (and start the sandboxes due by then) instead of
sleeping, so the figure is the schedule's, not the machine's. Run: `python bench/orphans.py`;
`--before` counts the grace from the first sighting and polls every interval, as before issue 10.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` of this checkout
os.environ.setdefault("MODAL_CONFIG_PATH", os.path.join(tempfile.mkdtemp(), "absent.modal.toml"))

from parhelia.state.settings import ModalSettings, Settings
from parhelia.state.store import Store
from parhelia.state.timeutil import utcnow
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.loops import LoopRunner
from parhelia.workers.reconciler import Reconciler

N_ORPHANS = 25
SPREAD_SECONDS = 300.0
TARGET_SECONDS = 120.0
APP = "parhelia-bench"


class NoPasses:
    """Heartbeat and budget passes do not bear on detection; they still take their turns."""

    def run_once(self):
        return None

    def check(self):
        return []


def main(before: bool = False) -> None:
    from tests.fake_modal import FakeModalServer

    server = FakeModalServer(page_size=50).start()
    os.environ["MODAL_SERVER_URL"] = server.url
    client = server.client()
    rng = random.Random(21)
    settings = Settings()  # the defaults under test
    start = utcnow()
    virtual = {"t": 0.0}
    due = sorted(rng.uniform(0, SPREAD_SECONDS) for _ in range(N_ORPHANS))
    appeared: dict[str, float] = {}
    recorded: dict[str, float] = {}
    stop = threading.Event()

    def clock():
        return start + timedelta(seconds=virtual["t"])

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'orphans.db'}")
        backend = ModalBackend(ModalSettings(app=APP), client=client)
        rec = Reconciler(
            store,
            {"modal": backend},
            settings,
            configured_backend="modal",
            holder="bench",
            clock=clock,
        )

        def wait(seconds: float) -> None:
            virtual["t"] += seconds
            while due and due[0] <= virtual["t"]:
                at = due.pop(0)
                (sb,) = server.state.start_behind_back(APP, tagged=1)
                appeared[sb.sandbox_id] = at
            if len(recorded) == N_ORPHANS or virtual["t"] > SPREAD_SECONDS + 900:
                stop.set()

        def on_cycle(name: str, report) -> None:
            if name != "reconcile":
                return
            if before:  # forget the previous listing and the grace's end: first sighting, interval
                rec._listed_at.clear()
                rec._grace_ends_at = None
            for c in store.containers():
                if c.sandbox_id in appeared and c.sandbox_id not in recorded:
                    recorded[c.sandbox_id] = virtual["t"]

        runner = LoopRunner(
            rec, NoPasses(), NoPasses(), settings, monotonic=lambda: virtual["t"], wait=wait
        )
        runner.run(stop, on_cycle=on_cycle)
        store.engine.dispose()
    client.close()
    server.stop()

    delays = sorted(recorded[s] - appeared[s] for s in recorded)
    missing = N_ORPHANS - len(delays)
    worst = delays[-1] if delays else float("inf")
    print(
        f"orphans{' (before)' if before else ''}: {len(delays)}/{N_ORPHANS} recorded (defaults: poll "
        f"{settings.reconciler.interval_seconds:g} s, grace {settings.reconciler.orphan_grace_seconds:g} s, "
        f"listing without creation time)"
    )
    if delays:
        print(
            f"detection after appearing: min {delays[0]:.1f} s, median {delays[len(delays) // 2]:.1f} s, "
            f"max {worst:.1f} s; target {TARGET_SECONDS:g} s -> max/target {worst / TARGET_SECONDS:.2f}"
            f" ({'OK' if worst <= TARGET_SECONDS and not missing else 'OVER'})"
        )


if __name__ == "__main__":
    main(before="--before" in sys.argv[1:])
