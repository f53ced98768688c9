"""Start-up (issue 16): a read command imports what it needs. `parhelia containers list` (or
`c ls`) builds the containers commands alone, not every other noun's; the figures are in
bench/cli.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from parhelia.app.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.startswith("parhelia.app.cli_"))
print(json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize("args", [["containers", "list"], ["c", "ls"], ["task", "list"]])
def test_a_noun_command_loads_no_other_noun(parhelia_env, args):
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=parhelia_env.env,
        timeout=120,
    )
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0, r.stderr
    others = {"parhelia.app.cli_budget", "parhelia.app.cli_events", "parhelia.app.cli_tui"}
    assert others.isdisjoint(probe["loaded"]), probe["loaded"]
    assert "No containers" in r.stdout or "No tasks" in r.stdout
