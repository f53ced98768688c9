"""`parhelia tui --once`: golden files for the headless renderer, the exit-code verdict, and the
command end to end.

The goldens (tests/golden/) are the fixed world of tests/dashboard_world.py rendered in UTC at its
fixed clock, the database opened at a relative path so its label never varies. Rewrite them with
`PARHELIA_UPDATE_GOLDEN=1 pytest tests/test_once.py` and read the diff before committing; without
the variable a mismatch fails with a unified diff.
"""

from __future__ import annotations

import difflib
import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from parhelia.app.once import exit_code, render_once
from parhelia.state.errors import CATALOGUE
from tests.dashboard_world import NOW

GOLDEN = Path(__file__).parent / "golden"
# Read at import: the autouse isolation fixture drops every PARHELIA_* variable before a test runs.
UPDATE_GOLDEN = os.environ.get("PARHELIA_UPDATE_GOLDEN") == "1"
ESC = "\x1b"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(
            f"no golden file tests/golden/{name}; "
            "create it with PARHELIA_UPDATE_GOLDEN=1 pytest tests/test_once.py",
            pytrace=False,
        )
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"tests/golden/{name}",
                tofile="rendered now",
            )
        )
        pytest.fail(
            f"output differs from tests/golden/{name}:\n{diff}\n"
            "If the change is intended: PARHELIA_UPDATE_GOLDEN=1 pytest tests/test_once.py",
            pytrace=False,
        )


def golden_json(doc: dict) -> str:
    """The deterministic part of the envelope (metadata carries a duration), stably printed."""
    part = {"data": doc["data"], "next_actions": doc["next_actions"]}
    return json.dumps(part, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def make_healthy(world) -> None:
    """Stop what needs attention, the way a user would: terminate the dead one and the orphan,
    and raise the ceiling out of the warning band."""
    for cid in ("c-0000a003", "c-0000a005"):
        world.control.terminate(cid, actor="user:test", reason="user")
    world.control.store.set_setting("budget.ceiling_usd", 50.0)


# -- the renderer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [120, 80])
def test_text_matches_golden(world, width):
    text = render_once(world.control.dashboard(), fmt="text", width=width, color=False)
    assert all(len(line) <= width for line in text.splitlines()), "a line is wider than asked"
    check_golden(f"once-{width}.txt", text)


def test_json_data_matches_golden(world):
    doc = json.loads(render_once(world.control.dashboard(), fmt="json"))
    assert set(doc) == {"success", "data", "metadata", "next_actions"}
    assert doc["success"] is True
    assert datetime.fromisoformat(doc["metadata"]["timestamp"]) == NOW
    assert doc["metadata"]["duration_ms"] >= 0
    assert doc["data"]["status"] == "attention"
    check_golden("once.json", golden_json(doc))


def test_healthy_fleet_matches_golden(world):
    make_healthy(world)
    view = world.control.dashboard()
    text = render_once(view, fmt="text", width=120, color=False)
    assert "All well: nothing needs attention." in text
    check_golden("once-healthy-120.txt", text)


def test_text_has_no_escape_codes_without_colour(world):
    view = world.control.dashboard()
    assert ESC not in render_once(view, fmt="text", width=120, color=False)
    # the check can fail: with colour on, the same view is full of escapes
    assert ESC in render_once(view, fmt="text", width=120, color=True)


def test_svg_is_one_document(world):
    svg = render_once(world.control.dashboard(), fmt="svg", width=120)
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "c-0000a001" in svg


def test_exit_code_is_one_when_something_needs_attention(world):
    view = world.control.dashboard()
    assert exit_code(view) == 1
    doc = json.loads(render_once(view, fmt="json"))
    reasons = doc["data"]["attention"]
    assert any("orphaned" in r for r in reasons), reasons
    assert any("unhealthy or dead" in r for r in reasons), reasons


def test_exit_code_is_zero_for_a_healthy_fleet(world):
    make_healthy(world)
    view = world.control.dashboard()
    assert not view.needs_attention
    assert exit_code(view) == 0
    doc = json.loads(render_once(view, fmt="json"))
    assert doc["data"]["status"] == "ok"
    assert doc["data"]["attention"] == []
    assert doc["next_actions"] == []


# -- the command, in-process through parhelia.app.cli.main ----------------------------------------


def assert_coded_error(result, code: str) -> None:
    """A human error on stderr: code, title, recovery commands; nothing on stdout, no traceback."""
    assert result.out == ""
    assert "Traceback" not in result.err
    assert result.err.startswith(f"Error {code}: {CATALOGUE[code].title}: "), result.err
    assert "\nTry:\n  " in result.err


def test_cli_once_on_an_empty_store_exits_zero(parhelia_env):
    r = parhelia_env.run("tui", "--once", "--no-refresh")
    assert r.code == 0, r.err
    assert "Containers (0)" in r.out
    assert "All well: nothing needs attention." in r.out
    assert ESC not in r.out  # captured stdout is not a TTY


def test_cli_once_on_the_world_exits_one_without_escapes(parhelia_env):
    from tests.dashboard_world import seed

    store = parhelia_env.store()
    try:
        seed(store)
    finally:
        store.close()
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--width", "120")
    assert r.code == 1, r.err
    assert "c-0000a003" in r.out and "orphaned" in r.out
    assert ESC not in r.out
    assert all(len(line) <= 120 for line in r.out.splitlines())


def test_cli_once_json_prints_one_envelope(parhelia_env):
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)  # the whole of stdout is one document
    assert set(doc) == {"success", "data", "metadata", "next_actions"}
    assert doc["success"] is True
    assert doc["data"]["status"] == "ok"
    assert doc["data"]["dashboard"]["containers"] == []
    assert datetime.fromisoformat(doc["metadata"]["timestamp"]).tzinfo is not None


