"""``jwk_set_file`` / ``jwk_set_value``: a key set fixed at start-up.

Unlike a fetched set, a configured set is the operator's own: any key in it
that we refuse is a start-up error, not a warning.
"""

from __future__ import annotations

from pathlib import Path

from authsvc.keys.base import KeyError_, b64decode_setting
from authsvc.keys.fixed import FixedKeyProvider
from authsvc.keys.jwks import parse_key_set
from authsvc.plugins import PluginContext


class StaticJwksProvider(FixedKeyProvider):
    @classmethod
    def from_config(cls, context: PluginContext) -> StaticJwksProvider:
        jwt = context.jwt
        section = context.section
        if jwt.jwk_set_file:
            kind, document = "jwk_set_file", Path(jwt.jwk_set_file).read_bytes()
        else:
            kind = "jwk_set_value"
            document = b64decode_setting(jwt.jwk_set_value, f"[{section}] jwk_set_value")
        try:
            parsed = parse_key_set(document, jwt.algorithms)
        except KeyError_ as exc:
            raise KeyError_(f"[{section}] {kind}: {exc}") from None
        if parsed.refused:
            raise KeyError_(f"[{section}] {kind}: " + "; ".join(parsed.refused))
        if not parsed.keys:
            raise KeyError_(f"[{section}] {kind}: the key set holds no key")
        source = f"{kind} {jwt.jwk_set_file}" if jwt.jwk_set_file else kind
        return cls(parsed.keys, source)
