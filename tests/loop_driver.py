"""The loops on the test's own thread, on an injected clock and wait: how the scheduling tests drive
`workers.loops.LoopRunner` without sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable

from parhelia.state.settings import Settings
from parhelia.workers.loops import LoopRunner


def run_loops(
    reconciler,
    poller,
    guard,
    settings: Settings,
    stop: threading.Event,
    *,
    monotonic: Callable[[], float],
    wait: Callable[[float], object],
) -> None:
    """Run until `stop` is set, on this thread."""
    LoopRunner(reconciler, poller, guard, settings, monotonic=monotonic, wait=wait).run(stop)
