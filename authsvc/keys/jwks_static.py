"""``jwk_set_file`` / ``jwk_set_value``: a key set fixed at start-up.

Unlike a fetched set, a configured set is the operator's own: any key in it
that we refuse is a start-up error, not a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

from authsvc.keys.base import KeyError_, VerificationKey, b64decode_setting
from authsvc.keys.fixed import FixedKeyProvider
from authsvc.keys.jwks import parse_key_set
from authsvc.plugins import PluginContext

log = logging.getLogger(__name__)


class StaticJwksProvider(FixedKeyProvider):
    @classmethod
    def from_config(cls, context: PluginContext) -> StaticJwksProvider:
        return cls.file_or_value(
            lambda: _read(context),
            context.section,
            "jwk_set_file",
            context.jwt.jwk_set_file,
            "jwk_set_value",
        )


def _read(context: PluginContext) -> dict[str | None, VerificationKey]:
    """The set of ``jwk_set_file`` / ``jwk_set_value``: every key usable, or KeyError_."""
    jwt = context.jwt
    kind = "jwk_set_file" if jwt.jwk_set_file else "jwk_set_value"
    try:
        if jwt.jwk_set_file:
            document = Path(jwt.jwk_set_file).read_bytes()
        else:
            document = b64decode_setting(jwt.jwk_set_value)
        parsed = parse_key_set(document, jwt.algorithms)
        if parsed.refused:
            raise KeyError_("; ".join(parsed.refused))
        if not parsed.keys and parsed.skipped:
            raise KeyError_("the key set holds no usable key: " + "; ".join(parsed.skipped))
        if not parsed.keys:
            raise KeyError_("the key set holds no key")
    except KeyError_ as exc:
        raise KeyError_(context.problem(kind, str(exc))) from None
    for line in parsed.skipped:
        log.warning("[%s] %s: %s; key skipped", context.section, kind, line)
    return dict(parsed.keys)
