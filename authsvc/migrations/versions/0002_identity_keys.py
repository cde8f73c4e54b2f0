"""identity keys: logins and emails unique by their NFKC case-fold

Revision ID: 0002
Revises: 0001

Adds ``users.login_key`` / ``users.email_key`` (the hash of the NFKC case-fold
of login and email) with unique indexes, back-filled from the rows already
there. Existing rows that are one login (or email) under that rule stop the
migration with a message naming them: an operator must rename or delete one
first, because the service would otherwise present two accounts as one.
Also widens login/email to 255 characters (CONTRACT §7's limit) and
auth_module to 64 (``authjwt.NAME`` for named issuers).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from authsvc.db import MigrationError
from authsvc.identifiers import unique_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _collisions(rows: list[tuple[int, str, str | None]]) -> list[str]:
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    found = []
    for user_id, login, email in rows:
        for column, value in (("login", login), ("email", email)):
            if not value:
                continue
            key = (column, unique_key(value))
            if key in seen:
                other_id, other = seen[key]
                found.append(
                    f"{column} {other!r} (user {other_id}) and {value!r} (user {user_id})"
                )
            else:
                seen[key] = (user_id, value)
    return found


def upgrade() -> None:
    bind = op.get_bind()
    # Checked before any change: SQLite runs DDL outside the migration's transaction.
    rows = [
        (r[0], r[1], r[2])
        for r in bind.execute(sa.text("SELECT id, login, email FROM users ORDER BY id"))
    ]
    clashes = _collisions(rows)
    if clashes:
        raise MigrationError(
            "cannot make logins and emails unique regardless of case: "
            + "; ".join(clashes[:20])
            + (f"; and {len(clashes) - 20} more" if len(clashes) > 20 else "")
            + ". Rename or delete one account of each pair "
            "(authsvc users ...), then start again."
        )
    op.add_column("users", sa.Column("login_key", sa.String(length=64), nullable=True))
    op.add_column("users", sa.Column("email_key", sa.String(length=64), nullable=True))
    if rows:
        bind.execute(
            sa.text("UPDATE users SET login_key = :lk, email_key = :ek WHERE id = :id"),
            [
                {"id": i, "lk": unique_key(login), "ek": unique_key(email) if email else None}
                for i, login, email in rows
            ],
        )
    # On SQLite a batch rebuilds the table (foreign keys are off while migrating, so no
    # link or session is cascaded away); on PostgreSQL it is plain ALTERs.
    with op.batch_alter_table("users") as batch:
        batch.alter_column("login_key", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("login", existing_type=sa.String(length=190), type_=sa.String(255))
        batch.alter_column("email", existing_type=sa.String(length=190), type_=sa.String(255))
        batch.alter_column(
            "auth_module", existing_type=sa.String(length=32), type_=sa.String(64)
        )
        batch.create_index("ix_users_login_key", ["login_key"], unique=True)
        batch.create_index("ix_users_email_key", ["email_key"], unique=True)
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column(
            "auth_module", existing_type=sa.String(length=32), type_=sa.String(64)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_email_key")
        batch.drop_index("ix_users_login_key")
        batch.drop_column("email_key")
        batch.drop_column("login_key")
