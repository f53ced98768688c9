"""Dispatch shows what it is doing (SPEC-20 feedback by duration, issue 16): on a terminal the
stages (building the image, starting the sandbox) appear on stderr while Modal is slow; piped
output and `--json` carry none of it. Through the real CLI against the fake Modal server, whose
image and sandbox RPCs are held back long enough for the display (10 frames a second) to draw."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import pty_driver
from tests.fake_modal import TOKEN_ID, TOKEN_SECRET, FakeModalServer

APP = "parhelia-feedback"
ARGS = ["task", "create", "say hello", "--yes", "--cpu", "1", "--memory", "1024"]


@pytest.fixture
def slow_modal_env(parhelia_env, fake_modal: FakeModalServer, monkeypatch):
    from modal.client import _Client

    monkeypatch.setenv("PARHELIA_BACKEND", "modal")
    monkeypatch.setenv("PARHELIA_MODAL_APP", APP)
    monkeypatch.setenv("MODAL_SERVER_URL", fake_modal.url)
    monkeypatch.setenv("MODAL_TOKEN_ID", TOKEN_ID)
    monkeypatch.setenv("MODAL_TOKEN_SECRET", TOKEN_SECRET)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(_Client, "_client_from_env", None)
    fake_modal.state.hang("ImageGetOrCreate", 1.5, times=1)
    fake_modal.state.hang("SandboxCreate", 1.5, times=1)
    return parhelia_env


def test_dispatch_stages_appear_on_a_terminal(slow_modal_env):
    s = pty_driver.Session(ARGS, slow_modal_env.env, cwd=slow_modal_env.project)
    code, text = s.finish()
    assert code == 0, text
    assert "Dispatching to modal: building the image" in text
    assert "Dispatching to modal: starting the sandbox" in text
    assert "dispatched: container" in text
    (task,) = slow_modal_env.store().list_tasks()
    assert task.backend == "modal"


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_piped_dispatch_has_no_stages(slow_modal_env, extra):
    r = subprocess.run(
        [sys.executable, "-m", "parhelia.app", *ARGS, *extra],
        capture_output=True,
        text=True,
        env=slow_modal_env.env,
        cwd=slow_modal_env.project,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "Dispatching" not in r.stdout + r.stderr and "\x1b[" not in r.stdout + r.stderr
    assert "building the image" not in r.stderr
