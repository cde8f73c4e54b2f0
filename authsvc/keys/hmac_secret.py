"""``hmac_secret``: a shared secret verifying HS256/384/512 only."""

from __future__ import annotations

from typing import Any

from joserfc.jwk import OctKey

from authsvc.keys.base import KeyError_, VerificationKey, allowed_algorithms, key_label
from authsvc.plugins import PluginContext


class HmacSecretProvider:
    def __init__(self, key: VerificationKey) -> None:
        self._key = key

    @classmethod
    def from_config(cls, context: PluginContext) -> HmacSecretProvider:
        jwt = context.settings.jwt
        kid = jwt.key_id or None
        if not jwt.hmac_secret:
            raise KeyError_("[auth.jwt] hmac_secret: is empty")
        secret = jwt.hmac_secret.encode()
        if len(secret) < 32:
            # Checked before joserfc, which only warns about short secrets.
            raise KeyError_(
                f"[auth.jwt] hmac_secret: {key_label(kid)}: HMAC secret of {len(secret)} bytes "
                "is too short (at least 32)"
            )
        if b"-----BEGIN" in secret or secret.startswith((b"ssh-", b"ecdsa-")):
            raise KeyError_(
                "[auth.jwt] hmac_secret: not usable as a shared secret: it looks like a key "
                "(configure a public key with key_file)"
            )
        try:
            key = OctKey.import_key(secret, {"kid": kid} if kid else None)
            algs = allowed_algorithms(key, kid, jwt.algorithms)
        except KeyError_ as exc:
            raise KeyError_(f"[auth.jwt] hmac_secret: {exc}") from None
        except ValueError as exc:
            # joserfc refuses a PEM public key as an HMAC secret (the RS/HS confusion).
            raise KeyError_(
                f"[auth.jwt] hmac_secret: not usable as a shared secret: {exc}"
            ) from None
        return cls(VerificationKey(kid, key, algs))

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self._key if kid == self._key.kid else None

    def kids(self) -> list[str | None]:
        return [self._key.kid]

    def refresh(self) -> None:
        """A configured secret changes only with a restart."""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "hmac_secret",
            "source": "hmac_secret",
            "keys": [
                {"kid": self._key.kid, "kty": "oct", "algorithms": sorted(self._key.algorithms)}
            ],
        }
