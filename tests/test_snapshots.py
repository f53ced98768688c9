"""SVG snapshots of the real dashboard over the fixed world (tests/dashboard_world.py).

Deterministic by construction (tests/snapshot_fixtures.py): the world's clock is fixed, times print
in UTC, the store is opened at a relative path so the status bar always reads
`sqlite:///parhelia.db`, loops, watcher, refresh timer and animations are off, and every Input's
cursor is steady (no blink) before the shot. Waits are on state, never on time.

Update the baselines with `pytest tests/test_snapshots.py --snapshot-update`, then look at them
(tests/__snapshots__/test_snapshots/*.svg) before committing; `make screenshots` draws the same
scenes for the README.
"""

from __future__ import annotations

from tests.snapshot_fixtures import SNAPSHOT_SIZE, scene


def test_main_screen(snap_compare, dashboard_app):
    """Containers (youngest first), events, budget and contextual help for the first row."""
    assert snap_compare(dashboard_app(), terminal_size=SNAPSHOT_SIZE, run_before=scene("main"))


def test_container_detail(snap_compare, dashboard_app):
    """c-0000a001 selected, enter: its detail (loaded in a worker) with heartbeat sparklines."""
    assert snap_compare(dashboard_app(), terminal_size=SNAPSHOT_SIZE, run_before=scene("detail"))


def test_new_task_prompt(snap_compare, dashboard_app):
    """n: the guided prompt with its smart defaults and the cost estimate, cursor steady."""
    assert snap_compare(dashboard_app(), terminal_size=SNAPSHOT_SIZE, run_before=scene("new-task"))


def test_terminate_confirmation(snap_compare, dashboard_app):
    """t on the running c-0000a001: the confirmation, Cancel focused."""
    assert snap_compare(dashboard_app(), terminal_size=SNAPSHOT_SIZE, run_before=scene("terminate"))


def test_help_screen(snap_compare, dashboard_app):
    """?: every key (from the one BINDINGS list) and the help topics."""
    assert snap_compare(dashboard_app(), terminal_size=SNAPSHOT_SIZE, run_before=scene("help"))


def test_main_screen_at_80x24(snap_compare, dashboard_app):
    """80×24: the sidebar collapses (budget in the header), the header is short, and the
    containers pane keeps ID, state, health, age and cost, saying how many columns it hid."""
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=scene("main"))


def test_main_screen_at_120x40(snap_compare, dashboard_app):
    assert snap_compare(dashboard_app(), terminal_size=(120, 40), run_before=scene("main"))


def test_new_task_prompt_at_80x24(snap_compare, dashboard_app):
    """The form scrolls: its estimate, warnings and buttons are reachable at 80×24."""
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=scene("new-task"))


def test_help_screen_at_80x24(snap_compare, dashboard_app):
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=scene("help"))
