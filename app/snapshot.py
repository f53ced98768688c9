"""What a one-shot snapshot answers without drawing anything: its exit code and its `--json`
envelope. Apart from `once.py` (which lays the text out with Rich) so that `parhelia status`,
`status --json` and `tui --once --format json` never import Rich (bench/cli.py)."""

from __future__ import annotations

import json
import time

from parhelia.state.views import DashboardView


def exit_code(view: DashboardView) -> int:
    return 1 if view.needs_attention else 0


def render_json(view: DashboardView) -> str:
    """The `--json` envelope around the same view, with the verdict scripts branch on."""
    from parhelia.app.output import STARTED, dumps, trim
    from parhelia.app.payloads import status_data

    data = trim(status_data(view))
    doc = {
        "success": True,
        "data": data,
        "metadata": {
            "timestamp": view.generated_at.isoformat(),
            "duration_ms": round((time.perf_counter() - STARTED) * 1000, 1),
        },
        "next_actions": [
            {"command": a.command, "description": a.text, "priority": "high"}
            for a in view.attention()
        ],
    }
    return dumps(json.loads(dumps(doc))) + "\n"
