"""a hold's deadline in 64 bits (a 32-bit unix time ends in 2038)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
