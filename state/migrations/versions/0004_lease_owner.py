"""leases know their holder's process and whether a cycle is in flight

`host`, `pid` and `pid_started` name the holder's process, so a holder on this host whose process
is gone is taken over at once and shown as dead (`state/process_owner.py`). `cycle_started_at` is
set while a reconcile cycle runs, so a reader sees a cycle that overruns its interval as stale
while it still runs.

Revision ID: 0004_lease_owner
Revises: 0003_drop_last_sample_index
Create Date: 2026-11-29 22:45:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import parhelia.state.models

revision = "0004_lease_owner"
down_revision = "0003_drop_last_sample_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pid_started", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("cycle_started_at", parhelia.state.models.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_column("cycle_started_at")
        batch_op.drop_column("pid_started")
        batch_op.drop_column("pid")
        batch_op.drop_column("host")
