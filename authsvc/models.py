"""The tables: users, their links to identity-provider subjects, and sessions.

Times are UNIX seconds (floats) so that one injectable clock drives every
expiry check on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from authsvc.identifiers import unique_key

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person or service account. Roles are global: there are no orgs.

    ``login_key`` and ``email_key`` hold what makes two logins (emails) one:
    the hash of their NFKC case-fold (``authsvc.identifiers.unique_key``).
    Their unique indexes, not a read before the write, keep ``alice`` and
    ``Alice`` from becoming two accounts. They follow ``login``/``email`` on
    every assignment.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    login_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    email_key: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=None)
    name: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default="Viewer")
    is_server_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_module: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    @validates("login")
    def _set_login(self, _name: str, value: str) -> str:
        self.login_key = unique_key(value)
        return value

    @validates("email")
    def _set_email(self, _name: str, value: str | None) -> str | None:
        self.email_key = unique_key(value) if value else None
        return value


class AuthLink(Base):
    """Ties (provider, subject) — e.g. ("jwt", token ``sub``) — to one user."""

    __tablename__ = "auth_links"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)


class Session(Base):
    """A login session. Only SHA-256 hashes of its tokens are stored.

    ``prev_token_hash`` keeps the token replaced by the last rotation working
    until ``prev_valid_until`` so that concurrent requests do not fail.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_expiry", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prev_token_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    prev_valid_until: Mapped[float | None] = mapped_column(Float, default=None)
    auth_module: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(String(255), default="")
    """The identity-provider subject the session was started for (X-Auth-Subject)."""
    issuer: Mapped[str] = mapped_column(String(64), default="jwt", server_default="jwt")
    """The issuer whose token started the session."""
    scope: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """That token's scope; NULL when it was unscoped."""
    created_at: Mapped[float] = mapped_column(Float)
    rotated_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    """Absolute end: login time + maximum lifetime, or the token's exp if sooner."""
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
