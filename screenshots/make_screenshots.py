"""Screenshots of the real dashboard for the README, drawn from the app itself.

Builds the fixed, deterministic fleet of tests/dashboard_world.py in a temporary directory (its
database opened by a relative URL, so the status bar reads `sqlite:///parhelia.db`), runs the real
`ParheliaApp` headless at 150x45 with loops and animations off, plays the same Pilot scenes as the
snapshot tests (tests/snapshot_fixtures.py), and writes one SVG per scene beside this script:
main.svg, detail.svg, new-task.svg, terminate.svg, and main-80x24.svg (the main scene in a small
terminal: the sidebar collapsed, columns giving way). Times print in UTC, so the files are the same
wherever the script runs.

    make screenshots            # or: .venv/bin/python screenshots/make_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # the world lives in tests/, importable from the repository root
    sys.path.insert(0, str(REPO))

SHOTS = ("main", "detail", "new-task", "terminate", "main-80x24")
SIZES = {"main-80x24": ("main", (80, 24))}  # a picture name -> (its scene, its terminal size)


async def shoot(name: str, world) -> str:
    from tests.snapshot_fixtures import SNAPSHOT_SIZE, make_app, scene

    app = make_app(world)
    scene_name, size = SIZES.get(name, (name, SNAPSHOT_SIZE))
    async with app.run_test(size=size) as pilot:
        await scene(scene_name)(pilot)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        return app.export_screenshot(title=app.title, simplify=True)


def main(names: tuple[str, ...] = SHOTS) -> list[Path]:
    os.environ["TZ"] = "UTC"
    time.tzset()
    from tests.snapshot_fixtures import build_world

    written = []
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="parhelia-shots-") as tmp:
        for name in names:
            # a fresh world per picture: nothing one scene does can show in the next
            here = Path(tmp) / name
            here.mkdir()
            os.chdir(here)
            try:
                world = build_world(here)
                try:
                    svg = asyncio.run(shoot(name, world))
                finally:
                    world.store.close()
            finally:
                os.chdir(cwd)
            out = HERE / f"{name}.svg"
            out.write_text(svg, encoding="utf-8")
            written.append(out)
            print(f"wrote {out.relative_to(REPO)}")
    return written


if __name__ == "__main__":
    main()
