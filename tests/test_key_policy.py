"""authsvc.keys: the key policy (allowed_algorithms, is_roca_weak) and how each source applies it.

A fetched or configured JWKS drops a bad key and names it (ParsedKeySet.refused);
a configured static set (jwk_set_file / jwk_set_value) or a single key
(key_file / key_value / hmac_secret) turns the same refusal into a start-up
error (KeyError_). Every refusal names the key and the reason.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey
from tokens import (
    FakeClock,
    Keys,
    b64u,
    build_provider,
    jwks,
    jwks_file_cfg,
    jwks_value_cfg,
    key_file_cfg,
    key_value_cfg,
    public_jwk,
    public_pem,
    sign,
    signing_keys,
)

from authsvc.config import ALGORITHMS
from authsvc.errors import InvalidToken
from authsvc.keys.base import (
    _ROCA_PRIMES,
    KeyError_,
    KeyIds,
    allowed_algorithms,
    is_roca_weak,
)
from authsvc.keys.jwks import parse_key_set
from authsvc.verifier import Verifier

# The policy tests below check what is refused; BUG-3's own tests check how.
IGNORE_JOSERFC_WARNINGS = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


def rsa_jwk(n: int, e: int = 65537, kid: str | None = "k1") -> dict[str, Any]:
    def encode(value: int) -> str:
        return b64u(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": encode(n), "e": encode(e)}
    return {**jwk, "kid": kid} if kid else jwk


def refused_one(document: dict[str, Any], allow: tuple[str, ...] = ALGORITHMS) -> str:
    """Parse a set of one bad key: it is dropped, and the single refusal line is returned."""
    parsed = parse_key_set(document, allow)
    assert dict(parsed.keys) == {}
    assert len(parsed.refused) == 1, parsed.refused
    return parsed.refused[0]


def startup_error(make_settings: Any, cfg: dict[str, str]) -> str:
    """The refusal after its origin: ``argument cfg:auth.jwt.KEY [auth.jwt] KEY: why``."""
    with pytest.raises(KeyError_) as info:
        build_provider(make_settings({"auth.jwt": cfg}))
    origin, blamed = str(info.value).split(" [auth.jwt] ", 1)
    assert origin.startswith("argument cfg:auth.jwt."), origin
    key = blamed.split(":", 1)[0]
    assert origin == f"argument cfg:auth.jwt.{key}", (origin, key)
    return f"[auth.jwt] {blamed}"


# --------------------------------------------------------------------------- RSA
@functools.cache
def short_rsa() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(65537, 1024).public_key()


@pytest.mark.parametrize("kid", [None, "old"])
@pytest.mark.parametrize("source", ["key_file", "key_value"])
def test_rsa_modulus_under_2048_bits_is_refused_at_startup(
    make_settings: Any, tmp_path: Path, source: str, kid: str | None
) -> None:
    pem = short_rsa().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    cfg = key_file_cfg(tmp_path, pem) if source == "key_file" else key_value_cfg(pem)
    message = startup_error(make_settings, {**cfg, **({"key_id": kid} if kid else {})})
    label = f"key {kid!r}" if kid else "key (no kid)"
    assert message == (
        f"[auth.jwt] {source}: {label}: RSA modulus of 1024 bits is too short (at least 2048)"
    )


@IGNORE_JOSERFC_WARNINGS
def test_rsa_modulus_under_2048_bits_is_dropped_from_a_jwks(keys: Keys) -> None:
    small = rsa_jwk(short_rsa().public_numbers().n, kid="small")
    parsed = parse_key_set(jwks(small, public_jwk(keys.rsa, "good")), ALGORITHMS)
    assert list(parsed.keys) == ["good"]
    assert parsed.refused == ("key 'small': RSA modulus of 1024 bits is too short (at least 2048)",)


def test_a_short_rsa_jwk_is_refused_by_our_policy_whatever_the_warning_filters() -> None:
    # Under filterwarnings=error joserfc's "Key size should be >= 2048 bits" warning is
    # raised inside parse_key_set, which reports it as "not a valid JWK"; in production
    # (warnings shown, not raised) the same key gets our policy's reason. One reason, please.
    reason = refused_one(jwks(rsa_jwk(short_rsa().public_numbers().n)))
    assert reason == "key 'k1': RSA modulus of 1024 bits is too short (at least 2048)"


def test_cryptography_itself_refuses_exponent_one(keys: Keys) -> None:
    # allowed_algorithms checks e == 1 too, but no RSA key object can carry it: the
    # refusal comes from parsing, and still names the key.
    n = keys.rsa.public_key.public_numbers().n
    with pytest.raises(ValueError, match="e must be"):
        rsa.RSAPublicNumbers(1, n).public_key()


@pytest.mark.parametrize("e", [1, 2, 65536], ids=["e1", "e2", "even"])
def test_rsa_exponent_one_or_even_is_refused_in_a_jwks(keys: Keys, e: int) -> None:
    n = keys.rsa.public_key.public_numbers().n
    reason = refused_one(jwks(rsa_jwk(n, e, kid="weak-e")))
    assert reason.startswith("key 'weak-e': ")
    assert "e must be" in reason


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_length(len(body)) + body


def test_rsa_exponent_one_is_refused_in_a_pem(
    keys: Keys, make_settings: Any, tmp_path: Path
) -> None:
    import base64

    n = keys.rsa.public_key.public_numbers().n
    body = _der_integer(n) + _der_integer(1)
    der = b"\x30" + _der_length(len(body)) + body
    pem = (
        b"-----BEGIN RSA PUBLIC KEY-----\n"
        + base64.encodebytes(der)
        + b"-----END RSA PUBLIC KEY-----\n"
    )
    message = startup_error(make_settings, key_file_cfg(tmp_path, pem))
    assert message.startswith("[auth.jwt] key_file: not a PEM public key or certificate")


# ROCA: Infineon primes are k*M + (65537^a mod M), M the product of the small primes.
def _is_probable_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_the_miller_rabin_helper() -> None:
    rng = random.Random(1)
    primes = [p for p in range(2, 400) if all(p % q for q in range(2, int(p**0.5) + 1))]
    assert [n for n in range(400) if _is_probable_prime(n, rng)] == primes
    assert _is_probable_prime(2**127 - 1, rng)
    assert not _is_probable_prime(2**128 + 1, rng)  # composite (Fermat number F7)
    assert not _is_probable_prime(561 * 1105, rng)  # Carmichael numbers' product


@functools.cache
def roca_modulus() -> int:
    rng = random.Random(2017_15361)
    m = 1
    for p in _ROCA_PRIMES:
        m *= p

    def prime() -> int:
        lo, hi = (3 << 1022) // m + 1, (1 << 1024) // m - 1
        while True:
            candidate = rng.randrange(lo, hi) * m + pow(65537, rng.randrange(1, m), m)
            if _is_probable_prime(candidate, rng):
                return candidate

    n = prime() * prime()
    assert n.bit_length() == 2048
    return n


def test_roca_weak_modulus_is_recognised(keys: Keys) -> None:
    assert is_roca_weak(roca_modulus())
    for key in (keys.rsa, keys.rsa2, keys.rsa3):
        assert not is_roca_weak(key.public_key.public_numbers().n)


def test_roca_weak_key_is_refused_in_a_jwks(keys: Keys) -> None:
    parsed = parse_key_set(
        jwks(rsa_jwk(roca_modulus(), kid="tpm"), public_jwk(keys.rsa, "ok")), ALGORITHMS
    )
    assert list(parsed.keys) == ["ok"]
    assert parsed.refused == (
        "key 'tpm': RSA modulus is ROCA-weak (CVE-2017-15361); replace the key",
    )


def test_roca_weak_key_is_refused_at_startup(make_settings: Any, tmp_path: Path) -> None:
    public = rsa.RSAPublicNumbers(65537, roca_modulus()).public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    message = startup_error(make_settings, {**key_file_cfg(tmp_path, pem), "key_id": "tpm"})
    assert message == (
        "[auth.jwt] key_file: key 'tpm': RSA modulus is ROCA-weak (CVE-2017-15361); replace the key"
    )


# --------------------------------------------------------------------------- HMAC
@pytest.mark.parametrize(
    ("length", "algorithms"),
    [
        (32, {"HS256"}),
        (47, {"HS256"}),
        (48, {"HS256", "HS384"}),
        (63, {"HS256", "HS384"}),
        (64, {"HS256", "HS384", "HS512"}),
        (100, {"HS256", "HS384", "HS512"}),
    ],
)
def test_hmac_secret_length_decides_its_algorithms(
    make_settings: Any, length: int, algorithms: set[str]
) -> None:
    provider = build_provider(make_settings({"auth.jwt": {"hmac_secret": "s" * length}}))
    key = provider.get_key(None)
    assert key is not None
    assert key.algorithms == algorithms


def test_a_too_short_secret_refuses_the_longer_hash_by_name(make_settings: Any) -> None:
    settings = make_settings({"auth.jwt": {"hmac_secret": "s" * 40, "key_id": "h"}})
    verifier = Verifier(settings.jwt, build_provider(settings), clock=FakeClock())
    secret = OctKey.import_key(b"s" * 40)
    assert verifier.verify(sign(secret, "HS256", kid="h")).key.kid == "h"
    for alg in ("HS384", "HS512"):
        with pytest.raises(InvalidToken) as info:
            verifier.verify(sign(secret, alg, kid="h"))
        assert info.value.reason == (
            f"algorithm {alg} not allowed for an HMAC (oct) key (kid 'h'); it allows HS256"
        )


@pytest.mark.parametrize("length", [14, 20, 31])
def test_hmac_secret_shorter_than_sha256_output_is_refused(make_settings: Any, length: int) -> None:
    message = startup_error(make_settings, {"hmac_secret": "s" * length, "key_id": "h"})
    assert message == (
        f"[auth.jwt] hmac_secret: key 'h': HMAC secret of {length} bytes is too short (at least 32)"
    )


@pytest.mark.parametrize("length", [1, 13])
def test_a_very_short_hmac_secret_is_a_keyerror(make_settings: Any, length: int) -> None:
    message = startup_error(make_settings, {"hmac_secret": "s" * length})
    assert message.startswith("[auth.jwt] hmac_secret: ")


@pytest.mark.parametrize("length", [1, 13])
def test_a_very_short_hmac_secret_is_refused_by_our_policy_whatever_the_warning_filters(
    make_settings: Any, length: int
) -> None:
    # joserfc warns below 14 bytes; under -W error that warning becomes the reason.
    message = startup_error(make_settings, {"hmac_secret": "s" * length})
    assert message == (
        f"[auth.jwt] hmac_secret: key (no kid): HMAC secret of {length} bytes is too short "
        "(at least 32)"
    )


def test_an_empty_hmac_secret_is_refused(make_settings: Any) -> None:
    from authsvc.keys.hmac_secret import HmacSecretProvider
    from authsvc.plugins import PluginContext

    with pytest.raises(KeyError_, match=r"\[auth\.jwt\] hmac_secret: is empty"):
        HmacSecretProvider.from_config(PluginContext(make_settings({"auth.jwt": {}})))


def test_a_public_key_as_hmac_secret_is_a_keyerror(keys: Keys, make_settings: Any) -> None:
    pem = keys.rsa.as_pem(private=False).decode()
    settings = make_settings({"auth.jwt": {"hmac_secret": pem}})
    from authsvc.keys.hmac_secret import HmacSecretProvider
    from authsvc.plugins import PluginContext

    # RS/HS confusion by configuration: a public key is not a shared secret.
    with pytest.raises(KeyError_, match=r" \[auth\.jwt\] hmac_secret: not usable as a shared"):
        HmacSecretProvider.from_config(PluginContext(settings))


@pytest.mark.parametrize(
    ("length", "algorithms"),
    [(32, {"HS256"}), (48, {"HS256", "HS384"}), (64, set(("HS256", "HS384", "HS512")))],
)
def test_oct_jwk_length_decides_its_algorithms(length: int, algorithms: set[str]) -> None:
    parsed = parse_key_set(jwks({"kty": "oct", "k": b64u(b"k" * length), "kid": "o"}), ALGORITHMS)
    assert parsed.keys["o"].algorithms == algorithms


@pytest.mark.parametrize("length", [16, 31])
def test_short_oct_jwk_is_dropped(length: int) -> None:
    reason = refused_one(jwks({"kty": "oct", "k": b64u(b"k" * length), "kid": "o"}))
    assert reason == f"key 'o': HMAC secret of {length} bytes is too short (at least 32)"


def test_empty_oct_jwk_is_dropped() -> None:
    reason = refused_one(jwks({"kty": "oct", "k": "", "kid": "o"}))
    assert reason.startswith("key 'o': not a valid JWK")


def test_oct_jwk_alg_beyond_its_length_is_dropped() -> None:
    reason = refused_one(jwks({"kty": "oct", "k": b64u(b"k" * 40), "kid": "o", "alg": "HS512"}))
    assert reason == "key 'o': alg HS512 does not fit a oct key"


# --------------------------------------------------------------------------- key sets
def test_a_key_set_mixing_oct_and_asymmetric_keys_is_refused(
    keys: Keys, make_settings: Any
) -> None:
    document = jwks(public_jwk(keys.rsa, "r"), {"kty": "oct", "k": b64u(b"k" * 32), "kid": "o"})
    with pytest.raises(KeyError_, match=r"mixes symmetric \(oct\) and asymmetric keys"):
        parse_key_set(document, ALGORITHMS)
    message = startup_error(make_settings, jwks_value_cfg(document))
    assert (
        message == "[auth.jwt] jwk_set_value: the key set mixes symmetric (oct) and asymmetric keys"
    )


def test_a_key_set_mixing_asymmetric_types_is_fine(keys: Keys) -> None:
    document = jwks(
        public_jwk(keys.rsa, "r"), public_jwk(keys.ec384, "e"), public_jwk(keys.ed, "d")
    )
    parsed = parse_key_set(document, ALGORITHMS)
    assert parsed.refused == ()
    assert {kid: set(k.algorithms) for kid, k in parsed.keys.items()} == {
        "r": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
        "e": {"ES384"},
        "d": {"EdDSA", "Ed25519"},
    }


@pytest.mark.parametrize("copies", [2, 3])
def test_duplicate_kids_refuse_every_key_with_that_kid(keys: Keys, copies: int) -> None:
    twins = [public_jwk(k, "dup") for k in (keys.rsa, keys.rsa2, keys.rsa3)[:copies]]
    parsed = parse_key_set(jwks(public_jwk(keys.ec256, "solo"), *twins), ALGORITHMS)
    assert list(parsed.keys) == ["solo"]
    assert parsed.refused == ("key 'dup': duplicate kid, every key with it is refused",) * (
        copies - 1
    )


def test_duplicate_kidless_keys_are_refused(keys: Keys) -> None:
    # Grafana tries every key with the token's (empty) kid; we refuse the ambiguity.
    parsed = parse_key_set(jwks(public_jwk(keys.rsa), public_jwk(keys.rsa2)), ALGORITHMS)
    assert dict(parsed.keys) == {}
    assert parsed.refused == ("key (no kid): duplicate kid, every key with it is refused",)


def test_duplicate_kids_are_a_startup_error_in_a_configured_set(
    keys: Keys, make_settings: Any, tmp_path: Path
) -> None:
    document = jwks(public_jwk(keys.rsa, "dup"), public_jwk(keys.rsa2, "dup"))
    message = startup_error(make_settings, jwks_file_cfg(tmp_path, document))
    assert (
        message == "[auth.jwt] jwk_set_file: key 'dup': duplicate kid, every key with it is refused"
    )


BAD_JWKS = [
    (
        "use-enc",
        lambda k: public_jwk(k.rsa, "k1", use="enc"),
        "key 'k1': use 'enc' does not allow verification",
    ),
    (
        "key_ops-encrypt",
        lambda k: public_jwk(k.rsa, "k1", key_ops=["encrypt"]),
        "key 'k1': key_ops ['encrypt'] do not include verify",
    ),
    (
        "key_ops-sign-only",
        lambda k: public_jwk(k.ec256, "k1", key_ops=["sign"]),
        "key 'k1': key_ops ['sign'] do not include verify",
    ),
    (
        "rs256-on-ec",
        lambda k: public_jwk(k.ec256, "k1", alg="RS256"),
        "key 'k1': alg RS256 does not fit a EC key",
    ),
    (
        "es384-on-p256",
        lambda k: public_jwk(k.ec256, "k1", alg="ES384"),
        "key 'k1': alg ES384 does not fit a EC key",
    ),
    (
        "es256-on-p521",
        lambda k: public_jwk(k.ec521, "k1", alg="ES256"),
        "key 'k1': alg ES256 does not fit a EC key",
    ),
    (
        "hs256-on-rsa",
        lambda k: public_jwk(k.rsa, "k1", alg="HS256"),
        "key 'k1': alg HS256 does not fit a RSA key",
    ),
    (
        "es256-on-okp",
        lambda k: public_jwk(k.ed, "k1", alg="ES256"),
        "key 'k1': alg ES256 does not fit a OKP key",
    ),
    (
        "none-on-rsa",
        lambda k: public_jwk(k.rsa, "k1", alg="none"),
        "key 'k1': alg none does not fit a RSA key",
    ),
    (
        "x25519",
        lambda k: public_jwk(OKPKey.generate_key("X25519"), "k1"),
        "key 'k1': OKP curve X25519 cannot verify signatures here",
    ),
    (
        "ed448",
        lambda k: public_jwk(OKPKey.generate_key("Ed448"), "k1"),
        "key 'k1': OKP curve Ed448 cannot verify signatures here",
    ),
    (
        "secp256k1",
        lambda k: public_jwk(ECKey.generate_key("secp256k1"), "k1"),
        "key 'k1': EC curve secp256k1 is not supported",
    ),
    (
        "private-rsa",
        lambda k: dict(k.rsa.as_dict(private=True), kid="k1"),
        "key 'k1': is a private key; publish the public key",
    ),
    (
        "private-ec",
        lambda k: dict(k.ec256.as_dict(private=True), kid="k1"),
        "key 'k1': is a private key; publish the public key",
    ),
]


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in BAD_JWKS], ids=[i for i, _, _ in BAD_JWKS]
)
def test_a_bad_jwk_is_dropped_with_its_kid_and_reason(keys: Keys, make: Any, reason: str) -> None:
    parsed = parse_key_set(jwks(make(keys), public_jwk(keys.rsa2, "good")), ALGORITHMS)
    assert list(parsed.keys) == ["good"]
    assert parsed.refused == (reason,)


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in BAD_JWKS], ids=[i for i, _, _ in BAD_JWKS]
)
def test_a_bad_jwk_in_a_configured_set_is_a_startup_error(
    keys: Keys, make_settings: Any, make: Any, reason: str
) -> None:
    document = jwks(make(keys), public_jwk(keys.rsa2, "good"))
    assert (
        startup_error(make_settings, jwks_value_cfg(document))
        == f"[auth.jwt] jwk_set_value: {reason}"
    )


@pytest.mark.parametrize(
    "extra",
    [{"use": "sig"}, {"key_ops": ["verify"]}, {"key_ops": ["sign", "verify"]}, {"alg": "PS384"}],
    ids=["use-sig", "key_ops-verify", "key_ops-sign-verify", "alg"],
)
def test_verification_friendly_jwk_parameters_are_accepted(
    keys: Keys, extra: dict[str, Any]
) -> None:
    parsed = parse_key_set(jwks(public_jwk(keys.rsa, "k1", **extra)), ALGORITHMS)
    assert parsed.refused == ()
    assert "k1" in parsed.keys


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"kty": "RSA", "kid": "k1"}, "key 'k1': not a valid JWK"),
        ({"kty": "nope", "kid": "k1"}, "key 'k1': not a valid JWK"),
        (
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "k1"},
            "key 'k1': not a valid JWK",
        ),
        ({"kty": "RSA", "kid": 7}, "key 7: kid must be a string"),
        ("a string", "key (no kid): not a JSON object"),
    ],
    ids=["rsa-without-n", "unknown-kty", "ec-off-curve", "numeric-kid", "not-an-object"],
)
def test_malformed_entries_are_dropped(keys: Keys, entry: Any, reason: str) -> None:
    parsed = parse_key_set({"keys": [entry, public_jwk(keys.rsa, "good")]}, ALGORITHMS)
    assert list(parsed.keys) == ["good"]
    assert len(parsed.refused) == 1
    assert parsed.refused[0].startswith(reason)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON Web Key Set"),
        (b'{"keys": {}}', "not a JSON Web Key Set"),
        (b"{}", "not a JSON Web Key Set"),
    ],
)
def test_a_document_that_is_not_a_jwks_is_refused_whole(document: bytes, reason: str) -> None:
    with pytest.raises(KeyError_, match=reason):
        parse_key_set(document, ALGORITHMS)


def test_an_empty_configured_set_is_a_startup_error(make_settings: Any) -> None:
    message = startup_error(make_settings, jwks_value_cfg({"keys": []}))
    assert message == "[auth.jwt] jwk_set_value: the key set holds no key"


def test_a_jwk_set_value_that_is_not_base64_is_a_startup_error(make_settings: Any) -> None:
    message = startup_error(make_settings, {"jwk_set_value": "{not base64}"})
    assert message == "[auth.jwt] jwk_set_value: not valid base64"


def test_allow_list_drops_a_key_whose_algorithms_are_all_excluded(keys: Keys) -> None:
    parsed = parse_key_set(jwks(public_jwk(keys.ec256, "e"), public_jwk(keys.rsa, "r")), ("RS256",))
    assert list(parsed.keys) == ["r"]
    # Skipped with a warning (CONTRACT §6), not refused.
    assert parsed.refused == ()
    assert parsed.skipped == ("key 'e': none of its algorithms (ES256) is allowed by [algorithms]",)


def test_allowed_algorithms_directly(keys: Keys) -> None:
    assert allowed_algorithms(RSAKey.import_key(public_jwk(keys.rsa)), "k", ("RS256", "ES256")) == {
        "RS256"
    }
    assert allowed_algorithms(ECKey.import_key(public_jwk(keys.ec521)), None, ALGORITHMS) == {
        "ES512"
    }
    with pytest.raises(KeyError_, match=r"^key 'k': is a private key; configure the public key$"):
        allowed_algorithms(keys.rsa, "k", ALGORITHMS)


def test_keys_outside_the_allow_list_are_skipped_with_a_warning(
    keys: Keys, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """CONTRACT §6: an IdP's set with P-384 and Ed25519 keys under algorithms = RS256 ES256."""
    document = jwks(
        public_jwk(keys.rsa, "rsa"),
        public_jwk(keys.ec256, "p256"),
        public_jwk(keys.ec384, "p384"),
        public_jwk(keys.ed, "ed"),
    )
    settings = make_settings(
        {"auth.jwt": {**jwks_value_cfg(document), "algorithms": "RS256 ES256"}}
    )
    with caplog.at_level(logging.WARNING, logger="authsvc.keys.jwks_static"):
        provider = build_provider(settings)
    assert isinstance(provider, KeyIds)
    assert provider.kids() == ["rsa", "p256"]
    skipped = [r.getMessage() for r in caplog.records]
    assert any("key 'p384'" in m and "key skipped" in m for m in skipped), skipped
    assert any("key 'ed'" in m and "key skipped" in m for m in skipped), skipped


