"""The session-store slot. Stores keep records; ``lifecycle.py`` decides what they mean.

A session token is 32 random bytes (URL-safe base64 in the cookie); stores
keep only its SHA-256, so a copy of the store lets nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from authsvc.plugins import PluginContext
    from authsvc.users import UserRecord


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """What a login knows of the session it starts; the store adds id, token and times."""

    user_id: int
    auth_module: str
    subject: str = ""
    """The identity-provider subject of the token that started it (X-Auth-Subject)."""
    user_agent: str = ""
    client_ip: str = ""
    issuer: str = "jwt"
    """The issuer whose token started the session (X-Auth-Issuer, ``?issuer=``)."""
    scope: tuple[str, ...] | None = None
    """That token's scope; None when it was unscoped (``?scope=``, X-Auth-Scope)."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: int
    auth_module: str
    created_at: float
    rotated_at: float
    seen_at: float
    expires_at: float
    """Absolute end (maximum lifetime, or the token's exp if sooner)."""
    prev_valid_until: float | None = None
    matched_previous: bool = False
    """Found by the token the last rotation replaced (valid only until prev_valid_until)."""
    user_agent: str = ""
    client_ip: str = ""
    subject: str = ""
    issuer: str = "jwt"
    scope: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userId": self.user_id,
            "authModule": self.auth_module,
            "createdAt": self.created_at,
            "rotatedAt": self.rotated_at,
            "seenAt": self.seen_at,
            "expiresAt": self.expires_at,
            "userAgent": self.user_agent,
            "clientIp": self.client_ip,
            "subject": self.subject,
            "issuer": self.issuer,
            "scope": list(self.scope) if self.scope is not None else None,
        }


@runtime_checkable
class SessionStore(Protocol):
    """A plugin in ``authsvc.session_stores``: keeps session records, decides nothing."""

    @classmethod
    def from_config(cls, context: PluginContext) -> Self: ...

    def create(
        self, new: NewSession, *, now: float, expires_at: float, tx: Any = None
    ) -> tuple[str, SessionRecord]:
        """A new session; returns the token (for the cookie) and the record.

        ``tx`` is the login's SQLAlchemy transaction: a store that lives in the
        same database joins it, so user, link and session commit together.
        """
        ...

    def lookup(self, token: str) -> SessionRecord | None:
        """The session whose current or previous token is ``token``, expired or not."""
        ...

    def rotate(self, record: SessionRecord, token: str, now: float, grace: float) -> str | None:
        """Replace ``token`` by a new one; the old stays valid for ``grace`` seconds.

        Returns None when a concurrent request rotated first.
        """
        ...

    def touch(self, record: SessionRecord, now: float) -> None:
        """Record activity (for the idle limit)."""
        ...

    def revoke(self, session_id: str) -> bool: ...

    def revoke_user(self, user_id: int) -> int: ...

    def list(self, user_id: int | None = None) -> Sequence[SessionRecord]: ...

    def purge(self, now: float, idle: float) -> int:
        """Delete sessions past their absolute end or idle past ``idle``; returns the count."""
        ...


@runtime_checkable
class SessionUserLookup(Protocol):
    """Optional: a store beside the users reads a session and its user at once.

    A cookie request then costs one read instead of two (the session, then its
    user); the user is None when it no longer exists.
    """

    def lookup_with_user(self, token: str) -> tuple[SessionRecord, UserRecord | None] | None: ...
