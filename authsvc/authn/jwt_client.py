"""The JWT client of one issuer: its token from ``header_name`` (or ``?auth_token=``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request

from authsvc.authn.base import JWTResult
from authsvc.errors import InvalidToken
from authsvc.identity import Identity
from authsvc.lru import LRUCache
from authsvc.verifier import fingerprint

if TYPE_CHECKING:
    from authsvc.issuers import Issuer

log = logging.getLogger(__name__)

QUERY_PARAM = "auth_token"


def strip_bearer(value: str) -> str:
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return "" if value.lower() == "bearer" else value


class JWTClient:
    """Extracts and verifies one issuer's tokens and maps their claims to an Identity."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.name = f"jwt.{issuer.name}"
        self.header_name = issuer.settings.header_name
        # A verified token maps to the same identity every time: remembered beside the
        # verified-token cache (same bound on entries), so a repeated token maps once.
        self._identities: LRUCache[bytes, Identity] = LRUCache(
            issuer.settings.verified_cache_size, issuer.settings.verified_cache_max_bytes
        )

    def credential(self, request: Request, *, query: bool | None = None) -> str | None:
        """The presented token, or None. Two different tokens are refused, not chosen between.

        ``query`` forces reading (or ignoring) ``?auth_token=``; by default ``url_login``
        decides.
        """
        header = strip_bearer(request.headers.get(self.header_name, ""))
        from_query = ""
        if self.reads_query(query):
            from_query = strip_bearer(request.args.get(QUERY_PARAM, ""))
        if header and from_query and header.rstrip("=") != from_query.rstrip("="):
            raise InvalidToken(
                f"two different tokens: one in header {self.header_name}, "
                f"one in query parameter {QUERY_PARAM}"
            )
        return header or from_query or None

    def reads_query(self, query: bool | None = None) -> bool:
        """Whether ``credential`` reads ``?auth_token=`` (``query`` forces it either way)."""
        return self.issuer.settings.url_login if query is None else query

    def authenticate(self, credential: str) -> JWTResult:
        try:
            verified = self.issuer.verifier.verify(credential)
            identity = self._identities.get(verified.digest)
            if identity is None:
                identity = self.issuer.mapper.identity(verified.claims)
                # Bounded by bytes too: an identity holds at most what its token carried.
                self._identities.put(verified.digest, identity, len(credential) + 512)
        except InvalidToken as exc:
            log.info(
                "token refused",
                extra={
                    "token": fingerprint(credential),
                    "issuer": self.issuer.name,
                    "reason": exc.reason,
                },
            )
            raise
        return JWTResult(verified, identity, self.issuer)
