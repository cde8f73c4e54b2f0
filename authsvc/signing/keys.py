"""authsvc's own signing keys, held to the same policy as the keys it verifies with.

A key file holds one PEM private key — PKCS#8, PKCS#1 (RSA) or SEC1 (EC) —
read by ``cryptography`` and handed to joserfc, which does every JOSE step
(thumbprint, JWK, signature). The policy is the verification keys'
(``authsvc.keys.base``): RSA of at least 2048 bits with a sound exponent and
no ROCA fingerprint, EC on P-256/384/521, Ed25519. A public key is refused
(nothing can be signed with it), a certificate must hold this very key, the
algorithm must fit it. Each refusal names the setting to blame.

A ``KeyRing`` is what signs: the current key, the older ones it publishes
beside it, re-read from their files when they change (CONTRACT §6).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from joserfc import jwt
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64encode

from authsvc.config import SigningKeySettings
from authsvc.file_watch import FileWatch
from authsvc.keys.base import (
    ALGORITHMS_BY_CURVE,
    OKP_ALGORITHMS,
    RSA_ALGORITHMS,
    KeyError_,
    is_roca_weak,
)

log = logging.getLogger(__name__)

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
DEFAULT_ALGORITHMS = {
    "RSA": "RS256",
    "P-256": "ES256",
    "P-384": "ES384",
    "P-521": "ES512",
    "Ed25519": "EdDSA",
}
"""The algorithm each kind of key signs with unless ``algorithm`` says otherwise."""
_OWN_ALGORITHMS = {"RSA": RSA_ALGORITHMS, "Ed25519": OKP_ALGORITHMS, **ALGORITHMS_BY_CURVE}
"""The algorithms each kind of key can sign: the ones it verifies (authsvc.keys.base)."""


class SigningKeyError(KeyError_):
    """A signing key refused; ``key`` is the setting to blame (``key_file``, ``algorithm``...)."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key
        self.why = why


