"""``jwk_set_file`` / ``jwk_set_value``: a key set fixed at start-up.

Unlike a fetched set, a configured set is the operator's own: any key in it
that we refuse is a start-up error, not a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authsvc.keys.base import KeyError_, VerificationKey, b64decode_setting
from authsvc.keys.jwks import parse_key_set
from authsvc.plugins import PluginContext


class StaticJwksProvider:
    def __init__(self, keys: dict[str | None, VerificationKey], source: str) -> None:
        self._keys = keys
        self._source = source

    @classmethod
    def from_config(cls, context: PluginContext) -> StaticJwksProvider:
        jwt = context.settings.jwt
        if jwt.jwk_set_file:
            name, document = "jwk_set_file", Path(jwt.jwk_set_file).read_bytes()
        else:
            name = "jwk_set_value"
            document = b64decode_setting(jwt.jwk_set_value, "[auth.jwt] jwk_set_value")
        try:
            parsed = parse_key_set(document, jwt.algorithms)
        except KeyError_ as exc:
            raise KeyError_(f"[auth.jwt] {name}: {exc}") from None
        if parsed.refused:
            raise KeyError_(f"[auth.jwt] {name}: " + "; ".join(parsed.refused))
        if not parsed.keys:
            raise KeyError_(f"[auth.jwt] {name}: the key set holds no key")
        source = f"{name} {jwt.jwk_set_file}" if jwt.jwk_set_file else name
        return cls(dict(parsed.keys), source)

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str | None]:
        return list(self._keys)

    def refresh(self) -> None:
        """Fixed keys change only with a restart."""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self._source.split()[0],
            "source": self._source,
            "keys": [
                {"kid": k.kid, "kty": k.kind, "algorithms": sorted(k.algorithms)}
                for k in self._keys.values()
            ],
        }
