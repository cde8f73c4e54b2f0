"""``GET /.well-known/jwks.json`` and ``/.well-known/openid-configuration`` (CONTRACT §5).

What a verifier of authsvc's assertions fetches, without authentication; both
are 404 ``api.not_found`` while signing is off (``[signing] key_file`` empty).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from authsvc.errors import NotFound
from authsvc.service import Service, service
from authsvc.signing.jwks import (
    DISCOVERY_PATH,
    JWKS_CACHE_CONTROL,
    JWKS_PATH,
    discovery_document,
    jwks_document,
)
from authsvc.signing.keys import KeyRing

bp = Blueprint("well_known", __name__)


def _signing_ring(svc: Service) -> KeyRing:
    ring = svc.signing.ring if svc.signing is not None else None
    if ring is None:
        raise NotFound("signing is off ([signing] key_file is empty)")
    return ring


@bp.get(JWKS_PATH)
def jwks() -> Response:
    response = Response(jwks_document(_signing_ring(service())), mimetype="application/json")
    response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
    return response


@bp.get(DISCOVERY_PATH)
def openid_configuration() -> Response:
    svc = service()
    _signing_ring(svc)
    assert svc.signing is not None
    response = jsonify(discovery_document(svc.signing.issuer, svc.signing.root_url))
    response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
    return response
