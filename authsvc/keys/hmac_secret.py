"""``hmac_secret``: a shared secret verifying HS256/384/512 only."""

from __future__ import annotations

from joserfc.jwk import OctKey

from authsvc.keys.base import KeyError_, VerificationKey, allowed_algorithms, key_label
from authsvc.keys.fixed import FixedKeyProvider
from authsvc.plugins import PluginContext


class HmacSecretProvider(FixedKeyProvider):
    @classmethod
    def from_config(cls, context: PluginContext) -> HmacSecretProvider:
        jwt = context.jwt
        blame = f"[{context.section}] hmac_secret"
        kid = jwt.key_id or None
        if not jwt.hmac_secret:
            raise KeyError_(f"{blame}: is empty")
        secret = jwt.hmac_secret.encode()
        if len(secret) < 32:
            # Checked before joserfc, which only warns about short secrets.
            raise KeyError_(
                f"{blame}: {key_label(kid)}: HMAC secret of {len(secret)} bytes "
                "is too short (at least 32)"
            )
        if b"-----BEGIN" in secret or secret.startswith((b"ssh-", b"ecdsa-")):
            raise KeyError_(
                f"{blame}: not usable as a shared secret: it looks like a key "
                "(configure a public key with key_file)"
            )
        try:
            key = OctKey.import_key(secret, {"kid": kid} if kid else None)
            algs = allowed_algorithms(key, kid, jwt.algorithms)
        except KeyError_ as exc:
            raise KeyError_(f"{blame}: {exc}") from None
        except ValueError as exc:
            # joserfc refuses a PEM public key as an HMAC secret (the RS/HS confusion).
            raise KeyError_(f"{blame}: not usable as a shared secret: {exc}") from None
        return cls({kid: VerificationKey(kid, key, algs)}, "hmac_secret")
