"""Turn the `[agent] command` template into an argv, never a shell string.

The template is split like a shell would split it (shlex) but nothing is ever run through a shell:
the prompt lands in exactly one argv element, so `$(...)`, backticks, quotes, `;` and newlines in a
prompt are just text. Placeholders: `{prompt}` and `{max_turns}`, substituted in one pass so a prompt
that itself contains `{max_turns}` stays verbatim. A template without `{prompt}` gets the prompt
appended as the last argument, because an agent started without its prompt would idle and bill.
"""

from __future__ import annotations

import re
import shlex
import shutil

from parhelia.state.errors import ParheliaError

PLACEHOLDER = re.compile(r"\{(prompt|max_turns)\}")

_CONFIG_HELP = [
    "parhelia config show",
    "PARHELIA_AGENT_COMMAND='claude -p --max-turns {max_turns} -- {prompt}' parhelia task create PROMPT",
    "parhelia help config",
]


def split_template(template: str) -> list[str]:
    """The template's words, or E103 when it is empty or its quotes do not balance."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ParheliaError(
            "E103",
            f"[agent] command {template!r} cannot be split into arguments: {exc}",
            _CONFIG_HELP,
            attempted="build the agent command",
        ) from exc
    if not words:
        raise ParheliaError(
            "E103", "[agent] command is empty", _CONFIG_HELP, attempted="build the agent command"
        )
    if PLACEHOLDER.search(words[0]):
        raise ParheliaError(
            "E103",
            f"[agent] command {template!r} must start with the agent program, not a placeholder",
            _CONFIG_HELP,
            attempted="build the agent command",
        )
    return words


def build_argv(template: str, prompt: str, max_turns: int) -> list[str]:
    """The agent's argv: `{prompt}` and `{max_turns}` substituted inside single elements."""
    values = {"prompt": prompt, "max_turns": str(max_turns)}
    words = split_template(template)
    argv = [PLACEHOLDER.sub(lambda m: values[m.group(1)], word) for word in words]
    if not any("{prompt}" in word for word in words):
        argv.append(prompt)
    return argv


def check_agent_binary(argv: list[str]) -> str:
    """The resolved path of argv[0], or E504 when it is not installed or not on PATH."""
    program = argv[0] if argv else ""
    found = shutil.which(program) if program else None
    if found is None:
        raise ParheliaError(
            "E504",
            f"agent program {program!r} was not found on PATH (from [agent] command)",
            [
                "parhelia config show",
                "PARHELIA_AGENT_COMMAND='claude -p --max-turns {max_turns} -- {prompt}' parhelia task create PROMPT",
                "npm install -g @anthropic-ai/claude-code",
                "parhelia tui --demo",
            ],
            attempted=f"start {program!r}",
        )
    return found
