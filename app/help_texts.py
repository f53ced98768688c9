"""Help topics and worked examples: `parhelia help TOPIC`, `parhelia examples TOPIC`.

Error codes are rendered from the catalogue (`parhelia.state.errors`), not repeated here."""

from __future__ import annotations

from parhelia.state.errors import CATALOGUE, RESERVED

TOPICS: dict[str, str] = {
    "workflow": """\
Parhelia runs Claude Code agents in sandboxes (Modal, or local processes) and always knows what
is running, whether it is healthy, and what it costs.

  parhelia tui                      the dashboard: containers, events, budget, help
  parhelia task create PROMPT       dispatch an agent (recorded before its sandbox exists)
  parhelia containers list          every container with state, health and cost
  parhelia reconciler start         keep the store in step with the cloud (or leave `tui` open)
  parhelia budget set 50            a ceiling; warnings at 50/80/100 %
  parhelia status                   everything at a glance (exit 0 ok, 1 attention, 2 error)
Every command takes --json for scripts and agents.""",
    "tasks": """\
A task is a prompt for an agent plus the resources to run it. Dispatch writes the task and a
container row first, creates the sandbox tagged with the container id, then records the sandbox id.

  parhelia task create "fix the flaky test" --cpu 2 --memory 4096 --timeout 60
  parhelia task create "train the model" --gpu A10G
  parhelia task list | show ID | cancel ID | retry ID
  parhelia task watch ID            its events until it ends (exit 0 completed, 1 failed)
The estimate (rate x timeout) is checked against the budget before anything starts (E300).
A task ends with its container: exit 0 is completed, another code failed, 124 (or running past
its timeout) timed_out, a terminate or cancel cancelled; pending and running are its live work.""",
    "containers": """\
States: created -> running -> stopped -> terminated; any -> orphaned (running, unknown to the
store); orphaned -> terminated. Health comes from missed heartbeats: 2 degraded, 5 unhealthy,
10 dead; no heartbeat for 5 minutes marks a container unhealthy.
Each database is one control plane (`parhelia config show`: control_plane_id), and every sandbox
it starts carries that id. Another plane's sandboxes (a teammate's database on the same cloud)
are counted apart and never touched; an orphan with no plane id (made before plane ids) is
stopped only by you (cleanup --orphans or terminate), never by a policy.

  parhelia containers                       (bare: the list) | show ID | events ID | health | orphans
  parhelia containers logs ID --follow      the agent's output (`l` in the dashboard); ids take
                                            unique prefixes, with or without c- (as Docker's do)
  parhelia containers watch                 a live line per container; JSON lines when piped
  parhelia containers terminate ID          (asks first; --yes to skip)
  parhelia cleanup --orphans                terminate every orphan after confirmation""",
    "events": """\
Events are changes: state, health, orphans, budget, user actions (heartbeats have their own
table). Filters everywhere: --container, --task, --type (comma-separated), --level (minimum),
--since/--until (ISO, or relative: 10m, 2h, 3d).

  parhelia events list --level warning --since 2h
  parhelia events watch --from-start --quiet    follow from any process (--json: a line each)
  parhelia events replay ID --speed 10          a task or container, with time since the first
  parhelia events export --format csv --output events.csv    oldest first, written atomically
Watches fold heartbeat-derived events (one per 10 s per container) and progress (every 5 % or
5 s); state changes, warnings, errors and completions are never held back.""",
    "budget": """\
Spend is each container's rate x runtime, summed over the budget period (day, week or month).
Warnings fire at 50, 80 and 100 % of the ceiling, once per period. Policies ([policy] budget):
warn (default), block (no new dispatch past the ceiling), stop (terminate running containers).

  parhelia budget show | set AMOUNT | estimate PROMPT --gpu A10G
  parhelia budget history --bucket day --by task   spend over time, with the budget's events""",
    "errors": """\
Every error has a code (E100-E999), a message, and commands to recover. `parhelia help E200`
shows one entry; codes by family: E1xx validation, E2xx not found, E3xx budget, E4xx auth,
E5xx infrastructure, E6xx operations, E7xx database, E9xx internal.
Reserved (nothing raises them: the feature is not in Parhelia yet): """
    + ", ".join(f"{code} ({what})" for code, what in RESERVED.items())
    + ".",
    "config": """\
Settings come from built-in defaults, ~/.config/parhelia/config.toml, ./parhelia.toml,
PARHELIA_* environment variables and flags; later wins. `[section] key` in TOML is
PARHELIA_SECTION_KEY in the environment ([agent] command is PARHELIA_AGENT_COMMAND); top-level
keys have no section (PARHELIA_BACKEND, PARHELIA_DB_URL).
Every number has a range and must be finite: a value outside it is E103 naming the setting,
where it came from and what is allowed. History ages out: [heartbeat] retention_hours, and
[retention] events_days (30) and runs_days (7).
A ./parhelia.toml may not choose what runs or where data goes ([agent] command and env,
[local] root, db_url, [modal] secrets and image) until you trust it as it is now; until then
those keys are ignored with a warning. An edited file must be trusted again.

  parhelia config show          every effective setting and where it came from
  parhelia config trust [PATH]  trust a project file (by path and content hash); untrust forgets""",
    "modal": """\
The Modal backend needs credentials: `modal token new` writes ~/.modal.toml (or set
MODAL_TOKEN_ID and MODAL_TOKEN_SECRET). With backend = auto, Parhelia uses Modal when
credentials exist and local processes otherwise. Sandboxes live in one app ([modal] app,
default `parhelia`) and carry the tags parhelia=1, the container id and the task id.""",
    "reconciler": """\
The reconciler lists each backend and brings the store in step: adopts sandboxes whose dispatch
did not finish, records unknown Parhelia sandboxes as orphans, closes rows whose sandbox is gone.
It runs every [reconciler] interval_seconds (60) in `reconciler start` or an open `tui`; only the
lease holder acts, and heartbeat and budget passes run only while it holds the lease. A one-shot
command (`tui --once`, `reconciler run`) releases the lease when it ends; a holder on this host
whose process is gone is taken over at once.

Orphans within 2 minutes: Modal's listing gives no creation time, so a new sandbox counts as
born at the start of the previous listing that did not show it (at most one interval back), and
the next cycle is scheduled for the moment its [reconciler] orphan_grace_seconds (120) ends
instead of a full interval later. With the defaults an orphan is recorded at most 120 s after
it appears (bench/orphans.py measures it).

Every backend call has a deadline ([modal] timeout_seconds, [local] timeout_seconds; 10 s): a
call past it is E501, recorded as an event, and the view goes stale. A cycle still running past
its interval also shows as stale.

  parhelia reconciler status | run | start""",
    "database": """\
The store is SQLite in the user data dir unless PARHELIA_DB_URL or --db points elsewhere
(any SQLAlchemy URL). It upgrades itself on first open; a database from a newer Parhelia is
refused and left untouched.

  parhelia db status | migrate""",
    "gpu": """\
GPU types, in Modal's spelling and any case: T4, L4, A10G, L40S, A100-40GB, A100-80GB, H100,
H200, B200; aliases A10 = A10G and A100 = A100-40GB; H100! and B200+ as Modal reads them, priced
as H100 and B200. A count with `:` (1-8, 1-4 for A10G, e.g. H100:2). `--gpu none` for CPU-only work. Region pinning costs 1.5x (broad) or 1.75x (narrow).""",
    "sessions": """\
Each local agent runs in its own tmux session, ph-<task>-<time> (Modal agents in tmux inside the
sandbox); its output still goes to its log. What the agent does (working, idle, waiting for your
input) is read from its pane and shown by `session list` and the dashboard's AGENT column; an
agent waiting for you is an attention reason, with the command that attaches.

  parhelia session list             id, container, task, state, clients, age, activity
  parhelia session attach ID        this terminal on the agent's session; Ctrl-b d detaches
  parhelia session kill ID          the agent gets a hangup and its sandbox ends (asks first)
  parhelia session hooks-config     Claude Code hooks that report the activity without the pane
Merge the printed "hooks" into .claude/settings.json: Claude Code then calls
`parhelia session hook EVENT` (Notification: waiting, Stop: idle, UserPromptSubmit and
PreToolUse: working) inside the session, which records it for its container
(PARHELIA_CONTAINER_ID); a hook's word younger than 5 minutes wins over the pane's.""",
    "checkpoints": """\
A checkpoint keeps an agent's workspace: locally a content-addressed archive under the data dir
(each distinct file stored once), on Modal a filesystem snapshot image. Taken on demand (`d` in
the dashboard, `checkpoint create`), before the budget guard or orphan policy terminates
([checkpoint] on_terminate = true), and when you detach from `session attach` or the
dashboard's `a` ([checkpoint] on_detach = true; off by default). A failure is E600 and never
stops a terminate or the session.

  parhelia checkpoint create ID --note "before the refactor"
  parhelia checkpoint list --container ID | diff A B --patch | restore CK
  parhelia checkpoint cleanup --dry-run    what retention would delete, and the bytes freed
Each container keeps its newest [checkpoint] keep (10); a new checkpoint past that deletes the
oldest (never the newest, never one a live container was restored from) and the archive files
no kept checkpoint shares. `checkpoint cleanup` (alias prune) applies it to every container.""",
    "mcp": """\
`parhelia mcp serve` is an MCP server: Claude Code (or any MCP client) sees and controls the fleet
through the same control plane as this CLI, with the same data as --json. Register it once:

  parhelia mcp install                 (print the Claude Code entry and its `claude mcp add` line)
  parhelia mcp install --write         (add it to ./.mcp.json, the project scope)
  parhelia mcp serve                   (stdio: what Claude Code starts)
  parhelia mcp serve --transport http --port 8765     (streamable HTTP, 127.0.0.1 only)
Tools: status, containers_list|show|health|orphans|terminate, events_list|recent, task_create|
list|show|cancel|retry|estimate, budget_status, reconcile_now, cleanup_orphans. Every tool that
returns records takes `fields` (dotted paths) to cut the answer. Terminate, cancel and cleanup
only preview until called with confirm=true, and record the actor as mcp:<client name>. Errors
are the CLI's JSON errors (code and recovery commands). Subscribe to parhelia://events (or
parhelia://containers/ID) to be notified of new events.""",
}

