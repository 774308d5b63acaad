"""key scopes, parent keys and delegated credit limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ALL_SCOPES = "generate read keys:manage billing:read"  # what every existing key could do


def upgrade() -> None:
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scopes",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default=ALL_SCOPES,
            )
        )
        batch_op.add_column(
            sa.Column("parent_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("delegated", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_apikey_parent_id"), ["parent_id"], unique=False)
        batch_op.drop_constraint("key_within_limit", type_="check")
        batch_op.create_check_constraint(
            "key_within_limit", "credit_limit IS NULL OR spent + delegated <= credit_limit"
        )
    # The defaults served the existing rows; new rows get theirs from the model.
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.alter_column("scopes", server_default=None)
        batch_op.alter_column("delegated", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.drop_constraint("key_within_limit", type_="check")
        batch_op.create_check_constraint(
            "key_within_limit", "credit_limit IS NULL OR spent <= credit_limit"
        )
        batch_op.drop_index(batch_op.f("ix_apikey_parent_id"))
        batch_op.drop_column("delegated")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("scopes")
