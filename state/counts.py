"""Row counts per table, for `parhelia db status` (what its help promises)."""

from __future__ import annotations

from sqlalchemy import func, inspect, select, table


def row_counts(engine) -> dict[str, int]:
    """{table: rows} for every table in the database except Alembic's bookkeeping."""
    names = sorted(n for n in inspect(engine).get_table_names() if n != "alembic_version")
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
            for name in names
        }
