"""heartbeats_staged: where SQLite gathers heartbeat samples before merging them into heartbeats

A heartbeat cycle inserted one sample per container into `heartbeats`, and each dirtied its
container's leaf of `ix_heartbeats_container_ts`: a page per container per cycle, written to the
WAL and checkpointed again every cycle. Samples now land in this table (same columns, no index)
and are merged into `heartbeats` in container order once thousands have gathered, so each leaf is
written once for many samples (`state/bulk.py`; bench/heartbeat_floor.py's "staging" floor).
History readers read both tables. PostgreSQL copies samples into `heartbeats` directly and leaves
this table empty.

Revision ID: 0008_heartbeats_staged
Revises: 0007_pg_heartbeat_check
Create Date: 2026-11-30 11:40:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import parhelia.state.models

revision = "0008_heartbeats_staged"
down_revision = "0007_pg_heartbeat_check"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeats_staged",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("container_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("ts", parhelia.state.models.UTCDateTime(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_mib", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        sa.Column("disk_percent", sa.Float(), nullable=True),
        sa.Column("uptime_seconds", sa.Float(), nullable=True),
        sa.Column("agent_alive", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["container_id"], ["containers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # staged samples are history: keep them in `heartbeats`
    op.execute(
        "INSERT INTO heartbeats (container_id, ts, cpu_percent, memory_mib, memory_percent, "
        "disk_percent, uptime_seconds, agent_alive) SELECT container_id, ts, cpu_percent, "
        "memory_mib, memory_percent, disk_percent, uptime_seconds, agent_alive "
        "FROM heartbeats_staged ORDER BY container_id, ts, id"
    )
    op.drop_table("heartbeats_staged")
