"""Benchmark retention pruning of events and reconciler runs. Run: `python bench/retention.py`.

Loads 1,000,000 events (a month at ~23 a minute; an argument changes the count) and a twentieth
as many reconciler runs, a tenth of each past its retention, then times `Store.prune_history`
passes: a bounded pass (PRUNE_BATCH of each), the passes it takes to drain the backlog, and the
pass with nothing due (what every heartbeat cycle pays once caught up). Prints figures only.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)
from sqlalchemy import insert

from parhelia.state.bulk import PRUNE_BATCH
from parhelia.state.models import Event, ReconcilerRun
from parhelia.state.store import Store

N_EVENTS = (
    int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
)  # `python bench/retention.py 200000`
N_RUNS = N_EVENTS // 20
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def load(store: Store) -> tuple[datetime, datetime]:
    span = timedelta(days=30)
    ev_step, run_step = span / N_EVENTS, span / N_RUNS
    with store.write() as s:
        for lo in range(0, N_EVENTS, 50_000):
            rows = [
                {
                    "ts": NOW - span + ev_step * k,
                    "type": "x",
                    "message": "m",
                    "level": "info",
                    "source": "reconciler",
                    "details": {},
                }
                for k in range(lo, min(lo + 50_000, N_EVENTS))
            ]
            s.execute(insert(Event), rows)
        s.execute(
            insert(ReconcilerRun),
            [{"started_at": NOW - span + run_step * k, "holder": "h"} for k in range(N_RUNS)],
        )
    return NOW - span + ev_step * (N_EVENTS // 10), NOW - span + run_step * (N_RUNS // 10)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000.0


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{Path(d) / 'p.db'}")
        t0 = time.perf_counter()
        ev_cut, run_cut = load(store)
        print(f"loaded {N_EVENTS:,} events, {N_RUNS:,} runs in {time.perf_counter() - t0:.1f} s")
        (ne, nr), ms = timed(lambda: store.prune_history(ev_cut, run_cut))
        print(
            f"first bounded pass: {ne:,} events + {nr:,} runs in {ms:.1f} ms "
            f"(batch {PRUNE_BATCH:,}); {ms / max(1, ne + nr) * 1000:.1f} us per row"
        )
        passes, total_ms, total, longest = 1, ms, ne + nr, ms
        while True:
            (ne, nr), ms = timed(lambda: store.prune_history(ev_cut, run_cut))
            if ne + nr == 0:
                break
            passes, total_ms, total = passes + 1, total_ms + ms, total + ne + nr
            longest = max(longest, ms)
        print(
            f"backlog of {total:,} rows drained in {passes} passes, {total_ms:.0f} ms in all, "
            f"longest pass {longest:.0f} ms"
        )
        _, idle = timed(lambda: store.prune_history(ev_cut, run_cut))
        print(f"pass with nothing due (every heartbeat cycle once caught up): {idle:.2f} ms")
        store.close()


if __name__ == "__main__":
    sys.exit(main())
