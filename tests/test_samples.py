"""A live dashboard's heartbeat samples beside the views it kept (`state/samples.py`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from parhelia.state.samples import CPU, MEMORY, STAMP, beat, moved
from parhelia.state.views import ContainerView
from tests.test_screens import container

REPO = Path(__file__).resolve().parents[1]
# What a heartbeat writes without stamping `updated_at`: a kept view's own are of its last build.
SAMPLE_FIELDS = (
    "last_heartbeat_at",
    "cpu_percent",
    "memory_used_mib",
    "memory_percent",
    "agent_alive",
    "missed_heartbeats",
)
# The detail pane renders a container read whole (`ControlPlane.container_detail`), not a view
# of the live dashboard's.
READ_WHOLE = {"detail.py"}


def view() -> ContainerView:
    return container(
        last_heartbeat_at=datetime(2026, 1, 1, tzinfo=UTC), cpu_percent=5.0, memory_used_mib=64.0
    )


def test_a_sample_beside_a_view_is_what_is_shown_and_a_full_reads_view_stands_alone():
    row = [None] * 10
    row[STAMP], row[CPU], row[MEMORY] = "2026-01-01 00:00:09.500000", 77.0, 300.0
    seen, cpu, used = beat(view(), tuple(row))
    assert (seen, cpu, used) == (datetime(2026, 1, 1, 0, 0, 9, 500000, tzinfo=UTC), 77.0, 300.0)
    row[STAMP] = "2026-01-01 00:00:09.5+00"  # PostgreSQL's text in a UTC session
    assert beat(view(), tuple(row))[0] == datetime(2026, 1, 1, 0, 0, 9, 500000, tzinfo=UTC)
    row[STAMP] = None  # no heartbeat yet
    assert beat(view(), tuple(row))[0] is None
    assert beat(view(), None) == (datetime(2026, 1, 1, tzinfo=UTC), 5.0, 64.0)


def test_moved_samples_are_the_rows_whose_sample_is_another_tuple():
    a, b, c = ("c-1",), tuple(["c-2"]), tuple(["c-2"])  # b == c, another tuple
    assert moved({"c-1": a, "c-2": b}, {"c-1": a, "c-2": c, "c-3": a}) == {"c-2", "c-3"}


def test_the_live_panes_read_what_a_heartbeat_moves_through_the_samples_only():
    """A live dashboard keeps the view of a row whose heartbeat alone moved, so the view's own
    heartbeat fields are those of its last build and the sample beside it is the newest. Every
    module that renders the live view reads those fields through `samples.beat` (or the view
    made whole, `live_views.with_sample`), never from the view: this fails on the line that
    does."""
    pattern = re.compile(r"\.(" + "|".join(SAMPLE_FIELDS) + r")\b")
    modules = [p for p in (REPO / "widgets").glob("*.py") if p.name not in READ_WHOLE]
    modules += [REPO / "app" / name for name in ("dashboard.py", "main_screen.py")]
    offenders = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in modules
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
    assert (REPO / "widgets" / "formatting.py").read_text().count("beat(c, sample)") >= 4
