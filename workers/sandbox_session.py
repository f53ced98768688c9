"""The agent's tmux session inside a Modal sandbox: the image step that installs tmux and the
entrypoint that runs the agent in a session named `ph-<task>-<time>`.

Why it looks like this:
- The sandbox's entrypoint is a POSIX sh script (nothing of Parhelia is installed in the image).
  It starts tmux on its own socket name (`-L parhelia`), runs the agent in the session through a
  small shell that records the agent's exit status and wakes the entrypoint (`tmux wait-for`),
  and copies the pane's output to the sandbox's stdout (`pipe-pane` into a FIFO, CR LF back to
  LF, unbuffered), so the sandbox's logs read as before.
- The entrypoint exits with the agent's status and stops the tmux server; Modal ends the sandbox
  with it. An image without tmux (a registry image the install could not change) runs the agent
  directly, as before: no session, same logs.
- Attach: `modal shell sb-… --cmd "tmux -L parhelia attach -t ph-…"`.
"""

from __future__ import annotations

import shlex

SOCKET_NAME = "parhelia"
# The sandbox's tag naming its agent's session: the store keeps it with the container's tags, so a
# session whose sandbox does not answer is still listed (`workers/modal_sessions.py`).
TAG_SESSION = "parhelia_session"
MARK = "parhelia-session"  # the entrypoint's $0
# An image step: Debian-based images get tmux; any other image builds unchanged (no session).
TMUX_INSTALL = (
    "command -v tmux >/dev/null 2>&1 || "
    "(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux "
    "&& rm -rf /var/lib/apt/lists/*) || true"
)

SANDBOX_SCRIPT = r"""
name="$1"; shift
command -v tmux >/dev/null 2>&1 || exec "$@"
unset TMUX
d=$(mktemp -d); out="$d/out"; code="$d/exit"; mkfifo "$out"
exec 3<>"$out"
sed -u 's/\r$//' <"$out" 3>&- &
reader=$!
tmux -L parhelia -f /dev/null new-session -d -s "$name" -x 200 -y 50 -- \
  sh -c 'c="$1"; shift; trap : TERM HUP INT; "$@"; echo $? >"$c"; tmux -L parhelia wait-for -S parhelia-done' \
  parhelia-pane "$code" "$@" \; pipe-pane -t "=$name:" "exec cat >>'$out'" || exit 127
tmux -L parhelia wait-for parhelia-done
tmux -L parhelia kill-server 2>/dev/null
exec 3>&-
wait "$reader"
status=$(cat "$code" 2>/dev/null)
rm -rf "$d"
exit "${status:-1}"
"""


def sandbox_argv(name: str, agent: list[str]) -> list[str]:
    """The sandbox's entrypoint: the agent inside tmux session `name`."""
    return ["sh", "-c", SANDBOX_SCRIPT, MARK, name, *agent]


def agent_argv(entrypoint: list[str]) -> list[str]:
    """The agent's argv back from an entrypoint `sandbox_argv` made (or the argv itself)."""
    if entrypoint[:2] == ["sh", "-c"] and entrypoint[3:4] == [MARK]:
        return entrypoint[5:]
    return entrypoint


def attach_command(sandbox_id: str, name: str) -> list[str]:
    """How a user attaches to the agent's session in a Modal sandbox."""
    inner = f"tmux -L {SOCKET_NAME} attach -t {shlex.quote('=' + name)}"
    return ["modal", "shell", sandbox_id, "--cmd", inner]
