"""Signed assertions: the upstream one on /api/auth/verify, and outbound ones per integration.

The upstream assertion (CONTRACT §5 ``[upstream_assertion]``) lets the service
behind a forward-auth proxy verify who the caller is instead of trusting bare
``X-Auth-*`` headers. It rides on every 200 of /api/auth/verify, so it is
cached per caller: the same caller gets the same JWT until 80 % of its
lifetime has passed, and one signature serves many requests.

An outbound assertion (``[assertion.NAME]``) is what an integration asks for
(Aisera's JWT auth type, an Entra ID certificate ``client_assertion``): fresh
``jti``, ``iat`` and ``exp`` each time, never cached.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from authsvc.config import AssertionSettings, UpstreamAssertionSettings
from authsvc.errors import Forbidden
from authsvc.identity import role_at_least
from authsvc.lru import LRUCache
from authsvc.signing.keys import KeyRing, SigningKey

if TYPE_CHECKING:
    from authsvc.authn.base import Caller
    from authsvc.users import UserRecord

log = logging.getLogger(__name__)

RENEW_AFTER = 0.8
"""Share of an upstream assertion's lifetime after which a caller gets a fresh one."""
CACHE_ENTRIES = 10_000
CACHE_BYTES = 32 << 20
"""The upstream assertion cache's bounds (CONTRACT §7: every per-token cache is bounded)."""
REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


def new_jti() -> str:
    """128 random bits: unique per assertion, so a receiver can refuse a replay."""
    return secrets.token_urlsafe(16)


class _Cached(NamedTuple):
    token: str
    renew_at: float
    signer: SigningKey
    """The key it was signed with: a re-read key file makes every cached assertion stale."""


class UpstreamAssertions:
    """The signed header every 200 of /api/auth/verify carries, one per caller, cached.

    ``header`` is on the forward-auth hot path (the Flask view and the WSGI fast
    path alike): a cache hit is a tuple hash and a dict lookup; only a new caller,
    or one whose assertion is 80 % through its lifetime, pays for a signature.
    """

    def __init__(
        self,
        settings: UpstreamAssertionSettings,
        issuer: str,
        ring: KeyRing,
        clock: Callable[[], float],
    ) -> None:
        self.header_name = settings.header_name
        self._settings = settings
        self._issuer = issuer
        self._ring = ring
        self._clock = clock
        self._cache: LRUCache[tuple[Any, ...], _Cached] = LRUCache(CACHE_ENTRIES, CACHE_BYTES)

    def header(self, caller: Caller) -> tuple[str, str]:
        """(header name, JWT) naming ``caller``; from the cache while it is fresh."""
        key = _caller_key(caller)
        now = self._clock()
        signer = self._ring.current
        hit = self._cache.get(key)
        if hit is not None and now < hit.renew_at and hit.signer is signer:
            return self.header_name, hit.token
        token, iat, exp = self._sign(caller, signer, now)
        renew_at = iat + RENEW_AFTER * (exp - iat)
        # What the entry keeps alive: the token, and the key's copy of the user's fields.
        self._cache.put(key, _Cached(token, renew_at, signer), 2 * len(token) + 256)
        return self.header_name, token

    def claims(self, caller: Caller, now: float) -> dict[str, Any]:
        """The assertion's claims at ``now`` (CONTRACT §5)."""
        user = caller.user
        iat = int(now)
        exp = iat + int(self._settings.lifetime)
        # Never past the inbound token's exp or the session's end: an upstream must not
        # be told of a caller longer than authsvc itself would vouch for it.
        if caller.jwt is not None and isinstance(caller.jwt.token.claims.get("exp"), int | float):
            exp = min(exp, int(caller.jwt.token.claims["exp"]))
        if caller.session is not None:
            exp = min(exp, int(caller.session.expires_at))
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._settings.audience,
            "sub": f"{caller.issuer}/{caller.subject}",
            "login": user.login,
            "email": user.email or "",
            "name": user.name,
            "role": user.role,
            "groups": list(user.groups),
            "idp": caller.issuer,
        }
        if caller.scope is not None:
            claims["scope"] = list(caller.scope)
        claims.update(iat=iat, exp=exp, jti=new_jti())
        return claims

    def _sign(self, caller: Caller, signer: SigningKey, now: float) -> tuple[str, int, int]:
        claims = self.claims(caller, now)
        return signer.sign(claims), claims["iat"], claims["exp"]


