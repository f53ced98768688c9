"""containers_revision: on SQLite, a count every container write moves (triggers)

A dashboard refresh on SQLite asked `PRAGMA data_version`, which moves with any commit of the
file. Under a heartbeating fleet most commits touch no container (the staged samples' merge,
history pruning, events, reconciler runs), yet each made the refresh fetch its 10,000 narrow
container rows again to find nothing changed: about half of the dashboard's narrow reads under the
bench's fleet, 80 ms each (`state/live_views.py`). Row triggers on `containers` now count every
insert, update and delete, whoever writes (another process, an older Parhelia, the sqlite3 shell);
a refresh reads the count inside its read transaction and skips the narrow rows when it has not
moved. A row trigger costs the heartbeat cycle's UPDATE of 10,000 rows a few milliseconds
(bench/store.py's ingest ratio). The row is made by the first write (an upsert): a new database
stays empty for `parhelia db copy`.

PostgreSQL gets the table (one schema for both) but no triggers: a row every writer updates would
serialize its concurrent writers; its refresh goes by the shown rows' `xmin`
(`state/live_views.py`).

Revision ID: 0009_containers_revision
Revises: 0008_heartbeats_staged
Create Date: 2026-11-30 20:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_containers_revision"
down_revision = "0008_heartbeats_staged"
branch_labels = None
depends_on = None

BUMP = (
    "INSERT INTO containers_revision (id, n) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET n = containers_revision.n + 1"
)
TRIGGERS = {f"containers_revision_{verb.lower()}": verb for verb in ("INSERT", "UPDATE", "DELETE")}


def upgrade() -> None:
    op.create_table(
        "containers_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, verb in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} AFTER {verb} ON containers BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("containers_revision")
