"""What authsvc publishes about its keys: ``/.well-known/jwks.json`` and its discovery document.

Verifiers cache the JWKS (``max-age``), so a rotation publishes the new key
beside the old one (``previous_key_files``) for at least that long.
"""

from __future__ import annotations

import json
from typing import Any

from authsvc.signing.keys import KeyRing

JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_CACHE_CONTROL = "public, max-age=300"
"""How long a verifier may keep the JWKS: the least time a retired key stays published."""


def jwks_document(ring: KeyRing) -> bytes:
    """The JWKS: the current key first, then every previous key; public halves only."""
    return json.dumps({"keys": [dict(jwk) for jwk in ring.published]}).encode()


def discovery_document(issuer: str, root_url: str) -> dict[str, Any]:
    """OpenID Connect Discovery's two members a verifier of our JWTs needs."""
    return {"issuer": issuer, "jwks_uri": root_url.rstrip("/") + JWKS_PATH}
