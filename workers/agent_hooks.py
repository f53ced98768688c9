"""Claude Code's hooks as a source of what an agent is doing (issue 19).

Claude Code runs a command on its hook events; `parhelia session hook EVENT` is that command. It
runs inside the agent's session, where Parhelia set `PARHELIA_CONTAINER_ID` (and
`PARHELIA_SESSION_ID`), and records the activity the event names (`HOOK_EVENTS`) as an
`agent.activity` event of that container. `SessionService.list` reads the latest of these and,
while it is fresher than `HOOK_FRESH_SECONDS`, prefers it to the pane's heuristic.

Why events, and why so few: an event is how every front end (and the database watcher that wakes
the dashboard) hears of a change, so one is written when the activity changes, and otherwise at
most every half freshness window to keep the word fresh: a tool call per second does not become
an event per second.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta

from parhelia.state.agent_activity import HOOK_FRESH_SECONDS, WAITING, Activity, activity_of
from parhelia.state.enums import EventLevel, EventSource
from parhelia.state.event_types import EventType
from parhelia.state.models import Event
from parhelia.state.safe_text import escape_controls
from parhelia.state.store import Store

SESSION_ENV = "PARHELIA_SESSION_ID"
REFRESH_SECONDS = HOOK_FRESH_SECONDS / 2  # an unchanged activity is written again after this
READ_LIMIT = 1000  # the newest activity events read per listing (they are few: see above)


def record_hook(
    store: Store,
    container_id: str,
    event: str,
    *,
    session_id: str | None = None,
    message: str | None = None,
    now: datetime,
) -> Event | None:
    """Record what the hook `event` says the container's agent does; None when the same was
    said less than REFRESH_SECONDS ago (nothing to write)."""
    kind = activity_of(event)
    c = store.get_container(container_id)  # E204 for a container this store does not know
    [last] = store.events(container_id=c.id, types=[EventType.AGENT_ACTIVITY], limit=1) or [None]
    if (
        last is not None
        and last.new_value == kind
        and (now - last.ts).total_seconds() < REFRESH_SECONDS
    ):
        return None
    said = f": {escape_controls(' '.join(message.split()))[:120]}" if message else ""
    text = (
        f"{c.id}: agent waiting for input{said}"
        if kind == WAITING
        else f"{c.id}: agent {kind} (Claude Code {event} hook)"
    )
    return store.add_event(
        EventType.AGENT_ACTIVITY,
        text,
        level=EventLevel.INFO if kind == WAITING else EventLevel.DEBUG,
        source=EventSource.SYSTEM,
        actor="claude-code-hook",
        container_id=c.id,
        task_id=c.task_id,
        old_value=last.new_value if last is not None else None,
        new_value=kind,
        details={"hook": event, "session": session_id},
        ts=now,
    )


def latest_activities(
    store: Store, container_ids: Iterable[str], now: datetime
) -> dict[str, tuple[Activity, float]]:
    """The newest hook-reported activity of each container within the freshness window, with
    its age in seconds: one query for the whole listing."""
    wanted = set(container_ids)
    if not wanted:
        return {}
    since = now - timedelta(seconds=HOOK_FRESH_SECONDS)
    out: dict[str, tuple[Activity, float]] = {}
    for e in store.events(types=[EventType.AGENT_ACTIVITY], since=since, limit=READ_LIMIT):
        if e.container_id in wanted and e.container_id not in out and e.new_value:
            hook = (e.details or {}).get("hook", "hook")
            detail = f"Claude Code {hook} hook: {e.message}"
            age = max(0.0, (now - e.ts).total_seconds())
            out[e.container_id] = (Activity(e.new_value, detail), age)
    return out


def hook_command(event: str) -> str:
    """The command Claude Code runs for `event`: this installation's `parhelia` (or this Python
    running it as a module), so the hook works from the agent's PATH too."""
    exe = shutil.which("parhelia")
    base = shlex.quote(exe) if exe else f"{shlex.quote(sys.executable)} -m parhelia.app"
    return f"{base} session hook {event}"


CONFIGURED = ("Notification", "Stop", "UserPromptSubmit", "PreToolUse")


def hooks_config(events: Iterable[str] = CONFIGURED) -> dict:
    """The `hooks` entry of a Claude Code settings file (.claude/settings.json) that reports
    each event to Parhelia (tool events match every tool)."""
    hooks: dict[str, list] = {}
    for event in events:
        entry: dict = {"hooks": [{"type": "command", "command": hook_command(event)}]}
        if event in ("PreToolUse", "PostToolUse"):
            entry = {"matcher": "*", **entry}
        hooks[event] = [entry]
    return {"hooks": hooks}
