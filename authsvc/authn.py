"""The request pipeline, in one visible order: extract → verify → map claims.

(Provisioning and sessions join in the users issue.) Each step fails with its
own error class; nothing here touches the disk or the network except a key
provider's bounded refresh on an unknown kid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Request

from authsvc.config import JWTSettings
from authsvc.errors import InvalidToken
from authsvc.identity import ClaimsMapper, Identity
from authsvc.verifier import VerifiedToken, Verifier, fingerprint

log = logging.getLogger(__name__)

QUERY_PARAM = "auth_token"


@dataclass(frozen=True, slots=True)
class JWTResult:
    token: VerifiedToken
    identity: Identity


def _strip_bearer(value: str) -> str:
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return "" if value.lower() == "bearer" else value


class JWTAuthenticator:
    """JWTs in ``header_name`` (or ``?auth_token=`` with ``url_login``) → Identity."""

    def __init__(self, settings: JWTSettings, verifier: Verifier, mapper: ClaimsMapper) -> None:
        self.settings = settings
        self.verifier = verifier
        self.mapper = mapper

    def extract(self, request: Request) -> str | None:
        """The presented token, or None. Two different tokens are refused, not chosen between."""
        header = _strip_bearer(request.headers.get(self.settings.header_name, ""))
        query = ""
        if self.settings.url_login:
            query = _strip_bearer(request.args.get(QUERY_PARAM, ""))
        if header and query and header.rstrip("=") != query.rstrip("="):
            raise InvalidToken(
                f"two different tokens: one in header {self.settings.header_name}, "
                f"one in query parameter {QUERY_PARAM}"
            )
        return header or query or None

    def authenticate(self, request: Request) -> JWTResult | None:
        token = self.extract(request)
        if token is None:
            return None
        try:
            verified = self.verifier.verify(token)
            identity = self.mapper.identity(verified.claims)
        except InvalidToken as exc:
            log.info("token refused", extra={"token": fingerprint(token), "reason": exc.reason})
            raise
        return JWTResult(verified, identity)
