"""A throwaway PostgreSQL 15 cluster for the tests, and a fresh database for each test.

The server refuses to run as root, so when the tests run as root `initdb` and `pg_ctl` run as the
`postgres` user (`runuser`) in a temporary directory that user owns. It listens only on 127.0.0.1,
on a free port, trusts local connections (it lives for one test session) and is stopped at the end.

Each test gets its own database, cloned from a template migrated once (`CREATE DATABASE ... TEMPLATE`
copies files: much cheaper than running the migrations again). With CI=true a server that cannot
start fails the tests; elsewhere the PostgreSQL half of the tests is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("PARHELIA_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "parhelia_template"
PASSWORD_ROLE, PASSWORD = "parhelia_pw", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    """One running cluster; `url(name)` is a SQLAlchemy URL for database `name` on it."""

    root: Path
    port: int
    user: str = "postgres"
    _as: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *, durable: bool = False) -> PgCluster:
        """A new cluster; `durable` keeps PostgreSQL's default fsync and commit settings (for
        benches), otherwise they are off: a test server's data need not survive a crash."""
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            raise RuntimeError(f"PostgreSQL is not installed here ({initdb} is missing)")
        root = Path(tempfile.mkdtemp(prefix="parhelia-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:  # the server refuses root: hand the directory to `postgres`
            shutil.chown(root, "postgres", "postgres")
            root.chmod(0o700)
            run_as = ["runuser", "-u", "postgres", "--"]
        cluster = cls(root=root, port=free_port(), _as=run_as)
        data = root / "data"
        cluster._run(
            str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        # Password checked for one role (the bad-credentials tests), trusted for the rest.
        hba = data / "pg_hba.conf"
        hba.write_text(
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\nlocal all all trust\n"
        )
        if run_as:
            shutil.chown(hba, "postgres", "postgres")
        options = (
            f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            "-c max_connections=200 -c shared_buffers=128MB"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cluster._run(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return cluster

    def _run(self, *cmd: str) -> None:
        done = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr or done.stdout}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as conn:
            for sql in statements:
                conn.execute(sql)

    def fresh_database(self, template: str | None = TEMPLATE) -> str:
        """A new empty (or migrated, cloned from `template`) database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        clause = f" TEMPLATE {template}" if template else ""
        self.admin(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def make_template(self) -> None:
        from parhelia.state.store import Store

        self.admin(
            f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'",
            f"CREATE DATABASE {TEMPLATE}",
        )
        Store(self.url(TEMPLATE)).close()
        # no one may stay connected to a template, or CREATE DATABASE waits then fails
        self.admin(f"ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false")

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                      "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- fixtures (registered as a plugin in tests/conftest.py) ----------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL server for the whole session. Not installed or not startable: skipped on a
    developer's machine, a failure in CI (CI=true), where these tests must run."""
    try:
        cluster = PgCluster.start()
        try:
            cluster.make_template()
        except Exception:
            cluster.stop()  # a started server is not left running, nor its directory behind
            raise
    except Exception as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the PostgreSQL tests, but the server did not start: {exc}")
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_database(pg_cluster):
    """A fresh database migrated to head, dropped after the test."""
    url = pg_cluster.fresh_database()
    yield url
    pg_cluster.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


@pytest.fixture
def pg_empty_database(pg_cluster):
    """A fresh database with no tables at all, dropped after the test."""
    url = pg_cluster.fresh_database(template="template0")
    yield url
    pg_cluster.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


@pytest.fixture
def pg(pg_database):
    """A store on a fresh migrated database, closed after the test."""
    from parhelia.state.store import Store

    store = Store(pg_database)
    yield store
    store.close()
