"""Heartbeat ingest on PostgreSQL: a cycle's samples go in by binary `COPY` and its container
updates by binary `COPY` into a staging table and one `UPDATE ... FROM` it per shape, instead of
one statement per row (row by row, a cycle of 1,000 samples and 1,000 updates ran at about 1,600
rows/s; bench/store.py --db URL).

Values pass through their columns' own bind processing first, so a naive datetime is refused here
exactly as everywhere else in the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, event
from sqlalchemy.exc import DBAPIError

Bound = Callable[[list, Callable[[Any], Any]], list]


def copy_rows(conn: Connection, table: Table, columns: dict[str, list], bound: Bound) -> None:
    """Binary COPY of the rows given column by column into `table`, in the connection's
    transaction (binary: the server parses no text, the driver formats none)."""
    names = list(columns)
    values = [_processed(conn, table.c[n].type, columns[n], bound) for n in names]
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    with as_sqlalchemy_errors(sql):
        driver = conn.connection.driver_connection
        oids = _column_oids(driver, table.name)
        cursor = driver.cursor()
        with cursor.copy(sql) as copy:
            copy.set_types([oids[n] for n in names])
            for row in zip(*values, strict=True):
                copy.write_row(row)


_OIDS: dict[str, dict[str, int]] = {}


def _column_oids(driver: Any, table: str) -> dict[str, int]:
    """Each column's type oid (binary COPY must name them), asked once per process (a staging
    table's name says its columns and types, so its oids are the same on every connection)."""
    if table not in _OIDS:
        rows = driver.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
        _OIDS[table] = dict(rows)
    return _OIDS[table]


def update_from_staging(
    conn: Connection,
    table: Table,
    columns: dict[str, list],
    types: dict[str, Any],
    set_sql: dict[str, str],
    bound: Bound,
) -> None:
    """One UPDATE of `table` from staged rows: row `i` of every column is one row's parameters,
    `_id` the key. `types` gives each parameter's column type; `set_sql` each assignment's SQL, in
    terms of `v.<parameter>` (the new values) and `t.<column>` (the row's current ones).

    The rows go by binary COPY into a temporary staging table (one per shape and connection,
    emptied at each commit), then one `UPDATE ... FROM` it: the driver formats binary COPY rows in
    C, where array parameters were dumped element by element in Python (~35 ms a cycle)."""
    names = list(columns)
    driver = conn.connection.driver_connection
    stage = _staging_table(conn, driver, names, types)
    copy_sql = f"COPY {stage} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    values = [_processed(conn, types[n], columns[n], bound) for n in names]
    sets = ", ".join(f"{col} = {sql}" for col, sql in set_sql.items())
    sql = f"UPDATE {table.name} AS t SET {sets} FROM {stage} AS v WHERE t.id = v._id"
    with as_sqlalchemy_errors(sql):
        oids = _column_oids(driver, stage)
        with driver.cursor().copy(copy_sql) as copy:
            copy.set_types([oids[n] for n in names])
            for row in zip(*values, strict=True):
                copy.write_row(row)
        driver.execute(sql)


def _staging_table(conn: Connection, driver: Any, names: list[str], types: dict[str, Any]) -> str:
    """The temporary table for rows of these columns on this connection, emptied at each commit.

    Made once per connection (its CREATE, even a no-op IF NOT EXISTS, cost ~0.1-0.2 ms of server
    CPU a cycle): the connection remembers it until a rollback, which may have taken a table made
    in its transaction away again (then the next cycle asks for it anew)."""
    cols = ", ".join(f"{n} {types[n].compile(dialect=conn.dialect)}" for n in names)
    name = "parhelia_stage_" + hashlib.sha1(cols.encode()).hexdigest()[:12]
    made = conn.connection.info.setdefault(_MADE, set())
    if name not in made:
        _forget_at_rollback(conn.engine)
        driver.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS")
        made.add(name)
    return name


_MADE = "parhelia_staging_tables"  # key in the pooled connection's `info`: its staging tables


def _forget_at_rollback(engine: Any) -> None:
    """After any rollback on `engine`'s connections, they forget their staging tables."""
    if not event.contains(engine, "rollback", _forget):
        event.listen(engine, "rollback", _forget)
        event.listen(engine, "rollback_savepoint", _forget_savepoint)
        event.listen(engine.pool, "reset", _forget_reset)


def _forget(conn: Connection) -> None:
    conn.connection.info.pop(_MADE, None)


def _forget_savepoint(conn: Connection, name: str, context: Any) -> None:
    _forget(conn)


def _forget_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    """The pool rolls back whatever a returned connection left open: only an open transaction
    (not one already committed) may have made a table this rollback takes away."""
    from psycopg.pq import TransactionStatus

    if dbapi_connection.info.transaction_status != TransactionStatus.IDLE:
        record.info.pop(_MADE, None)


@contextmanager
def as_sqlalchemy_errors(sql: str) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (IntegrityError, OperationalError...), as every other
    statement of the store raises them."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


def _processed(conn: Connection, type_: Any, values: list, bound: Bound) -> list:
    proc = type_.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return values if proc is None else bound(values, proc)
