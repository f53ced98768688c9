"""Shared fixtures: the plugins below, and a fresh store.

The store, reconciler, lease, concurrency and dashboard tests (`BOTH_DATABASES`) run twice: on
SQLite and on a real PostgreSQL server the tests start themselves (tests/pg_server.py). A test of
something only SQLite has (its files, WAL, query planner) is marked `sqlite_only`; a dashboard test
of keys and widgets over the loaded fleet, where the database plays no part past the first refresh
(which the other PostgreSQL dashboard tests cover), is marked `one_database`; a test of something
only PostgreSQL has, in one of those modules, `postgresql_only`.
"""

import pytest

from parhelia.state.store import Store

pytest_plugins = [
    "tests.modal_fixtures",
    "tests.isolation",
    "tests.snapshot_fixtures",
    "tests.pg_server",
]

BOTH_DATABASES = {
    "test_store",
    "test_reconciler",
    "test_concurrent_writers",
    "test_dashboard",
    "test_postgres",
    "test_export",
    "test_heartbeat_staging",
    "test_quick_store",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite itself (files, WAL, plans)")
    config.addinivalue_line(
        "markers", "one_database: the database plays no part past the first load; SQLite only"
    )
    config.addinivalue_line("markers", "postgresql_only: a test of PostgreSQL alone")


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "database" not in metafunc.fixturenames:
        return
    kinds = ["sqlite"]
    marked = any(metafunc.definition.get_closest_marker(m) for m in ("sqlite_only", "one_database"))
    if module in BOTH_DATABASES and not marked:
        kinds.append("postgresql")
    if module == "test_postgres" or metafunc.definition.get_closest_marker("postgresql_only"):
        kinds = ["postgresql"]
    metafunc.parametrize("database", kinds, indirect=True)


@pytest.fixture
def database(request):
    """Which database this run of the test uses: "sqlite", or "postgresql" (see BOTH_DATABASES)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_url(database, tmp_path, request):
    """A URL to a fresh, migrated database of the test's kind."""
    if database == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def store(store_url):
    """A store on its own database, closed after the test."""
    s = Store(store_url)
    yield s
    s.close()