EXAMPLES: dict[str, str] = {
    "gpu": """\
parhelia task create "fine-tune the classifier on data/" --gpu A10G --timeout 120
parhelia task create "profile the CUDA kernels" --gpu H100 --memory 16384
parhelia containers list --json | jq '.data[] | select(.gpu != null)'""",
    "budget": """\
parhelia budget set 50                 # a $50 ceiling for the period
parhelia budget show --json            # spent, burn rate, when the ceiling is reached
parhelia budget estimate "train it" --gpu A10G --timeout 60   # price it before dispatch
parhelia budget history --bucket day --by task                # spend over time
PARHELIA_POLICY_BUDGET=block parhelia task create "..."   # refuse work past the ceiling""",
    "tasks": """\
parhelia task create "fix the failing tests in tests/api" --timeout 30
parhelia task list --json
parhelia task retry t-1a2b3c4d
parhelia task watch t-1a2b3c4d && echo done""",
    "containers": """\
parhelia containers
parhelia containers show c-1a2b3c4d
parhelia containers watch --json | jq -c 'select(.change == "state")'

parhelia containers orphans && parhelia cleanup --orphans
parhelia tui --once --format json | jq .data.budget""",
    "events": """\
parhelia status --json | jq -r '.data.attention[]'     # exit 1 when something needs a look
parhelia events watch --quiet                       # warnings, errors and completions, live
parhelia events watch --task t-1a2b3c4d --from-start --json | jq -r .message
parhelia events replay c-1a2b3c4d --speed 20
parhelia events export --format csv --since 3d --output events.csv
parhelia events export --level warning --since 2026-11-24T09:00 | wc -l""",
}


