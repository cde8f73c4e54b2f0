"""The key-provider slot: a Protocol, the key record it hands out, and the per-type rules.

``KeyProvider.get_key`` is called on every request: it reads memory only.
Fetching, parsing and policy checks happen in ``from_config`` and ``refresh``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

if TYPE_CHECKING:
    from authsvc.plugins import PluginContext

# The algorithms each kind of key can verify; a key verifies no others.
ALGORITHMS_BY_CURVE = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",)}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
OKP_ALGORITHMS = ("EdDSA", "Ed25519")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


# ROCA (CVE-2017-15361): Infineon's weak primes are 65537^a mod M + k*M for M the
# product of small primes, so the modulus's residue mod each of these primes lies in
# the subgroup 65537 generates. A random modulus passes every test with negligible odds.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83,
    89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip
_ROCA_SUBGROUPS = {p: frozenset(pow(65537, k, p) for k in range(p)) for p in _ROCA_PRIMES}


def is_roca_weak(modulus: int) -> bool:
    """True when an RSA modulus carries the ROCA fingerprint (Nemec et al., 2017)."""
    return all(modulus % p in _ROCA_SUBGROUPS[p] for p in _ROCA_PRIMES)


class KeyError_(ValueError):
    """A key was refused; the message names the key and why."""


class KeySkipped(KeyError_):
    """A sound key the ``algorithms`` allow-list leaves no algorithm for (CONTRACT §6):
    skipped with a warning, not refused; only a source left with no key is an error."""


@dataclass(frozen=True)
class VerificationKey:
    """One usable key: its kid (None = matches only kid-less tokens) and allowed algorithms."""

    kid: str | None
    key: Key
    algorithms: frozenset[str]

    @property
    def kind(self) -> str:
        return str(self.key.key_type)


@dataclass(frozen=True)
class KeyState:
    """What /api/health says about keys: ``ok``, ``stale``, ``failing`` or ``disabled``."""

    state: str
    detail: str = ""
    problem: str = ""
    """Something an operator must fix that does not stop service (a rotated key file
    refused, the old keys still serving): /api/health's ``problems``."""


@runtime_checkable
class KeyProvider(Protocol):
    """Hands the verifier the key for a token's kid, from memory (``authsvc.key_providers``)."""

    @classmethod
    def from_config(cls, context: PluginContext) -> Self:
        """Read the keys (or start fetching them) for ``context.issuer``; KeyError_ saying why
        not, naming ``[context.section] KEY``."""

    def get_key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid``, or None. Called on every request: no I/O."""

    def refresh(self) -> None:
        """Re-read the keys from their source (a no-op for fixed keys)."""


@runtime_checkable
class KeyIds(Protocol):
    """Optional: the kids a provider holds, named in "kid not in key set" reasons."""

    def kids(self) -> list[str | None]: ...


@runtime_checkable
class KeyPresence(Protocol):
    """Optional: answers from memory whether ``key`` is still in the set.

    The verified-token cache asks this on every hit; providers whose
    ``get_key`` may do I/O (``jwk_set_url`` with ``cache_ttl = 0``) implement it.
    """

    def holds(self, key: VerificationKey) -> bool: ...


@runtime_checkable
class UnknownKidRefresh(Protocol):
    """Optional: providers that may learn a new key when a token names an unknown kid.

    Called off the fast path, only after ``get_key`` missed; implementations
    bound how often this reaches the network (cooldown, single flight).
    """

    def on_unknown_kid(self, kid: str | None) -> VerificationKey | None: ...


@runtime_checkable
class KeyHealth(Protocol):
    """Optional: providers whose keys can go stale or fail report it here."""

    def health(self) -> KeyState: ...


@runtime_checkable
class KeyDescription(Protocol):
    """Optional: what GET /api/admin/keys shows about a provider's keys."""

    def describe(self) -> dict[str, Any]: ...


def describe_keys(keys: Iterable[VerificationKey]) -> list[dict[str, Any]]:
    """Keys as /api/admin/keys lists them."""
    return [{"kid": k.kid, "kty": k.kind, "algorithms": sorted(k.algorithms)} for k in keys]


def key_label(kid: str | None) -> str:
    return f"key {kid!r}" if kid else "key (no kid)"


def allowed_algorithms(key: Key, kid: str | None, allow_list: tuple[str, ...]) -> frozenset[str]:
    """The algorithms ``key`` may verify: its type's, narrowed by its JWK ``alg`` and the config.

    Raises KeyError_ when the key is unusable for verification.
    """
    label = key_label(kid)
    if key.is_private and not isinstance(key, OctKey):
        raise KeyError_(f"{label}: is a private key; configure the public key")
    if isinstance(key, RSAKey):
        size = key.public_key.key_size
        if size < 2048:
            raise KeyError_(f"{label}: RSA modulus of {size} bits is too short (at least 2048)")
        numbers = key.public_key.public_numbers()
        if numbers.e == 1 or numbers.e % 2 == 0:
            raise KeyError_(f"{label}: RSA public exponent {numbers.e} is not a valid key")
        if is_roca_weak(numbers.n):
            raise KeyError_(f"{label}: RSA modulus is ROCA-weak (CVE-2017-15361); replace the key")
        own: tuple[str, ...] = RSA_ALGORITHMS
    elif isinstance(key, ECKey):
        own = ALGORITHMS_BY_CURVE.get(key.curve_name, ())
        if not own:
            raise KeyError_(f"{label}: EC curve {key.curve_name} is not supported")
    elif isinstance(key, OKPKey):
        if key.curve_name != "Ed25519":
            raise KeyError_(f"{label}: OKP curve {key.curve_name} cannot verify signatures here")
        own = OKP_ALGORITHMS
    elif isinstance(key, OctKey):
        secret = key.raw_value
        own = tuple(a for a in HMAC_ALGORITHMS if len(secret) >= _HMAC_MIN_BYTES[a])
        if not own:
            raise KeyError_(
                f"{label}: HMAC secret of {len(secret)} bytes is too short (at least 32)"
            )
    else:
        raise KeyError_(f"{label}: unsupported key type {key.key_type}")
    jwk_alg = key.get("alg")
    if jwk_alg:
        if jwk_alg not in own:
            raise KeyError_(f"{label}: alg {jwk_alg} does not fit a {key.key_type} key")
        own = (str(jwk_alg),)
    use = key.get("use")
    if use and use != "sig":
        raise KeyError_(f"{label}: use {use!r} does not allow verification")
    ops = key.get("key_ops")
    if ops is not None and "verify" not in ops:
        raise KeyError_(f"{label}: key_ops {ops} do not include verify")
    algs = frozenset(own) & frozenset(allow_list)
    if not algs:
        raise KeySkipped(
            f"{label}: none of its algorithms ({', '.join(own)}) is allowed by [algorithms]"
        )
    return algs


def b64decode_setting(value: str) -> bytes:
    """Decode a base64 config value (standard or URL-safe alphabet, padding optional)."""
    text = "".join(value.split())
    try:
        altchars = b"-_" if ("-" in text or "_" in text) else None
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except ValueError:
        raise KeyError_("not valid base64") from None
