"""Feedback by duration (SPEC-20), seen through a pseudo-terminal: an inline status, then a spinner,
then progress, then progress with time remaining, on stderr; nothing when piped, with --json,
NO_COLOR or TERM=dumb."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parhelia.app.feedback import phase
from tests import pty_driver

# A slow command in miniature: its clock is driven by hand, each stage held long enough for the
# display (10 frames a second) to draw it.
SCRIPT = """
import sys, time
from parhelia.app.feedback import working
now = [0.0]
with working("Doing it", total=4, json_out="--json" in sys.argv, clock=lambda: now[0]) as step:
    for t in (0.5, 2.0, 5.0, 12.0):
        now[0] = t
        step()
        time.sleep(0.6)
print("done")
"""


@pytest.mark.parametrize(
    "elapsed, kind",
    [
        (0.05, "none"),
        (0.1, "inline"),
        (0.99, "inline"),
        (1.0, "spinner"),
        (3.9, "spinner"),
        (4.0, "progress"),
        (9.9, "progress"),
        (10.0, "progress+eta"),
        (600, "progress+eta"),
    ],
)
def test_phase_by_duration(elapsed, kind):
    assert phase(elapsed) == kind


def run_script(env: dict[str, str], *extra: str) -> str:
    s = pty_driver.Session([], env, argv=[sys.executable, "-c", SCRIPT, *extra])
    code, text = s.finish()
    assert code == 0, text
    return text


def base_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR",)}
    return {**env, "TERM": "xterm", **extra}


def test_each_stage_is_drawn_on_a_terminal():
    text = run_script(base_env())
    assert "Doing it…" in text  # inline status
    assert "Doing it (2 s)" in text  # spinner
    assert "3/4" in text and "4/4" in text  # progress, then progress with time remaining
    assert text.rstrip().endswith("done")


@pytest.mark.parametrize("extra_env, args", [({"TERM": "dumb"}, ()), ({"NO_COLOR": "1"}, ())])
def test_nothing_on_a_dumb_or_colourless_terminal(extra_env, args):
    text = run_script(base_env(**extra_env), *args)
    assert "Doing it" not in text and text.strip() == "done"


def test_nothing_with_json():
    text = run_script(base_env(), "--json")
    assert "Doing it" not in text


def test_nothing_when_piped():
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=base_env(), timeout=60
    )
    assert r.returncode == 0 and r.stdout == "done\n" and r.stderr == ""
