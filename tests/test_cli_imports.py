"""The command line's modules form no cycle: `app/cli.py` assembles the command modules, and none
of them imports it back (they share `app/cli_common.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as dotted names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_app_imports_the_cli_assembly():
    importers = sorted(
        p.name
        for p in APP.glob("*.py")
        if p.name not in ("cli.py", "__main__.py") and "parhelia.app.cli" in imported_modules(p)
    )
    assert importers == []


def test_the_reader_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from parhelia.app.cli import runtime\n")
    assert "parhelia.app.cli" in imported_modules(probe)
    probe.write_text("from parhelia.app import cli\n")
    assert "parhelia.app.cli" in imported_modules(probe)
