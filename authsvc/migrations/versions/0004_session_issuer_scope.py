"""sessions remember the issuer and scope of the token that started them

Revision ID: 0004
Revises: 0003

Sessions started before there were several issuers came from [auth.jwt]: the
issuer named ``jwt``, unscoped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("issuer", sa.String(length=64), nullable=False, server_default="jwt")
        )
        batch.add_column(sa.Column("scope", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("scope")
        batch.drop_column("issuer")
