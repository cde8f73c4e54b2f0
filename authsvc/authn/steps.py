"""The post-authentication steps, in their one order: provision → sync → disabled check → session.

A JWT client proves an Identity; these steps turn it into a user inside one
database transaction (the caller commits user, link and session together,
or nothing). ``POST_AUTH`` runs for every JWT request, ``start_session``
after it for a login.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from authsvc.authn.base import JWTResult
from authsvc.errors import IdentityDisabled, InvalidToken
from authsvc.models import User
from authsvc.sessions.base import NewSession, SessionRecord
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.users import UserRecord, UserStore


@dataclass
class Login:
    """One request's way through the steps."""

    result: JWTResult
    users: UserStore
    user: User | None = None
    session: tuple[str, SessionRecord] | None = None
    """The new session's token and record (logins only)."""

    def record(self) -> UserRecord:
        assert self.user is not None
        return UserRecord.of(self.user)

    @property
    def signed_up(self) -> bool:
        """The provisioner created the user in this transaction."""
        return self.user is not None and self.user.id in self.users.created


def provision(login: Login) -> None:
    """The issuer's provisioner finds, adopts or creates the user."""
    login.user = login.result.issuer.provisioner.provision(login.result.identity, login.users)


def sync(login: Login) -> None:
    """A found user is brought in line with the token (a created one already is)."""
    assert login.user is not None
    if login.user.id not in login.users.created:
        login.users.sync(login.user, login.result.identity)


def check_disabled(login: Login) -> None:
    assert login.user is not None
    refuse_disabled(login.user)


def refuse_disabled(user: User | UserRecord) -> None:
    """A disabled user is refused on every path: JWT, session, fast path."""
    if user.disabled:
        raise IdentityDisabled(f"user {user.login!r} (id {user.id}) is disabled")


def refuse_issuer(issuer: str, allowed: Collection[str] | None) -> None:
    """``?issuer=a&issuer=b``: only these issuers may authenticate this request."""
    if allowed is not None and issuer not in allowed:
        raise InvalidToken(
            f"issuer {issuer!r} is not allowed here (allowed: {', '.join(sorted(allowed))})"
        )


POST_AUTH = (provision, sync, check_disabled)


def start_session(
    login: Login, sessions: SessionLifecycle, *, user_agent: str, client_ip: str, tx: Any
) -> None:
    """A login's last step: the session, in the same transaction as the user."""
    assert login.user is not None
    login.session = session_for(
        login.result, login.user.id, sessions, user_agent=user_agent, client_ip=client_ip, tx=tx
    )


def session_for(
    result: JWTResult,
    user_id: int,
    sessions: SessionLifecycle,
    *,
    user_agent: str,
    client_ip: str,
    tx: Any,
) -> tuple[str, SessionRecord]:
    new = NewSession(
        user_id=user_id,
        auth_module=result.issuer.auth_module,
        subject=result.identity.subject,
        user_agent=user_agent,
        client_ip=client_ip,
        issuer=result.issuer.name,
        scope=result.identity.scope,
    )
    # The claim itself: a cached verification's expires_at adds the leeway.
    end_by = _exp(result) if result.issuer.settings.session_lifetime_from_token else None
    return sessions.start(new, end_by=end_by, tx=tx)


def _exp(result: JWTResult) -> float | None:
    exp = result.token.claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
