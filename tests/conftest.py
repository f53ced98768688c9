"""Shared fixtures: the plugins below, and a fresh store."""

import pytest

from parhelia.state.store import Store

pytest_plugins = ["tests.modal_fixtures", "tests.isolation", "tests.snapshot_fixtures"]


@pytest.fixture
def store(tmp_path):
    """A store on its own SQLite file, closed after the test."""
    s = Store(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()
