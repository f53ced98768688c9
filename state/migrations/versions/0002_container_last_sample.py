"""containers keep their latest heartbeat sample

The dashboard showed each container's latest heartbeat through a correlated subquery into
`heartbeats` (one index search per container, every refresh). The sample now lives on the
container row, written by `Store.record_heartbeats` in the same statement that already updates
the heartbeat columns. Existing databases are backfilled from `heartbeats` here.

`ix_containers_last_heartbeat` goes: every heartbeat cycle rewrote its entry for every running
container, and no query uses it (running containers are found through `ix_containers_state`).

Revision ID: 0002_container_last_sample
Revises: 0001_initial
Create Date: 2026-11-24 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import parhelia.state.models

revision = "0002_container_last_sample"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

SAMPLE = {
    "last_sample_at": "ts",
    "last_cpu_percent": "cpu_percent",
    "last_memory_mib": "memory_mib",
    "last_memory_percent": "memory_percent",
    "last_agent_alive": "agent_alive",
}


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_sample_at", parhelia.state.models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("last_cpu_percent", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("last_memory_mib", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("last_memory_percent", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("last_agent_alive", sa.Boolean(), nullable=True))
        batch_op.create_index("ix_containers_last_sample", ["last_sample_at"], unique=False)
        batch_op.drop_index("ix_containers_last_heartbeat")

    # Backfill: each container's latest heartbeat by ts (the newest row on a tie), as the
    # dashboard's subquery chose it.
    containers = sa.table("containers", sa.column("id"), *(sa.column(c) for c in SAMPLE))
    heartbeats = sa.table(
        "heartbeats",
        sa.column("id"),
        sa.column("container_id"),
        *(sa.column(c) for c in SAMPLE.values()),
    )
    latest = (
        sa.select(heartbeats.c.id)
        .where(heartbeats.c.container_id == containers.c.id)
        .order_by(heartbeats.c.ts.desc(), heartbeats.c.id.desc())
        .limit(1)
        .correlate(containers)
        .scalar_subquery()
    )
    op.execute(
        containers.update().values(
            {
                dst: sa.select(heartbeats.c[src]).where(heartbeats.c.id == latest).scalar_subquery()
                for dst, src in SAMPLE.items()
            }
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.create_index("ix_containers_last_heartbeat", ["last_heartbeat_at"], unique=False)
        batch_op.drop_index("ix_containers_last_sample")
        batch_op.drop_column("last_agent_alive")
        batch_op.drop_column("last_memory_percent")
        batch_op.drop_column("last_memory_mib")
        batch_op.drop_column("last_cpu_percent")
        batch_op.drop_column("last_sample_at")
