"""The agent command template: split like a shell, never run through one."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import AgentSettings
from parhelia.workers.agent_command import build_argv, check_agent_binary

NASTY = [
    "$(touch {marker})",
    "`touch {marker}`",
    "it's \"quoted\" and 'single'",
    "a; touch {marker}; echo b",
    "line one\nline two && touch {marker}",
    "{{max_turns}} | touch {marker} > /dev/null",
    "   leading and trailing spaces   ",
]


def echo_template() -> str:
    """A real program that prints the argv it got as JSON."""
    code = "import sys, json; print(json.dumps(sys.argv[1:]))"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} -p {{prompt}} --max-turns {{max_turns}}"


def test_default_template_from_settings():
    assert build_argv(AgentSettings().command, "fix the bug", 25) == [
        "claude", "-p", "--max-turns", "25", "--", "fix the bug",
    ]  # fmt: skip


@pytest.mark.parametrize("prompt", ["--dangerously-skip-permissions", "-h", "--max-turns=9999"])
def test_a_prompt_cannot_become_a_flag_of_the_default_agent(prompt):
    """`--` ends the options, so an option parser (argparse here, like claude's) reads the prompt
    as the prompt, whatever it starts with."""
    import argparse

    argv = build_argv(AgentSettings().command, prompt, 25)
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("-p", action="store_true")
    parser.add_argument("--max-turns", type=int)
    parser.add_argument("--dangerously-skip-permissions", action="store_true")
    parser.add_argument("prompt")
    parsed = parser.parse_args(argv[1:])
    assert parsed.prompt == prompt
    assert parsed.max_turns == 25 and not parsed.dangerously_skip_permissions


@pytest.mark.parametrize("raw", NASTY)
def test_hostile_prompt_is_one_verbatim_argument_and_nothing_runs(raw, tmp_path):
    marker = tmp_path / "pwned"
    prompt = raw.format(marker=marker)
    argv = build_argv(echo_template(), prompt, 7)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == ["-p", prompt, "--max-turns", "7"]
    assert not marker.exists()


def test_placeholder_inside_a_word_and_prompt_containing_placeholders():
    argv = build_argv("agent --prompt={prompt} --turns={max_turns}", "say {max_turns} {prompt}", 3)
    assert argv == ["agent", "--prompt=say {max_turns} {prompt}", "--turns=3"]


def test_template_without_prompt_appends_it_last():
    assert build_argv("agent --max-turns {max_turns} --quiet", "do it; rm -rf /", 2) == [
        "agent", "--max-turns", "2", "--quiet", "do it; rm -rf /",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "template", ["claude -p '{prompt}", 'claude -p "{prompt}', "", "   ", "{prompt} x"]
)
def test_malformed_template_is_e103(template):
    with pytest.raises(ParheliaError) as err:
        build_argv(template, "p", 1)
    assert err.value.code == "E103"
    assert len(err.value.suggestions) >= 2


def test_check_agent_binary_finds_real_and_rejects_missing():
    assert check_agent_binary([sys.executable, "-c", "pass"])
    with pytest.raises(ParheliaError) as err:
        check_agent_binary(["parhelia-no-such-agent-xyz", "-p", "x"])
    assert err.value.code == "E504"
    assert "parhelia-no-such-agent-xyz" in err.value.message
    assert len(err.value.suggestions) >= 2
