"""The dashboard's collection schedule (`app/gc_schedule.py`): the young collection is spaced by
what it costs, so at 10,000 heartbeating containers a key press meets it a few times less often."""

from __future__ import annotations

import gc

import pytest

from parhelia.app import gc_schedule
from parhelia.app.gc_schedule import GcSchedule, next_young_in


class TimerApp:
    """What the schedule asks of the app: its timers, recorded (none runs by itself)."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, str]] = []

    def set_timer(self, delay, callback, *, name=None):
        self.timers.append((delay, name))
        return _Timer()

    def set_interval(self, interval, callback, *, name=None):
        self.timers.append((interval, name))
        return _Timer()


class _Timer:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_next_young_collection_waits_as_long_as_the_last_one_cost():
    assert next_young_in(0.002) == gc_schedule.YOUNG_SECONDS  # 1,000 rows: each second
    assert next_young_in(0.04) == pytest.approx(0.04 / gc_schedule.YOUNG_SHARE)  # 10,000: 4 s
    assert next_young_in(5.0) == gc_schedule.YOUNG_MAX_SECONDS  # garbage waits no longer


def test_the_schedule_sets_its_next_young_collection_by_the_pause_it_measured():
    """A young collection that took 40 ms (an explicit clock) puts the next one 4 s later, one
    of 2 ms a second later; the full collection stays each minute."""
    pauses = iter([0.0, 0.04, 1.0, 1.002])
    collected = []
    schedule = GcSchedule(collect=lambda: collected.append(1), clock=lambda: next(pauses))
    app = TimerApp()
    try:
        schedule.start(app)
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        assert (gc_schedule.YOUNG_SECONDS, "gc-young") in app.timers
        assert (gc_schedule.FULL_SECONDS, "gc-full") in app.timers
        schedule.young()
        assert app.timers[-1] == (pytest.approx(4.0), "gc-young")
        schedule.young()
        assert app.timers[-1] == (gc_schedule.YOUNG_SECONDS, "gc-young")
        assert len(collected) == 2
    finally:
        schedule.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
