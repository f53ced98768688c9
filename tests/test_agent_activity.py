"""What an agent is doing, from its pane's text (state/agent_activity.py): Claude Code's screens
as a user sees them, other agents' questions, and the age of the last output."""

from __future__ import annotations

import pytest

from parhelia.state.agent_activity import (
    Activity,
    AgentState,
    activity_cell,
    attention_items,
    attention_reason,
    classify,
)

PERMISSION = """
● I'll run the test suite to check the fix.

╭──────────────────────────────────────────────────────────────────────╮
│ Bash command                                                         │
│                                                                      │
│   pytest -q                                                          │
│   Run the test suite                                                 │
│                                                                      │
│ Do you want to proceed?                                              │
│ ❯ 1. Yes                                                             │
│   2. Yes, and don't ask again for pytest commands in /work/project   │
│   3. No, and tell Claude what to do differently (esc)                │
╰──────────────────────────────────────────────────────────────────────╯
"""

EDIT = """
╭──────────────────────────────────────────────────────────────────────╮
│ Edit file                                                            │
│ ╭──────────────────────────────────────────────────────────────────╮ │
│ │ app/main.py                                                      │ │
│ │   12 -    return 1                                               │ │
│ │   12 +    return 2                                               │ │
│ ╰──────────────────────────────────────────────────────────────────╯ │
│ Do you want to make this edit to main.py?                            │
│ ❯ 1. Yes                                                             │
│   2. Yes, allow all edits during this session (shift+tab)            │
│   3. No, and tell Claude what to do differently (esc)                │
╰──────────────────────────────────────────────────────────────────────╯
"""

TRUST = """
 Do you trust the files in this folder?

 /work/project

 ❯ 1. Yes, proceed
   2. No, exit
"""

WORKING = """
● I'll look at the failing test first.

● Read(tests/test_main.py)
  ⎿  Read 120 lines

✻ Pondering… (12s · ↑ 1.2k tokens · esc to interrupt)

╭──────────────────────────────────────────────────────────────────────╮
│ >                                                                    │
╰──────────────────────────────────────────────────────────────────────╯
  ? for shortcuts
"""

IDLE = """
● Done: the fix is in app/main.py and all 42 tests pass.

╭──────────────────────────────────────────────────────────────────────╮
│ >                                                                    │
╰──────────────────────────────────────────────────────────────────────╯
  ? for shortcuts
"""


@pytest.mark.parametrize(
    ("screen", "line"),
    [
        (PERMISSION, "3. No, and tell Claude what to do differently (esc)"),
        (EDIT, "3. No, and tell Claude what to do differently (esc)"),
        (TRUST, "❯ 1. Yes, proceed"),
        ("Overwrite config.yaml? [y/N] ", "Overwrite config.yaml? [y/N]"),
        ("Apply these changes? (Y)es/(N)o/(D)on't ask again [Yes]: ", "(Y)es/(N)o"),
        ("Press Enter to continue...", "Press Enter to continue..."),
    ],
)
def test_prompts_for_permission_or_input_are_waiting(screen, line):
    # a waiting agent prints nothing, however long it waits; with output just now it still waits
    for since in (120.0, 1.0):
        activity = classify(screen, since)
        assert activity.kind == "waiting" and activity.needs_attention
        assert line.split("(")[0].strip(" ❯") in activity.detail


def test_claude_working_shows_esc_to_interrupt():
    activity = classify(WORKING, 1.0)
    assert activity.kind == "working" and "esc to interrupt" in activity.detail
    # its spinner line decides even when tmux's output clock (whole seconds) lags
    assert classify(WORKING, 30.0).kind == "working"


def test_idle_at_its_input_box_once_output_stops():
    assert classify(IDLE, 90.0) == Activity("idle", "no output for 1m 30s")
    assert classify(IDLE, 2.0).kind == "working"  # it was printing a moment ago
    assert classify("", None) == Activity("idle", "no output yet")


def test_a_question_scrolled_past_by_new_output_is_history():
    screen = "Continue? (y/n) y\nbuilding 1/3\nbuilding 2/3\nbuilding 3/3\nrunning tests\n"
    assert classify(screen, 1.0).kind == "working"
    assert classify(screen, 600.0).kind == "waiting"  # nothing since: it may be asking again


def test_a_dead_pane_is_exited():
    assert classify(PERMISSION, 1.0, dead=True).kind == "exited"


def test_attention_reason_names_the_attach_command():
    waiting = classify(PERMISSION, 60.0)
    reason = attention_reason(waiting, "ph-t-1-20261130T030405")
    assert reason == "waiting for input — parhelia session attach ph-t-1-20261130T030405"
    assert attention_reason(classify(IDLE, 60.0), "ph-x") is None


def test_dashboard_pieces_column_and_attention_items():
    waiting = AgentState("c-2", "ph-t-2-x", classify(PERMISSION, 60.0))
    working = AgentState("c-1", "ph-t-1-x", classify(WORKING, 1.0))
    assert [activity_cell(a) for a in (waiting, working, None)] == ["waiting!", "working", "-"]
    [item] = attention_items([working, waiting])
    assert str(item) == "c-2: agent waiting for input: parhelia session attach ph-t-2-x"


def test_a_fresh_hook_wins_over_the_pane_a_stale_one_or_an_ended_agent_does_not():
    from parhelia.state.agent_activity import (
        EXITED,
        HOOK_EVENTS,
        HOOK_FRESH_SECONDS,
        IDLE,
        WAITING,
        WORKING,
        Activity,
        merged,
    )

    pane, hook = Activity(WORKING, "esc to interrupt"), Activity(WAITING, "Notification hook")
    assert merged(pane, hook, 1.0) is hook
    assert merged(pane, hook, HOOK_FRESH_SECONDS + 1) is pane
    assert merged(pane, None, None) is pane
    dead = Activity(EXITED, "the agent's process has ended")
    assert merged(dead, hook, 0.0) is dead
    assert (HOOK_EVENTS["Notification"], HOOK_EVENTS["Stop"]) == (WAITING, IDLE)
    assert HOOK_EVENTS["UserPromptSubmit"] == HOOK_EVENTS["PreToolUse"] == WORKING
