"""checkpoints: snapshots of an agent's workspace (issue 19)

One row per checkpoint: which container and task, the backend's reference (`sha256:<manifest>` in
the local archive, a Modal image id), when, why (trigger), size, file count, note and actor.

Revision ID: 0006_checkpoints
Revises: 0005_pg_containers_fillfactor
Create Date: 2026-11-30 03:20:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import parhelia.state.models

revision = "0006_checkpoints"
down_revision = "0005_pg_containers_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("container_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("task_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("backend", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", parhelia.state.models.UTCDateTime(), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_checkpoints_container_created", "checkpoints", ["container_id", "created_at"]
    )
    op.create_index("ix_checkpoints_task_created", "checkpoints", ["task_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_checkpoints_task_created", table_name="checkpoints")
    op.drop_index("ix_checkpoints_container_created", table_name="checkpoints")
    op.drop_table("checkpoints")
