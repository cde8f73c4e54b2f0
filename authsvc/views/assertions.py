"""``POST /api/auth/assertion/NAME``: an outbound assertion for the caller (CONTRACT §5).

The caller proves who it is as for ``/api/user`` (session cookie or JWT; a
cookie request from another origin is refused, CSRF); ``[assertion.NAME]``'s
``min_role`` and ``groups`` decide whether it may have the assertion.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from authsvc.errors import NotFound
from authsvc.service import service
from authsvc.views.login import current_caller

log = logging.getLogger(__name__)
bp = Blueprint("assertions", __name__)


@bp.post("/api/auth/assertion/<name>")
def mint(name: str) -> Response:
    svc = service()
    # Who asks comes first: an anonymous client learns nothing of which names exist.
    caller = current_caller()
    outbound = svc.signing.assertions.get(name) if svc.signing is not None else None
    if outbound is None:
        shown = "".join(c if c.isprintable() else "?" for c in name[:64])
        raise NotFound(f"no assertion {shown!r} is configured")
    minted = outbound.for_caller(caller)
    log.info(
        "assertion minted",
        extra={"assertion": name, "login": caller.user.login, "issuer": caller.issuer},
    )
    response = jsonify(
        {"assertion": minted.token, "token_type": "Bearer", "expires_in": minted.expires_in}
    )
    response.headers["Cache-Control"] = "no-store"
    return response