def test_a_set_the_allow_list_leaves_empty_is_a_startup_error(
    keys: Keys, make_settings: Any
) -> None:
    document = jwks(public_jwk(keys.ec384, "p384"), public_jwk(keys.ed, "ed"))
    message = startup_error(make_settings, {**jwks_value_cfg(document), "algorithms": "RS256"})
    assert message.startswith("[auth.jwt] jwk_set_value: the key set holds no usable key: ")
    assert "key 'p384'" in message and "key 'ed'" in message


# --------------------------------------------------------------------------- key files re-read
@pytest.mark.parametrize("source", ["key_file", "jwk_set_file"])
def test_a_rotated_key_file_takes_effect_and_a_bad_one_keeps_the_old_keys(
    keys: Keys, make_app: Any, tmp_path: Path, source: str
) -> None:
    """CONTRACT §6: re-read on change in the background; a refused file keeps the old keys
    and shows in the log, /api/admin/keys (last_error) and /api/health (problems, 200)."""
    from authsvc.file_watch import CHECK_EVERY

    path = tmp_path / ("key.pem" if source == "key_file" else "jwks.json")

    def publish(key: Key, kid: str) -> None:
        fresh = path.with_suffix(".new")
        if source == "key_file":
            fresh.write_bytes(public_pem(key))
        else:
            fresh.write_text(json.dumps(jwks(public_jwk(key, kid))))
        os.replace(fresh, path)  # an atomic swap, as a Kubernetes secret update is

    publish(keys.ec256, "k")
    jwt_values = {"enabled": "true", "header_name": "X-T", source: str(path)}
    if source == "key_file":
        jwt_values["key_id"] = "k"
    jwt_values.update(username_claim="sub", auto_sign_up="true")
    app = make_app({"auth.jwt": jwt_values}, clock=FakeClock())  # tokens.sign is at NOW
    client = app.test_client()

    def status(key: Key, alg: str) -> int:
        return int(
            client.get("/api/auth/verify", headers={"X-T": sign(key, alg, kid="k")}).status_code
        )

    assert status(keys.ec256, "ES256") == 200
    publish(keys.ec384, "k")
    deadline = time.monotonic() + 15
    while status(keys.ec384, "ES384") != 200:
        assert status(keys.ec256, "ES256") == 200, "no failed request while the file changes"
        assert time.monotonic() < deadline, "the new key did not take effect within 15 s"
        time.sleep(CHECK_EVERY / 4)
    assert status(keys.ec256, "ES256") == 401  # the old key left with the old file

    path.write_text("not a key at all")
    deadline = time.monotonic() + 15
    while "problems" not in client.get("/api/health").get_json():
        assert time.monotonic() < deadline, "the refused file was not reported"
        time.sleep(CHECK_EVERY / 4)
    health = client.get("/api/health")
    assert health.status_code == 200
    [problem] = health.get_json()["problems"]
    assert problem.startswith("jwt: the changed file is refused, keeping the keys read before")
    assert status(keys.ec384, "ES384") == 200  # still serving