def test_cli_once_svg_prints_an_svg(parhelia_env):
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--format", "svg")
    assert r.code == 0, r.err
    assert r.out.lstrip().startswith("<svg")
    assert r.out.rstrip().endswith("</svg>")


def test_cli_once_unknown_format_is_e101(parhelia_env):
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--format", "xml")
    assert r.code != 0
    assert_coded_error(r, "E101")
    assert "xml" in r.err and "text, json, svg" in r.err


@pytest.mark.parametrize("width", ["-5", "0", "39"])
def test_cli_once_too_narrow_a_width_is_e101_exit_two(parhelia_env, width):
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--width", width)
    assert r.code == 2
    assert_coded_error(r, "E101")
    assert "too narrow" in r.err


def test_cli_once_unknown_format_exits_two(parhelia_env):
    r = parhelia_env.run("tui", "--once", "--no-refresh", "--format", "xml")
    assert r.code == 2


BROKEN_URLS = {
    "unparsable": lambda tmp: "not a database url",
    "not-a-database": lambda tmp: f"sqlite:///{_garbage_file(tmp)}",
}


def _garbage_file(tmp: Path) -> Path:
    path = tmp / "garbage.db"
    path.write_text("this is not an SQLite database, only text that looks like one\n" * 20)
    return path


@pytest.mark.parametrize("kind", sorted(BROKEN_URLS))
def test_cli_once_broken_database_is_a_coded_error(parhelia_env, monkeypatch, tmp_path, kind):
    monkeypatch.setenv("PARHELIA_DB_URL", BROKEN_URLS[kind](tmp_path))
    r = parhelia_env.run("tui", "--once", "--no-refresh")
    assert r.code != 0
    assert r.out == ""
    assert "Traceback" not in r.err
    assert r.err.startswith("Error E"), r.err
    assert "\nTry:\n  " in r.err


@pytest.mark.parametrize("kind", sorted(BROKEN_URLS))
def test_cli_once_broken_database_is_e701_exit_two(parhelia_env, monkeypatch, tmp_path, kind):
    monkeypatch.setenv("PARHELIA_DB_URL", BROKEN_URLS[kind](tmp_path))
    r = parhelia_env.run("tui", "--once", "--no-refresh")
    assert_coded_error(r, "E701")
    assert r.code == 2


@pytest.mark.parametrize("args", [("tui", "--once"), ("status",)])
def test_a_one_shot_views_refresh_gives_its_probes_a_bound(parhelia_env, monkeypatch, args):
    """`tui --once` and `status` wait on heartbeat probes at most ONE_SHOT_PROBE_S (10,000
    sandboxes at 16 probes at a time made a snapshot wait a minute); `reconciler run` does not."""
    from parhelia.app.cli_tui import ONE_SHOT_PROBE_S
    from parhelia.workers.control import ControlPlane

    asked: list = []
    real = ControlPlane.refresh_once

    def recorded(self, **kwargs):
        asked.append(kwargs.get("heartbeat_within"))
        return real(self, **kwargs)

    monkeypatch.setattr(ControlPlane, "refresh_once", recorded)
    assert parhelia_env.run(*args).code == 0
    assert parhelia_env.run("reconciler", "run").code == 0
    assert asked == [ONE_SHOT_PROBE_S, None]