def _caller_key(caller: Caller) -> tuple[Any, ...]:
    """What makes two requests the same caller: credential, issuer, subject, scope and
    every user field the assertion carries — a changed role or group is a new key, so
    the next request is told at once."""
    user = caller.user
    if caller.jwt is not None:
        credential: Any = caller.jwt.token.digest
    elif caller.session is not None:
        credential = (caller.session.id, caller.session.expires_at)
    else:
        credential = None
    return (
        credential,
        caller.issuer,
        caller.subject,
        caller.scope,
        user.id,
        user.login,
        user.email,
        user.name,
        user.role,
        tuple(user.groups),
    )


class Minted(NamedTuple):
    """An outbound assertion and how many seconds it lives."""

    token: str
    expires_in: int


class OutboundAssertion:
    """``[assertion.NAME]``: who may obtain it, and the JWT it mints each time."""

    def __init__(
        self, settings: AssertionSettings, ring: KeyRing, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.ring = ring
        self._clock = clock

    @property
    def name(self) -> str:
        return self.settings.name

    def admit(self, user: UserRecord) -> None:
        """Forbidden unless ``user`` has ``min_role`` and one of ``groups`` (as ?role=, ?group=)."""
        s = self.settings
        if s.min_role and not role_at_least(user.role, s.min_role):
            raise Forbidden(
                f"role {user.role} is below the {s.min_role} that assertion {s.name!r} requires"
            )
        if s.groups and not set(s.groups) & set(user.groups):
            raise Forbidden(
                f"assertion {s.name!r} is for members of {', '.join(s.groups)} "
                f"(member of: {', '.join(user.groups) or 'none'})"
            )

    def for_caller(self, caller: Caller) -> Minted:
        """The assertion ``caller`` asked for: ``sub`` the section's subject or the caller's
        login, the UPN claim the caller's email (else login). Forbidden when gated out."""
        user, s = caller.user, self.settings
        self.admit(user)
        extra = {s.upn_claim: user.email or user.login} if s.upn_claim else {}
        return self._mint(s.subject or user.login, extra, s.lifetime)

    def mint(
        self,
        subject: str | None = None,
        claims: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> Minted:
        """``authsvc assertion mint``: machine to machine, no caller.

        ``sub`` is ``subject``, else the section's ``subject``, else its issuer: a
        certificate ``client_assertion`` has ``iss`` = ``sub`` = the client id.
        """
        extra = dict(claims or {})
        taken = sorted(REGISTERED_CLAIMS & set(extra))
        if taken:
            raise ValueError(
                f"--claim cannot set {', '.join(taken)}: use --subject, --ttl or the "
                f"[{self.settings.section}] section"
            )
        if ttl is not None and ttl <= 0:
            raise ValueError("--ttl must be above 0")
        s = self.settings
        return self._mint(
            subject or s.subject or s.issuer, extra, s.lifetime if ttl is None else ttl
        )

    def _mint(self, subject: str, extra: Mapping[str, Any], lifetime: float) -> Minted:
        s = self.settings
        iat = int(self._clock())
        exp = iat + max(1, int(lifetime))
        claims = {
            **s.claims,
            **extra,
            "iss": s.issuer,
            "sub": subject,
            "aud": s.audience,
            "iat": iat,
            "exp": exp,
            "jti": new_jti(),
        }
        return Minted(self.ring.current.sign(claims), exp - iat)