def explain(code: str) -> str:
    """A code's explanation; a reserved code's says so (never describe what a user cannot have)."""
    if code in RESERVED:
        return (
            f"Reserved for {RESERVED[code]}, which Parhelia does not have yet: "
            f"no command raises {code} today."
        )
    return CATALOGUE[code].explanation


def render_error_help(code: str) -> str:
    e = CATALOGUE[code]
    recovery = "\n".join(f"  {r}" for r in e.recovery)
    explanation = explain(code)
    return f"{e.code}: {e.title}\n\n{explanation}\n\nRecover with:\n{recovery}\n\nSee also: parhelia help {e.topic}"


# What a container's state and health mean, and what to do about them (the dashboard's help pane).
STATE_HELP: dict[str, str] = {
    "created": "Recorded; its sandbox is being created. A row stuck here after a crash is matched "
    "to its sandbox by tag on the next reconcile.",
    "running": "The sandbox is running and accruing cost. t stops it; a attaches to its agent's session.",
    "stopped": "The agent exited on its own; the sandbox is winding down.",
    "terminated": "Gone: stopped by a user, the budget guard, a timeout, or outside Parhelia. "
    "Its final cost is recorded.",
    "orphaned": "Running with Parhelia's tags but no dispatch recorded it: it costs money nobody "
    "is watching. t terminates it; `parhelia cleanup --orphans` stops all of them.",
    "terminating": "A terminate was sent; the row updates when the backend confirms.",
}
HEALTH_HELP: dict[str, str] = {
    "unknown": "No heartbeat yet (just started, or not probed).",
    "healthy": "Heartbeats arrive on time.",
    "degraded": "2 or more heartbeats missed: busy, or slipping. Watch it.",
    "unhealthy": "5 or more missed, or none for 5 minutes. Open it (enter) and read its events; "
    "terminate (t) if it does not recover.",
    "dead": "10 or more missed: the agent is not answering. Terminate it (t) to stop paying.",
}
