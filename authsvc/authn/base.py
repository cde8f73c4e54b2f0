"""The authentication clients' shared vocabulary: the Client protocol and who a caller is.

Grafana's authn service (``pkg/services/authn``) is the model: each way of
proving who a request is — a JWT from one issuer, a session cookie — is a
small client behind one interface; the service asks them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from werkzeug.wrappers import Request

from authsvc.identity import Identity
from authsvc.sessions.base import SessionRecord
from authsvc.users import UserRecord, auth_module
from authsvc.verifier import VerifiedToken

if TYPE_CHECKING:
    from authsvc.issuers import Issuer

_R_co = TypeVar("_R_co", covariant=True)


class Client(Protocol[_R_co]):
    """One way a request proves who it is."""

    name: str

    def credential(self, request: Request) -> str | None:
        """What the request presents to this client (a token, a cookie), or None.

        Reads the request only; nothing is trusted yet.
        """
        ...

    def authenticate(self, credential: str) -> _R_co:
        """Check the credential; the contract's error that says why not."""
        ...


@dataclass(frozen=True, slots=True)
class JWTResult:
    """A verified token, the identity its claims map to, and the issuer that verified it."""

    token: VerifiedToken
    identity: Identity
    issuer: Issuer


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, and how they proved it."""

    user: UserRecord
    via: str
    """``jwt`` or ``session``."""
    jwt: JWTResult | None = None
    session: SessionRecord | None = None
    new_session_token: str | None = None
    """Set when the session rotated: the response must carry it as the new cookie."""

    @property
    def subject(self) -> str:
        """The token's ``sub``; for a session, the ``sub`` of the token that created it."""
        if self.jwt is not None:
            return self.jwt.identity.subject
        return self.session.subject if self.session is not None else ""

    @property
    def issuer(self) -> str:
        """The issuer that authenticated the request (for a session: that started it)."""
        if self.jwt is not None:
            return self.jwt.issuer.name
        return self.session.issuer if self.session is not None else ""

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The token's scope (for a session: its token's); None when unscoped."""
        if self.jwt is not None:
            return self.jwt.identity.scope
        return self.session.scope if self.session is not None else None

    @property
    def forwarded(self) -> tuple[tuple[str, str], ...]:
        """``forward_claims`` headers; a session keeps no claims, so none."""
        return self.jwt.identity.forwarded if self.jwt is not None else ()

    def user_json(self) -> dict[str, Any]:
        """The user JSON of CONTRACT §3; ``authModule`` names the issuer that authenticated."""
        return {**self.user.to_json(), "authModule": auth_module(self.issuer)}
