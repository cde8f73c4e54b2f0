"""drop columns nothing reads: users.last_seen_at, sessions.revoked_at

Revision ID: 0003
Revises: 0002

Nothing ever wrote them: sessions are deleted when revoked, and activity is
tracked per session (``sessions.seen_at``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On SQLite a batch rebuilds the table (foreign keys are off while migrating).
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_seen_at")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("revoked_at")


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("revoked_at", sa.Float(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.Float(), nullable=True))
