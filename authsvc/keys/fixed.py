"""Key sets fixed by the configuration: a PEM key, a JWKS file or value, an HMAC secret.

The three configured sources differ only in how they read their keys; once
read, they answer from one dict and describe themselves alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authsvc.keys.base import VerificationKey


class FixedKeyProvider:
    """Keys read at start-up: KeyProvider, KeyIds and KeyDescription.

    Subclasses provide ``from_config``; ``source`` is what /api/admin/keys shows
    of where the keys came from, starting with the config key that set them
    (``key_file /etc/keys/idp.pem``).
    """

    def __init__(self, keys: Mapping[str | None, VerificationKey], source: str) -> None:
        self._keys = dict(keys)
        self._source = source
        self._kind = source.split()[0] if source else ""

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str | None]:
        return list(self._keys)

    def refresh(self) -> None:
        """Fixed keys change only with a restart."""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self._kind,
            "source": self._source,
            "keys": [
                {"kid": k.kid, "kty": k.kind, "algorithms": sorted(k.algorithms)}
                for k in self._keys.values()
            ],
        }
