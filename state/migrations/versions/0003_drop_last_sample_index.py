"""drop ix_containers_last_sample

Every heartbeat cycle rewrote this index's entry for every sampled container (SQLite rewrites an
index entry whenever its column is in an UPDATE's SET list), and its only user,
`Store.prune_heartbeats`, runs once a cycle over at most a few thousand container rows, which a
scan reads in well under a millisecond.

Revision ID: 0003_drop_last_sample_index
Revises: 0002_container_last_sample
Create Date: 2026-11-25 00:20:00.000000
"""

from alembic import op

revision = "0003_drop_last_sample_index"
down_revision = "0002_container_last_sample"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_index("ix_containers_last_sample")


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.create_index("ix_containers_last_sample", ["last_sample_at"], unique=False)
