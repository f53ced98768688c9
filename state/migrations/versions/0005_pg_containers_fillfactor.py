"""PostgreSQL: containers pages keep half their room free, so heartbeat updates stay HOT

Every heartbeat cycle rewrites each running container's row (`last_heartbeat_at`, the newest
sample). On PostgreSQL an update that finds no room on the row's page writes the new version
elsewhere and inserts it into all seven indexes of the table; with room on the page it is a HOT
update (no index touched). Measured on a cycle of 1,000 updates: about 8 WAL records per row and
~50 ms, against 1 and ~8 ms with fillfactor 50 (bench/ingest_compare.py). SQLite has no
fillfactor: nothing to do there.

Revision ID: 0005_pg_containers_fillfactor
Revises: 0004_lease_owner
Create Date: 2026-11-29 23:58:00.000000
"""

from alembic import op

revision = "0005_pg_containers_fillfactor"
down_revision = "0004_lease_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE containers SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE containers RESET (fillfactor)")
