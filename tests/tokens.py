"""Signing helpers shared by the verifier tests: real keys, real tokens, key-source configs.

Keys are generated once per test session (RSA generation dominates the
run time). ``sign`` goes through joserfc's public ``jwt.encode``; ``forge``
signs any header and payload bytes with joserfc's algorithm models, for
tokens no well-behaved library would produce (``crit``, ``jku``, odd kids).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from authsvc.config import Settings
from authsvc.keys.base import KeyProvider
from authsvc.plugins import PluginContext, load_plugin
from authsvc.verifier import Verifier

NOW = 1_700_000_000
SUB = "foo-subj"

ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ALL_ALGORITHMS = ASYMMETRIC_ALGORITHMS + HMAC_ALGORITHMS


@dataclass(frozen=True)
class Keys:
    """Private signing keys, one per key type, plus a few spares."""

    rsa: RSAKey
    rsa2: RSAKey
    rsa3: RSAKey
    ec256: ECKey
    ec384: ECKey
    ec521: ECKey
    ed: OKPKey
    hmac_secret: str
    """64 printable bytes: long enough for HS512, safe on a cfg: command line."""

    @property
    def oct(self) -> OctKey:
        return OctKey.import_key(self.hmac_secret.encode())

    def for_alg(self, alg: str) -> Key:
        """The (first) key whose type signs ``alg``."""
        if alg.startswith(("RS", "PS")):
            return self.rsa
        if alg.startswith("HS"):
            return self.oct
        if alg in ("EdDSA", "Ed25519"):
            return self.ed
        return {"ES256": self.ec256, "ES384": self.ec384, "ES512": self.ec521}[alg]


@functools.cache
def signing_keys() -> Keys:
    return Keys(
        rsa=RSAKey.generate_key(2048),
        rsa2=RSAKey.generate_key(2048),
        rsa3=RSAKey.generate_key(2048),
        ec256=ECKey.generate_key("P-256"),
        ec384=ECKey.generate_key("P-384"),
        ec521=ECKey.generate_key("P-521"),
        ed=OKPKey.generate_key("Ed25519"),
        hmac_secret=base64.urlsafe_b64encode(bytes(range(48))).decode(),
    )


# --------------------------------------------------------------------------- encoding
def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(value: Any) -> str:
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def claims(**extra: Any) -> dict[str, Any]:
    """Valid claims at NOW: ``sub`` and a one-hour ``exp``, overridden by ``extra``.

    Pass ``name=None`` to leave a claim out.
    """
    base: dict[str, Any] = {"sub": SUB, "iat": NOW, "exp": NOW + 3600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Key, alg: str, payload: Mapping[str, Any] | None = None, **header: Any) -> str:
    """A compact JWT through joserfc's public API; ``kid=...`` and other header fields as kwargs."""
    with warnings.catch_warnings():
        # joserfc flags EdDSA as deprecated (RFC 9864) when signing; verifying it is our business.
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(
            {"alg": alg, **header}, dict(claims() if payload is None else payload), key, [alg]
        )


def forge(
    key: Key | None,
    header: Mapping[str, Any] | str,
    payload: Mapping[str, Any] | list[Any] | bytes | str,
    alg: str | None = None,
) -> str:
    """Sign any header and payload with joserfc's algorithm model, bypassing its header checks.

    ``header``/``payload`` that are already strings are used as the encoded segment.
    """
    h = header if isinstance(header, str) else b64u_json(header)
    if isinstance(payload, str):
        p = payload
    elif isinstance(payload, bytes):
        p = b64u(payload)
    else:
        p = b64u_json(payload)
    name = alg or (header["alg"] if isinstance(header, Mapping) else None)
    assert name is not None and key is not None
    signature = JWSRegistry.algorithms[name].sign(f"{h}.{p}".encode(), key)
    return f"{h}.{p}.{b64u(signature)}"


def hs_by_hand(secret: bytes, header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    """An HS256 token MACed with the stdlib, for secrets joserfc refuses (public keys)."""
    import hashlib
    import hmac

    h, p = b64u_json(header), b64u_json(payload)
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64u(mac)}"


# --------------------------------------------------------------------------- key material
def public_pem(key: Key) -> bytes:
    return key.as_pem(private=False)


def rsa_pkcs1_pem(key: RSAKey) -> bytes:
    """``-----BEGIN RSA PUBLIC KEY-----`` (PKCS#1), as older tools write it."""
    return key.public_key.public_bytes(Encoding.PEM, PublicFormat.PKCS1)


def self_signed_cert(key: Key, cn: str = "authsvc test signer") -> x509.Certificate:
    private = key.private_key
    assert private is not None
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
    )
    algorithm = None if isinstance(key, OKPKey) else hashes.SHA256()
    return builder.sign(private, algorithm)  # type: ignore[arg-type]


def public_jwk(key: Key, kid: str | None = None, **params: Any) -> dict[str, Any]:
    """A key's public JWK; ``oct`` keys have no public half, so their secret is published."""
    jwk = dict(key.as_dict(private=isinstance(key, OctKey)))
    jwk.pop("kid", None)
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(params)
    return jwk


def jwks(*keys: Mapping[str, Any]) -> dict[str, Any]:
    return {"keys": [dict(k) for k in keys]}


# --------------------------------------------------------------------------- key sources
def key_file_cfg(tmp_path: Path, pem: bytes, name: str = "key.pem") -> dict[str, str]:
    path = tmp_path / name
    path.write_bytes(pem)
    return {"key_file": str(path)}


def key_value_cfg(pem: bytes) -> dict[str, str]:
    return {"key_value": base64.b64encode(pem).decode()}


def jwks_file_cfg(tmp_path: Path, document: Mapping[str, Any]) -> dict[str, str]:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    return {"jwk_set_file": str(path)}


def jwks_value_cfg(document: Mapping[str, Any]) -> dict[str, str]:
    return {"jwk_set_value": base64.b64encode(json.dumps(document).encode()).decode()}


def build_provider(settings: Settings) -> KeyProvider:
    """The configured key provider, loaded through its entry point exactly as the app does."""
    cls = load_plugin("authsvc.key_providers", settings.jwt.key_provider)
    provider = cls.from_config(PluginContext(settings))
    assert isinstance(provider, KeyProvider)
    return provider


class FakeClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeVerifier = Callable[..., Verifier]


SOURCES = ("key_file", "key_value", "jwk_set_file", "jwk_set_value", "hmac_secret")


def source_cfg(source: str, key: Key, tmp_path: Path, kid: str | None = None) -> dict[str, str]:
    """``[auth.jwt]`` values that make ``key`` (public half) the only key, under ``kid``."""
    key_id = {"key_id": kid} if kid else {}
    if source == "key_file":
        return {**key_file_cfg(tmp_path, public_pem(key)), **key_id}
    if source == "key_value":
        return {**key_value_cfg(public_pem(key)), **key_id}
    if source == "jwk_set_file":
        return jwks_file_cfg(tmp_path, jwks(public_jwk(key, kid)))
    if source == "jwk_set_value":
        return jwks_value_cfg(jwks(public_jwk(key, kid)))
    if source == "hmac_secret":
        assert isinstance(key, OctKey)
        return {"hmac_secret": key.raw_value.decode(), **key_id}
    raise AssertionError(source)


# The kid of conftest's session-wide ``signing_key`` (ES256, published by ``jwks_file``).
SIGNING_KID = "test-es256"
