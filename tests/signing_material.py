"""Key files, certificates and verification for the signing tests (authsvc as a token issuer).

Private keys come from ``tokens.signing_keys()`` (generated once per session);
this module writes them in each PEM form authsvc reads, builds certificates
and chains, and verifies what authsvc signed the way an upstream would: with
joserfc, against the JWKS authsvc publishes — never by decoding unverified.
"""

from __future__ import annotations

import datetime
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry, Token
from test_key_policy import _is_probable_prime

from authsvc.keys.base import _ROCA_PRIMES

VERIFY_ALGORITHMS = [
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
]

PKCS8 = PrivateFormat.PKCS8
TRADITIONAL = PrivateFormat.TraditionalOpenSSL
"""PKCS#1 (``RSA PRIVATE KEY``) for RSA, SEC1 (``EC PRIVATE KEY``) for EC."""


def private_pem(native: Any, form: PrivateFormat = PKCS8, password: bytes | None = None) -> bytes:
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    data: bytes = native.private_bytes(Encoding.PEM, form, encryption)
    return data


def public_pem(native: Any) -> bytes:
    data: bytes = native.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return data


def thumbprint(native: Any) -> str:
    """The RFC 7638 thumbprint of a key's public half, computed by joserfc."""
    cls = {rsa.RSAPrivateKey: RSAKey, ec.EllipticCurvePrivateKey: ECKey}
    kind = next((k for t, k in cls.items() if isinstance(native, t)), OKPKey)
    return kind.import_key(public_pem(native)).thumbprint()


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(
    subject_key: Any, cn: str, issuer_key: Any | None = None, issuer_cn: str | None = None
) -> x509.Certificate:
    """A certificate of ``subject_key``'s public key, self-signed unless an issuer is given."""
    signer = issuer_key if issuer_key is not None else subject_key
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn or cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
    )
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def chain_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


# --------------------------------------------------------------------------- weak keys
def roca_private_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA private key whose primes have Infineon's (ROCA) structure."""
    rng = random.Random(15361)
    m = 1
    for p in _ROCA_PRIMES:
        m *= p

    def prime() -> int:
        lo, hi = (3 << 1022) // m + 1, (1 << 1024) // m - 1
        while True:
            candidate = rng.randrange(lo, hi) * m + pow(65537, rng.randrange(1, m), m)
            if (candidate - 1) % 65537 and _is_probable_prime(candidate, rng):
                return candidate

    p, q = prime(), prime()
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        public,
    )
    return numbers.private_key()


def weak_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def secp256k1_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256K1())


# --------------------------------------------------------------------------- verifying
def verify(
    token: str,
    jwks: Mapping[str, Any],
    *,
    iss: str | None = None,
    aud: str | None = None,
    now: float | None = None,
) -> Token:
    """``token`` verified as an upstream verifies it: joserfc, the published JWKS, iss/aud/exp.

    Raises joserfc's error when the signature, kid, issuer, audience or expiry fail.
    """
    keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # joserfc flags EdDSA as deprecated (RFC 9864) whenever it is allowed.
        warnings.simplefilter("ignore", SecurityWarning)
        verified = jwt.decode(token, keys, algorithms=VERIFY_ALGORITHMS)
    expected: dict[str, Any] = {"exp": {"essential": True}, "jti": {"essential": True}}
    if iss is not None:
        expected["iss"] = {"essential": True, "value": iss}
    if aud is not None:
        expected["aud"] = {"essential": True, "value": aud}
    JWTClaimsRegistry(now=int(now) if now is not None else None, **expected).validate(
        verified.claims
    )
    return verified


def one_key_jwks(public: Mapping[str, Any]) -> dict[str, Any]:
    return {"keys": [dict(public)]}


def kids(jwks: Mapping[str, Any]) -> list[str]:
    return [str(k["kid"]) for k in jwks["keys"]]
