"""when billing's settled event was recorded on each task (credits_charged final)

Tasks finished (finished_at_ms set) before billing settled from the bus were settled then.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settled_at_ms", sa.BigInteger(), nullable=True))
    op.execute("UPDATE task SET settled_at_ms = finished_at_ms WHERE finished_at_ms IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("settled_at_ms")
