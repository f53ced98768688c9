"""What an agent is doing, judged from its terminal: working, idle, waiting for input, or exited.

Pure: the caller captures the session's pane (`tmux capture-pane -p`) and knows when the pane last
printed; nothing here runs tmux. The signals are the ones claude-squad and claude-tmux rely on:
Claude Code asks for permission with a numbered menu ("Do you want to proceed?", "No, and tell
Claude what to do differently"), shows "esc to interrupt" while it works, and sits at its input box
when idle. Other agents' yes/no questions count as waiting too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from parhelia.state.timeutil import compact_duration
from parhelia.state.views import Attention

WORKING = "working"
IDLE = "idle"
WAITING = "waiting"
EXITED = "exited"
UNKNOWN = "unknown"

RECENT_OUTPUT_SECONDS = 5.0  # output this recent means the agent is busy (tmux counts seconds)
TAIL_LINES = 12  # prompts sit at the bottom of the screen (Claude's box is ~10 lines)
FRESH_PROMPT_LINES = 3  # a question this near the bottom is current even while output arrives

_WAITING = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"do you want to (proceed|make this edit|create|allow|run|overwrite)",
        r"no, and tell claude what to do differently",
        r"do you trust the files in this folder",
        r"is this a project you created or one you trust",
        r"\bwaiting for (your )?(input|approval|permission)\b",
        r"\((y|yes)/(n|no)\)|\[(y/n|y/N|Y/n)\]",
        r"\(Y\)es/\(N\)o",
        r"press enter to continue",
        r"^\s*[❯>]\s*1\.\s*yes\b",
    )
]
_MENU = re.compile(r"^\W*[❯>]?\s*\d\.\s+(yes|no)\b", re.IGNORECASE)
_WORKING = [
    re.compile(p, re.IGNORECASE) for p in (r"\besc to interrupt\b", r"\bctrl\+c to interrupt\b")
]


@dataclass(frozen=True)
class Activity:
    kind: str  # working | idle | waiting | exited | unknown
    detail: str = ""  # the line that decided it, or why

    @property
    def needs_attention(self) -> bool:
        return self.kind == WAITING


def classify(screen: str, seconds_since_output: float | None, dead: bool = False) -> Activity:
    """The agent's activity from its pane's visible text and the age of its last output.

    The screen is read from the bottom up and the first line that is a prompt or a busy marker
    decides (Claude Code draws both at the bottom). A question further up that output has since
    scrolled past is history: with output in the last few seconds it counts as working."""
    if dead:
        return Activity(EXITED, "the agent's process has ended")
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()][-TAIL_LINES:]
    recent = seconds_since_output is not None and seconds_since_output <= RECENT_OUTPUT_SECONDS
    for depth, line in enumerate(reversed(lines)):
        if any(p.search(line) for p in _WORKING):
            return Activity(WORKING, _clip(line))
        if any(p.search(line) for p in _WAITING):
            if recent and depth >= FRESH_PROMPT_LINES and not _is_menu(lines[-depth - 1 :]):
                break
            return Activity(WAITING, _clip(line))
    if recent:
        return Activity(WORKING, f"output {seconds_since_output:.0f}s ago")
    if seconds_since_output is None:
        return Activity(IDLE, "no output yet") if not lines else Activity(UNKNOWN, "")
    return Activity(IDLE, f"no output for {compact_duration(seconds_since_output)}")


def _is_menu(lines: list[str]) -> bool:
    """Claude Code's numbered answer menu under a question (it is still being asked)."""
    return any(_MENU.search(line) for line in lines)


# Claude Code's hooks, where configured (`parhelia session hooks-config`), say what the agent
# does without reading its screen: each hook event names an activity.
HOOK_EVENTS = {
    "Notification": WAITING,  # a permission prompt, or its input idle for 60 s
    "Stop": IDLE,  # it finished answering
    "SessionStart": IDLE,
    "UserPromptSubmit": WORKING,
    "PreToolUse": WORKING,
    "PostToolUse": WORKING,
    "SubagentStop": WORKING,  # a subagent ended; the main agent goes on
}
HOOK_FRESH_SECONDS = 300.0  # a hook's word this recent wins over the pane's heuristic


def activity_of(event: str) -> str:
    """The activity a hook event names; E101 for an event Parhelia does not read."""
    from parhelia.state.errors import ParheliaError

    kind = HOOK_EVENTS.get(event)
    if kind is None:
        raise ParheliaError(
            "E101",
            f"{event!r} is not a Claude Code hook event Parhelia reads; "
            f"known: {', '.join(HOOK_EVENTS)}",
            ["parhelia session hooks-config", "parhelia help sessions"],
        )
    return kind


def merged(pane: Activity, hook: Activity | None, hook_age: float | None) -> Activity:
    """What the agent does: the hook's word while it is fresh, else the pane's reading. An
    ended agent (dead pane) is exited whatever a hook said before it ended."""
    if pane.kind == EXITED or hook is None or hook_age is None or hook_age > HOOK_FRESH_SECONDS:
        return pane
    return hook


@dataclass(frozen=True)
class AgentState:
    """One container's agent session and what it is doing (from `SessionService.activities`)."""

    container_id: str
    session_id: str
    activity: Activity


def attention_reason(activity: Activity, session_id: str) -> str | None:
    """The dashboard's attention line for an agent that waits for its user, with the command."""
    if not activity.needs_attention:
        return None
    return f"waiting for input — parhelia session attach {session_id}"


def attention_items(agents: Iterable[AgentState]) -> list[Attention]:
    """An attention reason per agent waiting for input, in the form `DashboardView.attention()`
    returns them, so every front end can append them to that list."""
    return [
        Attention(
            f"{a.container_id}: agent waiting for input", f"parhelia session attach {a.session_id}"
        )
        for a in sorted(agents, key=lambda a: a.container_id)
        if a.activity.needs_attention
    ]


def activity_cell(agent: AgentState | None) -> str:
    """The containers pane's AGENT column: what the agent does, or `-` without a session."""
    if agent is None:
        return "-"
    return {WAITING: "waiting!", UNKNOWN: "?"}.get(agent.activity.kind, agent.activity.kind)


def _clip(line: str, width: int = 80) -> str:
    line = line.strip(" │|╭╮╰╯─")
    return line if len(line) <= width else line[: width - 1] + "…"