class _Registry(JWSRegistry):
    """joserfc's registry, without its warning on each use of an algorithm it deprecates.

    joserfc warns (SecurityWarning) every time EdDSA signs: RFC 9864 prefers the
    fully-specified ``Ed25519``. EdDSA is still the contract's default for an
    Ed25519 key, the name every verifier knows; the operator chose it once, so it
    is not worth a warning per assertion. Unknown algorithms are joserfc's to refuse.
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        if self.allowed and name in self.allowed and name in self.algorithms:
            return self.algorithms[name]
        return super().get_alg(name)


@dataclass(frozen=True, eq=False)
class SigningKey:
    """A private key ready to sign: its kid, algorithm, certificate chain, header and JWK."""

    key: Key
    kid: str
    algorithm: str
    chain: tuple[x509.Certificate, ...]
    header: Mapping[str, str]
    """The protected header of everything it signs: typ, alg, kid, and x5t / x5t#S256
    with a certificate."""
    jwk: Mapping[str, Any]
    """Its public JWK as the JWKS publishes it (x5c, x5t, x5t#S256 with a certificate)."""
    registry: JWSRegistry

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWT of ``claims`` (joserfc's ``jwt.encode``). No I/O: one signature."""
        return jwt.encode(dict(self.header), dict(claims), self.key, registry=self.registry)


# --------------------------------------------------------------------------- reading
def load_signing_key(spec: SigningKeySettings) -> SigningKey:
    """The key ``spec`` describes, every rule checked; SigningKeyError naming the setting."""
    native = _read_private(spec.key_file)
    key, kind = _joserfc_key(native, spec.key_file)
    algorithm = spec.algorithm or DEFAULT_ALGORITHMS[kind]
    own = _OWN_ALGORITHMS[kind]
    if algorithm not in own:
        raise SigningKeyError(
            "algorithm", f"{algorithm} does not fit the {kind} key (it signs {', '.join(own)})"
        )
    chain = _read_chain(spec.certificate_file, native) if spec.certificate_file else ()
    kid = spec.key_id or key.thumbprint()
    header = {"typ": "JWT", "alg": algorithm, "kid": kid}
    published: dict[str, Any] = {"kid": kid, "use": "sig", "alg": algorithm}
    if chain:
        leaf = chain[0]
        thumbprints = {  # RFC 7515 §4.1.7-8: digests of the leaf's DER, base64url
            "x5t": urlsafe_b64encode(leaf.fingerprint(hashes.SHA1())).decode(),  # noqa: S303
            "x5t#S256": urlsafe_b64encode(leaf.fingerprint(hashes.SHA256())).decode(),
        }
        header.update(thumbprints)
        published.update(thumbprints)
        published["x5c"] = [_x5c(cert) for cert in chain]
    return SigningKey(
        key=key,
        kid=kid,
        algorithm=algorithm,
        chain=chain,
        header=header,
        jwk=key.as_dict(private=False, **published),
        registry=_Registry(algorithms=[algorithm]),
    )


def load_published_key(path: str) -> dict[str, Any]:
    """A ``previous_key_files`` entry as the JWKS publishes it: kid = its RFC 7638 thumbprint.

    Private or public PEM: a key that only verifies old assertions needs no private
    half, but the file the operator moved out of ``key_file`` has one. No ``alg``: which
    algorithm it signed with is not known here, and a wrong one would fail verifiers.
    """
    pem = _read(path, "previous_key_files")
    native: Any
    try:
        if b"PRIVATE KEY-----" in pem:
            native = load_pem_private_key(pem, password=None)
        else:
            native = load_pem_public_key(pem)
    except TypeError:
        raise SigningKeyError("previous_key_files", f"{path}: is encrypted") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            "previous_key_files", f"{path}: not a PEM private or public key: {exc}"
        ) from None
    key, _kind = _joserfc_key(native, path, "previous_key_files")
    return key.as_dict(private=False, kid=key.thumbprint(), use="sig")


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(setting, f"cannot read {path}: {exc.strerror or exc}") from None


def _read_private(path: str) -> Any:
    pem = _read(path, "key_file")
    if b"PRIVATE KEY-----" not in pem:
        if b"PUBLIC KEY-----" in pem or b"CERTIFICATE-----" in pem:
            raise SigningKeyError(
                "key_file",
                f"{path}: is a public key or certificate; signing needs the private key "
                "(PEM: PKCS#8, PKCS#1 or SEC1)",
            )
        raise SigningKeyError("key_file", f"{path}: holds no PEM private key")
    try:
        return load_pem_private_key(pem, password=None)
    except TypeError:
        raise SigningKeyError(
            "key_file", f"{path}: is encrypted; authsvc reads unencrypted keys only"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError("key_file", f"{path}: not a usable PEM private key: {exc}") from None


def _joserfc_key(native: Any, path: str, setting: str = "key_file") -> tuple[Key, str]:
    """The joserfc key of a ``cryptography`` key (private or public) and its kind:
    ``RSA``, ``P-256``/``P-384``/``P-521`` or ``Ed25519``; the key policy on the way."""
    if isinstance(native, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        public = native.public_key() if isinstance(native, rsa.RSAPrivateKey) else native
        numbers = public.public_numbers()
        if numbers.n.bit_length() < 2048:
            why = f"RSA modulus of {numbers.n.bit_length()} bits is too short (at least 2048)"
            raise SigningKeyError(setting, f"{path}: {why}")
        if numbers.e == 1 or numbers.e % 2 == 0:
            raise SigningKeyError(setting, f"{path}: RSA public exponent {numbers.e} is unsound")
        if is_roca_weak(numbers.n):
            raise SigningKeyError(
                setting, f"{path}: RSA modulus is ROCA-weak (CVE-2017-15361); replace the key"
            )
        return RSAKey(native, native), "RSA"
    if isinstance(native, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        curve = _CURVES.get(native.curve.name)
        if curve is None:
            raise SigningKeyError(
                setting, f"{path}: EC curve {native.curve.name} is not P-256, P-384 or P-521"
            )
        return ECKey(native, native), curve
    if isinstance(native, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return OKPKey(native, native), "Ed25519"
    if isinstance(native, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        raise SigningKeyError(setting, f"{path}: Ed448 keys are not supported (Ed25519 is)")
    raise SigningKeyError(setting, f"{path}: unsupported key type {type(native).__name__}")


def _read_chain(path: str, native: Any) -> tuple[x509.Certificate, ...]:
    """The certificates of ``path``, leaf first; the leaf must certify ``native``'s key."""
    pem = _read(path, "certificate_file")
    try:
        chain = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise SigningKeyError("certificate_file", f"{path}: not a PEM certificate: {exc}") from None
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*spki) != native.public_key().public_bytes(*spki):
        raise SigningKeyError(
            "certificate_file",
            f"{path}: its (first) certificate is not of key_file's key "
            f"(subject {chain[0].subject.rfc4514_string() or '-'})",
        )
    return chain


def _x5c(cert: x509.Certificate) -> str:
    """RFC 7517 §4.7: base64 (not base64url) DER."""
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


# --------------------------------------------------------------------------- the ring
@dataclass(frozen=True, eq=False)
class _State:
    current: SigningKey
    published: tuple[Mapping[str, Any], ...]


class KeyRing:
    """The key that signs and the keys published beside it, kept fresh from their files.

    Built at start-up (a refused key is a start-up error, raised as SigningKeyError).
    With ``watch``, each file is watched (CONTRACT §6): a change re-reads them all,
    and a set that fails the policy keeps the previous keys and is ``problem``.
    """

    def __init__(
        self,
        spec: SigningKeySettings,
        previous: tuple[str, ...] = (),
        *,
        section: str = "signing",
        watch: bool = True,
    ) -> None:
        self.spec = spec
        self.previous_files = previous
        self.section = section
        self._state = self._load()
        self._lock = threading.Lock()
        self.problem = ""
        """Why the last re-read was refused (the previous keys still serve); empty when fine."""
        self._watches: list[FileWatch] = []
        if watch:
            files = [("key_file", spec.key_file), ("certificate_file", spec.certificate_file)]
            files += [("previous_key_files", path) for path in previous]
            for setting, path in files:
                if path:
                    where = spec.blame.get(setting, section)
                    what = f"[{where}] {setting} {path}"
                    self._watches.append(FileWatch(path, self._reload, what))

    @property
    def current(self) -> SigningKey:
        """The key that signs now. Memory only: called for every assertion."""
        return self._state.current

    @property
    def published(self) -> tuple[Mapping[str, Any], ...]:
        """Public JWKs of the current key (first) and of every previous key."""
        return self._state.published

    def _load(self) -> _State:
        current = load_signing_key(self.spec)
        published: list[Mapping[str, Any]] = [current.jwk]
        seen = {current.kid: "key_file"}
        for path in self.previous_files:
            jwk = load_published_key(path)
            kid = str(jwk["kid"])
            if kid in seen:
                raise SigningKeyError(
                    "previous_key_files",
                    f"{path}: kid {kid} is also {seen[kid]}'s (the same key listed twice?)",
                )
            seen[kid] = path
            published.append(jwk)
        return _State(current, tuple(published))

    def _reload(self) -> None:
        """A watched file changed: read every file again; raise (keeping the keys) if refused."""
        with self._lock:
            try:
                state = self._load()
            except SigningKeyError as exc:
                self.problem = f"[{self.spec.blame.get(exc.key, self.section)}] {exc.key}: {exc}"
                raise
            self._state = state  # one assignment: a signer sees the old set or the new one
            self.problem = ""
        log.info("signing keys read again: kid %s signs", state.current.kid)

    def describe(self) -> dict[str, Any]:
        """What /api/admin/keys shows of it."""
        state = self._state
        return {
            "kind": "signing",
            "section": self.section,
            "kid": state.current.kid,
            "algorithm": state.current.algorithm,
            "published": [str(jwk["kid"]) for jwk in state.published],
            "last_error": self.problem or None,
        }

    def close(self) -> None:
        for watch in self._watches:
            watch.close()
