"""The dashboard's collection schedule (`app/gc_schedule.py`): the young collection is spaced by
what it costs, so at 10,000 heartbeating containers a key press meets it a few times less often,
and a collection due while keys come waits for a quiet moment, within a bound."""

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


class Clock:
    """A clock the test moves; `last_key` is when the last key came on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.last_key = float("-inf")

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["young", "full"])
def test_a_collection_due_while_keys_come_waits_for_a_quiet_moment_within_a_bound(kind):
    clock, collected = Clock(), []
    schedule = GcSchedule(
        collect=lambda: collected.append("young"),
        collect_full=lambda: collected.append("full"),
        clock=clock,
        last_key=lambda: clock.last_key,
    )
    run = getattr(schedule, kind)
    app = TimerApp()
    quiet, bound = gc_schedule.QUIET_SECONDS, gc_schedule.DEFER_MAX_SECONDS
    try:
        schedule.start(app)
        clock.last_key = clock.now - 0.1  # a key a tenth of a second ago: not now
        run()
        assert collected == [] and app.timers[-1] == (pytest.approx(quiet - 0.1), f"gc-{kind}")
        clock.now += quiet - 0.1  # the quiet moment came: collected, next one on its schedule
        run()
        assert collected == [kind]
        assert app.timers[-1][0] >= gc_schedule.YOUNG_SECONDS
        # keys that never stop: it waits, and runs once it has waited the bound
        due = clock.now
        while clock.now - due < bound:
            clock.last_key = clock.now
            run()
            assert collected == [kind], clock.now - due
            clock.now += quiet / 2
        clock.last_key = clock.now
        run()
        assert collected == [kind, kind]
    finally:
        schedule.stop()


async def test_the_dashboards_keys_hold_its_collections(store, monkeypatch):
    """A key reaching the dashboard makes its next collection wait (`KeyPause.last_key` is what
    the schedule reads); without keys it collects when due."""
    from parhelia.app.dashboard import ParheliaApp
    from tests import dashboard_world as world

    control = world.control(store, world.seed(store))
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    collected: list[int] = []
    async with app.run_test(size=(150, 45)) as pilot:
        while app.refreshes < 1 or app._gc._app is None:  # started after the first frame
            await pilot.pause(0.05)
        monkeypatch.setattr(app._gc, "_collect", lambda: collected.append(1))
        app._gc.young()
        assert collected == [1]
        await pilot.press("down")
        app._gc.young()
        assert collected == [1]  # a key just came: it waits
        await pilot.pause(gc_schedule.QUIET_SECONDS + 0.2)  # its timer runs once quiet
        assert len(collected) >= 2


def test_a_strip_whole_is_not_cached_on_itself_and_other_results_are():
    from rich.segment import Segment
    from textual.strip import Strip

    from parhelia.widgets import strip_cycles

    strip_cycles.install()
    s = Strip([Segment("abc"), Segment("de")], 5)
    assert s.divide([5, 9]) == [s] and s._divide_cache.get((5,)) is None
    assert s.crop_extend(0, 5, None) is s and s._crop_extend_cache.get((0, 5, None)) is None
    parts = s.divide([2, 5])
    assert [p.text for p in parts] == ["ab", "cde"] and s.divide([2, 5]) is parts  # cached
    wider = s.crop_extend(1, 7, None)
    assert wider.text == "bcde  " and s.crop_extend(1, 7, None) is wider


async def test_the_dashboards_frames_leave_no_strips_for_the_collector(store):
    """The lines a frame drew are freed with it: after refreshes that move every row's
    heartbeat (every line drawn again), a collection finds no strip in a cycle (each was, with
    its caches, until the next collection)."""
    from textual.strip import Strip

    from parhelia.app.dashboard import ParheliaApp
    from tests import dashboard_world as world

    control = world.control(store, world.seed(store))
    app = ParheliaApp(control, run_loops=False, watch_db=False, refresh_seconds=0)
    async with app.run_test(size=(150, 45)) as pilot:
        while app.refreshes < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        gc.collect()
        active = [c.id for c in control.dashboard().containers if c.is_active]
        for i in range(3):
            beats = [
                {"id": k, "last_heartbeat_at": world.NOW, "last_cpu_percent": i} for k in active
            ]
            store.record_heartbeats([], beats)
            n = app.refreshes
            app.request_refresh()
            while app.refreshes <= n:
                await pilot.pause(0.02)
            await pilot.pause()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            strips = sum(isinstance(o, Strip) for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert strips == 0
