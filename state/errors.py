"""The error catalogue: every code a user can see, with help text and recovery commands.

One place for each fact: front ends print `ParheliaError`s and look the code up here;
`parhelia help E200` renders the entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorEntry:
    code: str
    title: str
    explanation: str
    recovery: tuple[str, ...]
    topic: str = "errors"


def _e(
    code: str, title: str, explanation: str, *recovery: str, topic: str = "errors"
) -> ErrorEntry:
    assert len(recovery) >= 2, code
    return ErrorEntry(code, title, explanation, tuple(recovery), topic)


# Codes SPEC-20 lists for features Parhelia does not have yet: nothing raises them, and
# `parhelia help` says so instead of describing the feature.
RESERVED: dict[str, str] = {
    "E203": "workers",
}


CATALOGUE: dict[str, ErrorEntry] = {
    e.code: e
    for e in [
        # E1xx: validation
        _e(
            "E100",
            "Validation failed",
            "The request did not pass validation. The message names the field.",
            "parhelia task create --help",
            "parhelia help tasks",
        ),
        _e(
            "E101",
            "Invalid argument",
            "An argument has a value Parhelia cannot use; the message lists the valid values.",
            "parhelia task create --help",
            "parhelia help tasks",
            "parhelia config show",
        ),
        _e(
            "E102",
            "Missing required argument",
            "A required argument or setting was not given.",
            "parhelia task create --help",
            "parhelia help workflow",
        ),
        _e(
            "E103",
            "Invalid configuration",
            "A configuration file or PARHELIA_* variable could not be read; the message names the file and line.",
            "parhelia config show",
            "parhelia help config",
            topic="config",
        ),
        _e(
            "E104",
            "Unknown command",
            "The command does not exist. The closest real command is suggested.",
            "parhelia --help",
            "parhelia help workflow",
        ),
        _e(
            "E105",
            "Invalid state transition",
            "A container cannot move between these states (SPEC-21 lifecycle).",
            "parhelia containers show ID",
            "parhelia help containers",
            topic="containers",
        ),
        # E2xx: not found
        _e(
            "E200",
            "Session not found",
            "No running agent session has this id (nor a container or sandbox with it). A session "
            "ends with its agent; local agents run in one only when tmux is installed.",
            "parhelia session list",
            "parhelia containers list",
            "parhelia containers logs ID",
            topic="tasks",
        ),
        _e(
            "E201",
            "Task not found",
            "No task with this id is known to the store.",
            "parhelia task list",
            "parhelia task list --json",
            topic="tasks",
        ),
        _e(
            "E202",
            "Checkpoint not found",
            "No checkpoint with this id (or unique id prefix) is in the store, or its archived "
            "files are gone from the data dir.",
            "parhelia checkpoint list",
            "parhelia checkpoint list --json",
            "parhelia checkpoint create CONTAINER",
            topic="tasks",
        ),
        _e(
            "E203",
            "Worker not found",
            "No worker with this id is known.",
            "parhelia containers list",
            "parhelia reconciler status",
        ),
        _e(
            "E204",
            "Container not found",
            "No container with this id (or sandbox id) is in the store.",
            "parhelia containers list",
            "parhelia containers orphans",
            "parhelia reconciler run",
            topic="containers",
        ),
        _e(
            "E205",
            "Sandbox not found",
            "The backend no longer has this sandbox; it may have ended on its own.",
            "parhelia reconciler run",
            "parhelia containers show ID",
            topic="containers",
        ),
        # E3xx: budget
        _e(
            "E300",
            "Budget exceeded",
            "The estimate for this work exceeds what is left of the budget ceiling.",
            "parhelia budget show",
            "parhelia budget set AMOUNT",
            "parhelia task create PROMPT --timeout 30",
            topic="budget",
        ),
        _e(
            "E301",
            "Budget warning",
            "Spending is near the budget ceiling.",
            "parhelia budget show",
            "parhelia containers list",
            "parhelia budget set AMOUNT",
            topic="budget",
        ),
        # E4xx: auth
        _e(
            "E400",
            "Unauthorized",
            "Modal credentials are missing or invalid.",
            "modal token new",
            "parhelia config show",
            "parhelia task create PROMPT --backend local",
            topic="modal",
        ),
        _e(
            "E401",
            "Forbidden",
            "The sandbox is not this control plane's: it has no parhelia tags, a container tag that "
            "is not a Parhelia id, or another control plane's id (another store, for example a "
            "teammate's on the same Modal workspace). Parhelia never touches it.",
            "parhelia containers orphans",
            "parhelia containers list",
            topic="containers",
        ),
        _e(
            "E402",
            "Token expired",
            "The Modal token has expired.",
            "modal token new",
            "parhelia config show",
            topic="modal",
        ),
        # E5xx: infrastructure
        _e(
            "E500",
            "Resource unavailable",
            "The backend could not provide the requested resources now.",
            "parhelia task create PROMPT --gpu none",
            "parhelia reconciler status",
            "parhelia config show",
        ),
        _e(
            "E501",
            "Timeout",
            "The backend did not answer in time. Nothing in the store was changed.",
            "parhelia reconciler run",
            "parhelia reconciler status",
        ),
        _e(
            "E502",
            "Backend unreachable",
            "The backend could not be reached. The dashboard shows the last known state.",
            "parhelia reconciler status",
            "parhelia config show",
            "parhelia task create PROMPT --backend local",
        ),
        _e(
            "E503",
            "Modal error",
            "Modal returned an error.",
            "parhelia reconciler status",
            "modal token new",
            "parhelia config show",
            topic="modal",
        ),
        _e(
            "E504",
            "Agent command not found",
            "The agent binary in [agent] command is not installed or not on PATH.",
            "parhelia config show",
            "PARHELIA_AGENT_COMMAND='claude -p -- {prompt}' parhelia task create PROMPT",
            topic="config",
        ),
        # E6xx: operations
        _e(
            "E600",
            "Checkpoint failed",
            "The workspace snapshot could not be taken, stored or restored (the sandbox's files "
            "are gone, the disk is full, the backend refused). Nothing in the store was changed; "
            "a terminate the checkpoint came before still happened.",
            "parhelia containers show ID",
            "parhelia events list --type checkpoint.failed",
            "parhelia checkpoint list",
        ),
        _e(
            "E601",
            "Attach failed",
            "A terminal could not be attached to the agent's session or the container: attaching "
            "needs an interactive terminal, and the session must still be running (on Modal its "
            "sandbox must answer too: `modal shell` opens the terminal there).",
            "parhelia session list",
            "parhelia containers show ID",
            "parhelia containers logs ID",
            topic="containers",
        ),
        _e(
            "E602",
            "Dispatch failed",
            "The sandbox could not be created. No sandbox was left running.",
            "parhelia task retry ID",
            "parhelia reconciler run",
            "parhelia config show",
            topic="tasks",
        ),
        _e(
            "E603",
            "Dispatch rejected",
            "A policy refused the dispatch (for example the budget policy 'block').",
            "parhelia budget show",
            "parhelia config show",
            topic="budget",
        ),
        _e(
            "E604",
            "Terminate failed",
            "The backend refused or failed to stop the sandbox. The store still lists it.",
            "parhelia containers terminate ID",
            "parhelia reconciler run",
            topic="containers",
        ),
        _e(
            "E605",
            "Reconciler busy",
            "Another process holds the reconciler lease and runs the loops; this one did nothing.",
            "parhelia reconciler status",
            "parhelia containers list",
            topic="containers",
        ),
        # E7xx: store
        _e(
            "E700",
            "Database schema too new",
            "The database was written by a newer Parhelia. It was left untouched.",
            "pip install -U parhelia",
            "parhelia --db sqlite:///other.db db status",
            topic="database",
        ),
        _e(
            "E701",
            "Database unavailable",
            "The database could not be opened: the file is not an SQLite database, the path is a "
            "directory or cannot be written, the URL is not a database URL, its driver is not "
            "installed, or the server does not answer. The message says which.",
            "parhelia db status",
            "parhelia config show",
            topic="database",
        ),
        _e(
            "E703",
            "Database damaged",
            "The database file is damaged (SQLite reports a malformed disk image): some of its pages "
            "are garbled. Parhelia did not write to it. Recover what SQLite can into a new file, or "
            "start a new database and let the reconciler adopt the running sandboxes by their tags.",
            "sqlite3 parhelia.db .recover | sqlite3 recovered.db",
            "parhelia --db sqlite:///recovered.db db migrate",
            "parhelia --db sqlite:///new.db reconciler run",
            topic="database",
        ),
        _e(
            "E702",
            "Migration failed",
            "Upgrading the database schema failed; the database was rolled back.",
            "parhelia db status",
            "parhelia db migrate",
            topic="database",
        ),
        _e(
            "E704",
            "Copy target not empty",
            "`parhelia db copy` only copies into a database with no Parhelia rows, so that it never "
            "mixes two control planes or overwrites one. Nothing was written.",
            "parhelia --db URL db status",
            "parhelia db copy --to URL_OF_AN_EMPTY_DATABASE",
            topic="database",
        ),
        # E9xx: internal
        _e(
            "E900",
            "Internal error",
            "Parhelia hit a bug. The details were logged as an event.",
            "parhelia events list --level error",
            "parhelia reconciler status",
        ),
        _e(
            "E901",
            "Not implemented",
            "This feature does not exist yet.",
            "parhelia --help",
            "parhelia help workflow",
        ),
    ]
}


@dataclass
class ParheliaError(Exception):
    """An error a user can act on: a catalogue code, what happened, and what to run next."""

    code: str
    message: str
    suggestions: list[str] = field(default_factory=list)
    attempted: str | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")
        entry = CATALOGUE.get(self.code)
        if entry is None:
            raise ValueError(f"unknown error code {self.code}")
        if not self.suggestions:
            self.suggestions = list(entry.recovery)

    @property
    def entry(self) -> ErrorEntry:
        return CATALOGUE[self.code]

    @property
    def title(self) -> str:
        return self.entry.title

    def to_dict(self) -> dict:
        out = {
            "code": self.code,
            "title": self.title,
            "message": self.message,
            "suggestions": self.suggestions,
        }
        if self.attempted:
            out["attempted"] = self.attempted
        return out
