"""Fixtures that keep tests off the user's real Parhelia directories, and an isolated CLI world.

`isolated_user_dirs` (autouse once registered as a plugin in tests/conftest.py) points the config,
data and cache dirs at a temporary directory and drops any `PARHELIA_*` variable the developer has
set, so no test reads ~/.config/parhelia or writes the real database.

`parhelia_env` is a complete local world for CLI and dispatch tests: its own SQLite file, the local
backend under a temporary root, a harmless real agent (a Python process that sleeps), the project
directory as cwd, and at teardown every sandbox it started is terminated.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Nothing a test does may leave this machine: a name lookup for any host but loopback fails here,
# in every test process, so a path that would reach out (Modal's API, a proxy) fails loudly.
_LOOPBACK = {None, "", "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1"}
_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    if host not in _LOOPBACK:
        raise OSError(f"tests stay on 127.0.0.1: a lookup of {host!r} was refused")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only

# An agent that does nothing for two minutes: real process, no CPU, dies on SIGTERM (exit 143).
SLEEPER = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(120)' {{prompt}}"


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("parhelia-user")
    for var in list(os.environ):
        if var.startswith("PARHELIA_"):
            monkeypatch.delenv(var)
    for name in ("CONFIG_HOME", "DATA_DIR", "CACHE_DIR"):
        monkeypatch.setenv(f"PARHELIA_{name}", str(root / name.lower()))
    # Everything the tests talk to is on loopback: a CI machine's proxy must never sit in between
    # (httpx, which the MCP client and the modal SDK's helpers use, honours these variables).
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # The CLI's plain output wraps to the terminal (`shutil.get_terminal_size`, 120 columns when
    # stdout is not one) and Rich sizes its consoles by these variables: a COLUMNS inherited from
    # the shell, or set in pytest-xdist's workers (80), would make a phrase a test looks for wrap
    # across lines. Without them every test sees the same widths, in one process or in workers.
    for var in ("COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)
    return root


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@dataclass
class ParheliaEnv:
    root: Path
    project: Path
    db_path: Path
    sandbox_root: Path
    capsys: pytest.CaptureFixture

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def env(self) -> dict[str, str]:
        """The environment a subprocess needs to see the same world."""
        return {k: v for k, v in os.environ.items()}

    def run(self, *args: str) -> Result:
        """`parhelia ARGS` in-process; output captured."""
        from parhelia.app.cli import main

        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *args: str) -> dict:
        """`parhelia ARGS --json` that must succeed; returns the envelope's data."""
        r = self.run(*args, "--json")
        assert r.code == 0, (args, r.out, r.err)
        doc = r.json
        assert doc["success"] is True, doc
        return doc["data"]

    def backend(self):
        from parhelia.workers.backends.local import LocalBackend

        return LocalBackend(self.sandbox_root, terminate_grace=2.0)

    def store(self):
        from parhelia.state.store import Store

        return Store(self.db_url)

    def control(self, **kw):
        """A ControlPlane over this world's store and configuration (as the CLI builds it)."""
        from parhelia.app.config import load_settings
        from parhelia.workers.control import ControlPlane

        settings = load_settings(flags={}).settings
        return ControlPlane(
            self.store(), settings, default_backend="local", data_dir=self.root / "data", **kw
        )


@pytest.fixture
def parhelia_env(isolated_user_dirs, tmp_path, monkeypatch, capsys):
    root = isolated_user_dirs
    project = tmp_path / "project"
    project.mkdir()
    (project / ".git").mkdir()  # stops parhelia.toml discovery at the project
    monkeypatch.chdir(project)
    env = ParheliaEnv(
        root=root,
        project=project,
        db_path=tmp_path / "parhelia.db",
        sandbox_root=root / "data_dir" / "sandboxes",
        capsys=capsys,
    )
    monkeypatch.setenv("PARHELIA_DB_URL", env.db_url)
    monkeypatch.setenv("PARHELIA_BACKEND", "local")
    monkeypatch.setenv("PARHELIA_LOCAL_ROOT", str(env.sandbox_root))
    monkeypatch.setenv("PARHELIA_LOCAL_TERMINATE_GRACE_SECONDS", "2")
    monkeypatch.setenv("PARHELIA_AGENT_COMMAND", SLEEPER)
    yield env
    backend = env.backend()
    for info in backend.list_all():
        if info.running:
            backend.terminate(info.sandbox_id)
