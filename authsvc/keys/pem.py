"""``key_file`` / ``key_value``: one PEM public key (RSA, EC, Ed25519) or X.509 certificate.

Grafana refuses certificates; we take the certificate's public key, because
identity providers (ADFS, Entra ID) publish signing certificates, not keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from authsvc.keys.base import KeyError_, VerificationKey, allowed_algorithms, b64decode_setting
from authsvc.keys.fixed import FixedKeyProvider
from authsvc.plugins import PluginContext


def load_pem_key(pem: bytes, kid: str | None) -> Key:
    """A joserfc key from PEM ``PUBLIC KEY``, ``RSA PUBLIC KEY`` or ``CERTIFICATE``."""
    if b"PRIVATE KEY-----" in pem:
        raise KeyError_("is a private key; configure the public key")
    params = {"kid": kid} if kid else None
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            native: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            native = load_pem_public_key(pem)
    except ValueError as exc:
        raise KeyError_(f"not a PEM public key or certificate: {exc}") from None
    for cls in (RSAKey, ECKey, OKPKey):
        if cls.binding.check_cryptography_key(native):
            key: Key = cls(native, native, params)  # type: ignore[arg-type]
            return key
    raise KeyError_(f"unsupported public key type {type(native).__name__}")


class PemKeyProvider(FixedKeyProvider):
    """A single fixed public key; ``key_id`` is its kid."""

    @classmethod
    def from_config(cls, context: PluginContext) -> PemKeyProvider:
        return cls.file_or_value(
            lambda: _read(context), context.section, "key_file", context.jwt.key_file, "key_value"
        )


def _read(context: PluginContext) -> dict[str | None, VerificationKey]:
    """The one key of ``key_file`` / ``key_value``; KeyError_ blamed on the key that set it."""
    jwt = context.jwt
    kid = jwt.key_id or None
    kind = "key_file" if jwt.key_file else "key_value"
    try:
        if jwt.key_file:
            pem = Path(jwt.key_file).read_bytes()
        elif "-----BEGIN" in jwt.key_value:  # the PEM itself, as a """triple-quoted""" value
            pem = jwt.key_value.strip().encode()
        else:
            pem = b64decode_setting(jwt.key_value)
        key = load_pem_key(pem, kid)
        algs = allowed_algorithms(key, kid, jwt.algorithms)
    except KeyError_ as exc:
        raise KeyError_(context.problem(kind, str(exc))) from None
    return {kid: VerificationKey(kid, key, algs)}
