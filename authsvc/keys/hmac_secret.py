"""``hmac_secret``: a shared secret verifying HS256/384/512 only."""

from __future__ import annotations

from joserfc.jwk import OctKey

from authsvc.keys.base import KeyError_, VerificationKey, allowed_algorithms, key_label
from authsvc.keys.fixed import FixedKeyProvider
from authsvc.plugins import PluginContext


class HmacSecretProvider(FixedKeyProvider):
    @classmethod
    def from_config(cls, context: PluginContext) -> HmacSecretProvider:
        try:
            key = _secret_key(context.jwt.hmac_secret, context.jwt.key_id or None)
            algs = allowed_algorithms(key, key.kid, context.jwt.algorithms)
        except KeyError_ as exc:
            raise KeyError_(context.problem("hmac_secret", str(exc))) from None
        return cls({key.kid: VerificationKey(key.kid, key, algs)}, "hmac_secret")


def _secret_key(value: str, kid: str | None) -> OctKey:
    if not value:
        raise KeyError_("is empty")
    secret = value.encode()
    if len(secret) < 32:
        # Checked before joserfc, which only warns about short secrets.
        raise KeyError_(
            f"{key_label(kid)}: HMAC secret of {len(secret)} bytes is too short (at least 32)"
        )
    if b"-----BEGIN" in secret or secret.startswith((b"ssh-", b"ecdsa-")):
        raise KeyError_(
            "not usable as a shared secret: it looks like a key "
            "(configure a public key with key_file)"
        )
    try:
        return OctKey.import_key(secret, {"kid": kid} if kid else None)
    except ValueError as exc:
        # joserfc refuses a PEM public key as an HMAC secret (the RS/HS confusion).
        raise KeyError_(f"not usable as a shared secret: {exc}") from None
