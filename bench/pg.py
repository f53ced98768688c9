"""PostgreSQL for the benches that take `--db`: `auto` starts a throwaway PostgreSQL 15 server on
127.0.0.1 as the tests do (tests/pg_server.py, with PostgreSQL's default durable settings), a
`postgresql+psycopg://` URL names a server you run. Each measured store gets a database of its
own on that server, dropped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.pg_server


class Databases:
    def __init__(self, spec: str) -> None:
        self.cluster = None
        self.made: list[str] = []
        if spec == "auto":
            from tests.pg_server import PgCluster

            self.cluster = PgCluster.start(durable=True)
            self.base = self.cluster.url("postgres")
        else:
            self.base = spec

    def fresh(self, name: str) -> str:
        """The URL of a new, empty database `name` on the server (replacing one left behind)."""
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
        self.made.append(name)
        return self.base.rsplit("/", 1)[0] + f"/{name}"

    def close(self) -> None:
        try:
            if self.cluster is None:
                self._admin(*(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)" for n in self.made))
        finally:
            if self.cluster is not None:
                self.cluster.stop()

    def _admin(self, *statements: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.base)
        with psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            for sql in statements:
                conn.execute(sql)


def copied(sqlite_url: str, databases: Databases, name: str) -> str:
    """A PostgreSQL copy of the SQLite store at `sqlite_url` (by `db copy`'s own code); its URL."""
    import time

    from parhelia.state.copy import copy_store

    url = databases.fresh(name)
    t = time.perf_counter()
    counts = copy_store(sqlite_url, url)
    rows = sum(counts.values())
    took = time.perf_counter() - t
    print(
        f"setup: copied {rows:,} rows into PostgreSQL in {took:.1f} s ({rows / took:,.0f} rows/s)"
    )
    return url
