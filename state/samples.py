"""A live dashboard's heartbeat samples, handed beside its views.

A heartbeat cycle moves every running container's heartbeat columns and nothing else of its row.
A dashboard that refreshes (`state/live_views.py`) keeps such a row's view and hands its newest
sample beside the views (`DashboardView.samples`: id -> the row's narrow row, the values the
driver returned), so a cycle over 10,000 containers builds and frees no views: the refresh and its
young collection went from 48 to 28 ms p95 (bench/tui.py). Health stays in the view: a heartbeat
that moves a row's shown health gives it a new view.

What the containers pane shows of a heartbeat (HB, CPU, MEM) is read through `beat`, the one
place that knows where a sample keeps it. A view's own sample fields are those of its last build:
current in every full read (`tui --once`, the CLI, MCP), which hands no samples.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from parhelia.state.view_reads import aware_utc
from parhelia.state.views import ContainerView

Samples = Mapping[str, tuple]

# Where a narrow row keeps what `beat` reads (`live_views` checks them against its columns).
STAMP, CPU, MEMORY = 4, 6, 7


def beat(c: ContainerView, sample: tuple | None) -> tuple[datetime | None, Any, Any]:
    """The container's last heartbeat, CPU percent and memory used (MiB): from its sample when
    the view came with one, else from the view."""
    if sample is None:
        return c.last_heartbeat_at, c.cpu_percent, c.memory_used_mib
    return heard_at(sample[STAMP]), sample[CPU], sample[MEMORY]


@functools.lru_cache(maxsize=1024)
def heard_at(value: Any) -> datetime | None:
    """A narrow row's heartbeat time (its text, as the driver returned it) as an aware datetime,
    converted once for the many rows a cycle stamps alike (the poller stamps a cycle's rows with
    one time)."""
    return None if value is None else aware_utc(value)


def moved(before: Samples, now: Samples) -> set[str]:
    """The ids whose sample is another row than `before`'s (a kept row keeps its very tuple)."""
    get = before.get
    return {k for k, s in now.items() if get(k) is not s}
