"""Parsing a JSON Web Key Set into verification keys, under our key policy.

Shared by every JWKS source (file, value, URL). A set is a mapping kid →
key; a kid-less key is stored under None and matches only kid-less tokens.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, OctKey

from authsvc.keys.base import (
    KeyError_,
    KeySkipped,
    VerificationKey,
    allowed_algorithms,
    key_label,
)


@dataclass(frozen=True)
class ParsedKeySet:
    keys: Mapping[str | None, VerificationKey]
    refused: tuple[str, ...]
    """One line per key dropped, naming its kid and why."""
    skipped: tuple[str, ...] = ()
    """One line per key the ``algorithms`` allow-list leaves unusable (a warning, not an
    error: an identity provider's set often holds keys of other types)."""


def parse_key_set(
    document: bytes | str | Mapping[str, Any], allow_list: tuple[str, ...]
) -> ParsedKeySet:
    """Parse a JWKS; bad keys are dropped and reported, a bad document raises KeyError_."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyError_(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyError_('not a JSON Web Key Set: expected an object with a "keys" array')
    keys: dict[str | None, VerificationKey] = {}
    refused: list[str] = []
    skipped: list[str] = []
    seen: set[str | None] = set()
    for raw in document["keys"]:
        kid = raw.get("kid") if isinstance(raw, Mapping) else None
        if kid is not None and not isinstance(kid, str):
            refused.append(f"key {kid!r}: kid must be a string")
            continue
        label = key_label(kid)
        if kid in seen:
            keys.pop(kid, None)
            refused.append(f"{label}: duplicate kid, every key with it is refused")
            continue
        seen.add(kid)
        try:
            if not isinstance(raw, Mapping):
                raise KeyError_(f"{label}: not a JSON object")
            _precheck(raw, label)
            key = JWKRegistry.import_key(dict(raw))
            if key.is_private and not isinstance(key, OctKey):
                raise KeyError_(f"{label}: is a private key; publish the public key")
            algs = allowed_algorithms(key, kid, allow_list)
        except KeySkipped as exc:
            skipped.append(str(exc))
            continue
        except KeyError_ as exc:
            refused.append(str(exc))
            continue
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            refused.append(f"{label}: not a valid JWK: {exc}")
            continue
        keys[kid] = VerificationKey(kid, key, algs)
    kinds = {isinstance(k.key, OctKey) for k in keys.values()}
    if len(kinds) > 1:
        raise KeyError_("the key set mixes symmetric (oct) and asymmetric keys")
    return ParsedKeySet(keys, tuple(refused), tuple(skipped))


def _b64_len(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return None


def _precheck(raw: Mapping[str, Any], label: str) -> None:
    """Refuse short RSA moduli and HMAC secrets before joserfc sees them.

    joserfc only *warns* about them; its warning would reach stderr on every
    refresh (or escape as an exception where warnings are errors), while our
    policy refuses them anyway, with a reason naming the key.
    """
    if raw.get("kty") == "RSA":
        size = _b64_len(raw.get("n"))
        if size is not None and size * 8 < 2040:
            raise KeyError_(f"{label}: RSA modulus of {size * 8} bits is too short (at least 2048)")
    elif raw.get("kty") == "oct":
        size = _b64_len(raw.get("k"))
        if size is not None and 0 < size < 32:  # empty: joserfc refuses it outright
            raise KeyError_(f"{label}: HMAC secret of {size} bytes is too short (at least 32)")
