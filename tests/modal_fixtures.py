"""Pytest fixtures for the fake Modal server (registered as a plugin in tests/conftest.py).

The SDK reads `MODAL_CONFIG_PATH` once at import, so it is pointed at a file that does not exist
before anything imports `modal`: no test reads or writes ~/.modal.toml. While a fake runs,
`MODAL_SERVER_URL` points at it, so even a client built from the environment stays on 127.0.0.1;
otherwise at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

_CONFIG_DIR = tempfile.mkdtemp(prefix="parhelia-modal-config-")
os.environ["MODAL_CONFIG_PATH"] = os.path.join(_CONFIG_DIR, "absent.modal.toml")
for _var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT"):
    os.environ.pop(_var, None)
# Outside a fake's fixture the SDK points at a closed port here, never at Modal's own API: a test
# whose store holds Modal rows (the dashboard reads their agents) fails its Modal reads at once,
# and nothing leaves 127.0.0.1. Every process the tests start inherits it.
NOWHERE = "http://127.0.0.1:9"
os.environ["MODAL_SERVER_URL"] = NOWHERE

from tests.fake_modal import FakeModalServer  # noqa: E402


@pytest.fixture(scope="module")
def fake_modal_server() -> Iterator[FakeModalServer]:
    """One fake per test module (fast); use `fake_modal` for a clean state per test."""
    with pytest.MonkeyPatch.context() as mp:
        server = FakeModalServer(page_size=5).start()
        mp.setenv("MODAL_SERVER_URL", server.url)
        server.shared_client = server.client()
        try:
            yield server
        finally:
            server.shared_client.close()
            server.stop()


@pytest.fixture
def fake_modal(fake_modal_server: FakeModalServer) -> FakeModalServer:
    """The module's fake with its state reset (no sandboxes, apps, faults) for this test."""
    fake_modal_server.state.reset()
    return fake_modal_server
