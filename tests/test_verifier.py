"""authsvc.verifier: every algorithm through every key source, the kid rule, claims, the cache.

Keys are real and generated once per session (tests/tokens.py); providers are
built from ``[auth.jwt]`` settings through their entry points; time is a
FakeClock handed to ``Verifier(clock=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from joserfc.errors import ExpiredTokenError, InvalidClaimError, MissingClaimError
from joserfc.jwt import JWTClaimsRegistry
from tokens import (
    ALL_ALGORITHMS,
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    NOW,
    SUB,
    FakeClock,
    Keys,
    MakeVerifier,
    build_provider,
    claims,
    forge,
    jwks,
    jwks_file_cfg,
    jwks_value_cfg,
    key_file_cfg,
    key_value_cfg,
    public_jwk,
    rsa_pkcs1_pem,
    self_signed_cert,
    sign,
    signing_keys,
    source_cfg,
)

from authsvc.config import ConfigError
from authsvc.errors import AuthsvcError, InvalidToken, MissingClaim
from authsvc.keys.base import KeyError_, VerificationKey
from authsvc.verifier import VerifiedToken, Verifier


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


@pytest.fixture
def make_verifier(make_settings: Any) -> MakeVerifier:
    """``make_verifier({source cfg}, clock=..., leeway="60s", ...)`` → Verifier."""

    def build(source: dict[str, str], clock: FakeClock | None = None, **jwt: str) -> Verifier:
        settings = make_settings({"auth.jwt": {**source, **jwt}})
        return Verifier(settings.jwt, build_provider(settings), clock=clock or FakeClock())

    return build


def refused(verifier: Verifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.status == 401
    assert info.value.message_id == "jwt.invalid"
    return info.value


# --------------------------------------------------------------------------- every algorithm
MATRIX = [
    (alg, source)
    for alg in ASYMMETRIC_ALGORITHMS
    for source in ("key_file", "key_value", "jwk_set_file", "jwk_set_value")
] + [
    (alg, source)
    for alg in HMAC_ALGORITHMS
    for source in ("hmac_secret", "jwk_set_file", "jwk_set_value")
]


@pytest.mark.parametrize("kid", [None, "k1"], ids=["no-kid", "kid"])
@pytest.mark.parametrize(("alg", "source"), MATRIX, ids=[f"{a}-{s}" for a, s in MATRIX])
def test_every_algorithm_verifies_through_every_key_source(
    keys: Keys,
    make_verifier: MakeVerifier,
    tmp_path: Path,
    alg: str,
    source: str,
    kid: str | None,
) -> None:
    key = keys.for_alg(alg)
    verifier = make_verifier(source_cfg(source, key, tmp_path, kid))
    token = sign(key, alg, **({"kid": kid} if kid else {}))

    verified = verifier.verify(token)

    assert isinstance(verified, VerifiedToken)
    assert verified.claims["sub"] == SUB
    assert verified.header["alg"] == alg
    assert verified.key.kid == kid
    assert alg in verified.key.algorithms
    assert verified.expires_at == NOW + 3600 + 60  # exp + leeway
    assert verified.fingerprint.startswith("sha256:")


@pytest.mark.parametrize("alg", ALL_ALGORITHMS)
def test_a_token_signed_by_another_key_of_the_same_type_is_refused(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, alg: str
) -> None:
    key = keys.for_alg(alg)
    source = "hmac_secret" if alg in HMAC_ALGORITHMS else "key_file"
    verifier = make_verifier(source_cfg(source, key, tmp_path))
    if alg in HMAC_ALGORITHMS:
        from joserfc.jwk import OctKey

        other: Any = OctKey.import_key(
            b"another secret of sixty-four bytes, for HS512 signatures.."
        )
    elif alg.startswith(("RS", "PS")):
        other = keys.rsa2
    elif alg.startswith("ES"):
        from joserfc.jwk import ECKey

        other = ECKey.generate_key(key.curve_name)  # type: ignore[attr-defined]
    else:
        from joserfc.jwk import OKPKey

        other = OKPKey.generate_key("Ed25519")
    error = refused(verifier, sign(other, alg))
    assert f"signature does not verify with {alg} and the configured key" in error.reason


# --------------------------------------------------------------------------- PEM forms
@pytest.mark.parametrize(
    ("key_name", "alg"), [("rsa", "RS256"), ("ec256", "ES256"), ("ec384", "ES384"), ("ed", "EdDSA")]
)
@pytest.mark.parametrize("source", ["key_file", "key_value"])
def test_x509_certificate_is_accepted_as_a_key(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, key_name: str, alg: str, source: str
) -> None:
    # Grafana refuses CERTIFICATE blocks; CONTRACT accepts them (IdPs publish certificates).
    key = getattr(keys, key_name)
    pem = self_signed_cert(key).public_bytes(Encoding.PEM)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    cfg = key_file_cfg(tmp_path, pem) if source == "key_file" else key_value_cfg(pem)
    verifier = make_verifier(cfg)
    assert verifier.verify(sign(key, alg)).claims["sub"] == SUB


@pytest.mark.parametrize("source", ["key_file", "key_value"])
def test_rsa_public_key_pkcs1_pem_is_accepted(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, source: str
) -> None:
    pem = rsa_pkcs1_pem(keys.rsa)
    assert pem.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    cfg = key_file_cfg(tmp_path, pem) if source == "key_file" else key_value_cfg(pem)
    assert make_verifier(cfg).verify(sign(keys.rsa, "PS512")).claims["sub"] == SUB


PRIVATE_FORMATS = {
    "pkcs8-rsa": ("rsa", PrivateFormat.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    "pkcs1-rsa": ("rsa", PrivateFormat.TraditionalOpenSSL, b"-----BEGIN RSA PRIVATE KEY-----"),
    "sec1-ec": ("ec256", PrivateFormat.TraditionalOpenSSL, b"-----BEGIN EC PRIVATE KEY-----"),
    "pkcs8-ed25519": ("ed", PrivateFormat.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
}


@pytest.mark.parametrize("form", PRIVATE_FORMATS)
@pytest.mark.parametrize("source", ["key_file", "key_value"])
def test_a_private_key_pem_is_refused_with_advice(
    keys: Keys, make_settings: Any, tmp_path: Path, form: str, source: str
) -> None:
    # Grafana accepts private keys in key_file and derives the public key; we refuse them:
    # a private key has no business on a verifying host.
    key_name, fmt, begin = PRIVATE_FORMATS[form]
    private = getattr(keys, key_name).private_key
    pem = private.private_bytes(Encoding.PEM, fmt, NoEncryption())
    assert pem.startswith(begin)
    cfg = key_file_cfg(tmp_path, pem) if source == "key_file" else key_value_cfg(pem)
    with pytest.raises(KeyError_) as info:
        build_provider(make_settings({"auth.jwt": cfg}))
    assert f"[auth.jwt] {source}" in str(info.value)
    assert "configure the public key" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
    ids=["empty", "text", "bad-der"],
)
def test_a_key_file_that_is_not_pem_is_a_startup_error(
    make_settings: Any, tmp_path: Path, content: bytes
) -> None:
    # Grafana: ErrFailedToParsePemFile.
    with pytest.raises(KeyError_, match=r"\[auth\.jwt\] key_file: not a PEM public key"):
        build_provider(make_settings({"auth.jwt": key_file_cfg(tmp_path, content)}))


def test_a_key_value_that_is_not_base64_is_a_startup_error(make_settings: Any) -> None:
    with pytest.raises(KeyError_, match=r"\[auth\.jwt\] key_value: not valid base64"):
        build_provider(make_settings({"auth.jwt": {"key_value": "%%%not*base64"}}))


def test_a_private_jwk_in_a_configured_set_is_a_startup_error(
    keys: Keys, make_settings: Any
) -> None:
    private = dict(keys.rsa.as_dict(private=True), kid="k1")
    with pytest.raises(KeyError_) as info:
        build_provider(make_settings({"auth.jwt": jwks_value_cfg(jwks(private))}))
    assert "key 'k1'" in str(info.value)
    assert "private key" in str(info.value)


# --------------------------------------------------------------------------- the kid rule
@pytest.mark.parametrize("source", ["key_file", "key_value", "hmac_secret"])
def test_without_key_id_only_kidless_tokens_match(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, source: str
) -> None:
    key, alg = (keys.oct, "HS256") if source == "hmac_secret" else (keys.rsa, "RS256")
    verifier = make_verifier(source_cfg(source, key, tmp_path))
    assert verifier.verify(sign(key, alg)).key.kid is None
    error = refused(verifier, sign(key, alg, kid="k1"))
    assert error.reason == "kid 'k1' not in key set (keys: (no kid))"


@pytest.mark.parametrize("source", ["key_file", "key_value", "hmac_secret"])
def test_with_key_id_only_that_kid_matches(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, source: str
) -> None:
    key, alg = (keys.oct, "HS384") if source == "hmac_secret" else (keys.ec256, "ES256")
    verifier = make_verifier(source_cfg(source, key, tmp_path, kid="k1"))
    assert verifier.verify(sign(key, alg, kid="k1")).key.kid == "k1"
    error = refused(verifier, sign(key, alg))
    assert error.reason == "token has no kid and no key without a kid is configured (keys: k1)"
    for other in ("k2", "K1", "k1 ", " k1", "k"):
        error = refused(verifier, sign(key, alg, kid=other))
        assert error.reason == f"kid {other!r} not in key set (keys: k1)"


@pytest.mark.parametrize("source", ["jwk_set_file", "jwk_set_value"])
def test_kid_lookup_in_a_key_set(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, source: str
) -> None:
    document = jwks(public_jwk(keys.rsa, "k1"), public_jwk(keys.ec256, "k2"))
    cfg = (
        jwks_file_cfg(tmp_path, document) if source == "jwk_set_file" else jwks_value_cfg(document)
    )
    verifier = make_verifier(cfg)
    assert verifier.verify(sign(keys.rsa, "RS256", kid="k1")).key.kid == "k1"
    assert verifier.verify(sign(keys.ec256, "ES256", kid="k2")).key.kid == "k2"

    error = refused(verifier, sign(keys.rsa, "RS256", kid="k7"))
    assert error.reason == "kid 'k7' not in key set (keys: k1, k2)"
    error = refused(verifier, sign(keys.rsa, "RS256"))
    assert error.reason == "token has no kid and no key without a kid is configured (keys: k1, k2)"
    # The right key type under the wrong kid: the kid decides, not a search over keys.
    error = refused(verifier, sign(keys.rsa, "RS256", kid="k2"))
    assert error.reason.startswith("algorithm RS256 not allowed for an EC key (kid 'k2')")


def test_a_kidless_key_in_a_set_matches_only_kidless_tokens(
    keys: Keys, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(
        jwks_value_cfg(jwks(public_jwk(keys.rsa), public_jwk(keys.ec256, "k2")))
    )
    assert verifier.verify(sign(keys.rsa, "RS256")).key.kid is None
    assert verifier.verify(sign(keys.ec256, "ES256", kid="k2")).key.kid == "k2"
    error = refused(verifier, sign(keys.rsa, "RS256", kid="k1"))
    assert error.reason == "kid 'k1' not in key set (keys: (no kid), k2)"


# --------------------------------------------------------------------------- algorithms
FOREIGN = [
    ("rsa", "HS256", "algorithm HS256 not allowed for an RSA key"),
    ("rsa", "ES256", "algorithm ES256 not allowed for an RSA key"),
    ("rsa", "EdDSA", "algorithm EdDSA not allowed for an RSA key"),
    ("ec256", "ES384", "algorithm ES384 not allowed for an EC key; it allows ES256"),
    ("ec256", "RS256", "algorithm RS256 not allowed for an EC key; it allows ES256"),
    ("ec384", "ES256", "algorithm ES256 not allowed for an EC key; it allows ES384"),
    ("ec521", "ES384", "algorithm ES384 not allowed for an EC key; it allows ES512"),
    ("ed", "RS256", "algorithm RS256 not allowed for an Ed25519 key; it allows Ed25519, EdDSA"),
    ("ed", "HS512", "algorithm HS512 not allowed for an Ed25519 key"),
    ("oct", "RS256", "algorithm RS256 not allowed for an HMAC (oct) key"),
    ("oct", "ES256", "algorithm ES256 not allowed for an HMAC (oct) key"),
    ("oct", "EdDSA", "algorithm EdDSA not allowed for an HMAC (oct) key"),
]


@pytest.mark.parametrize(
    ("key_name", "alg", "reason"), FOREIGN, ids=[f"{k}-{a}" for k, a, _ in FOREIGN]
)
def test_each_key_verifies_only_its_own_types_algorithms(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path, key_name: str, alg: str, reason: str
) -> None:
    key = getattr(keys, key_name)
    source = "hmac_secret" if key_name == "oct" else "key_file"
    verifier = make_verifier(source_cfg(source, key, tmp_path))
    # Signed correctly with a key of the token's own type: only the key-type rule refuses it.
    error = refused(verifier, sign(keys.for_alg(alg), alg))
    assert error.reason.startswith(reason)


def test_rsa_key_names_every_algorithm_it_allows(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path
) -> None:
    verifier = make_verifier(source_cfg("key_file", keys.rsa, tmp_path))
    error = refused(verifier, sign(keys.oct, "HS256"))
    assert error.reason == (
        "algorithm HS256 not allowed for an RSA key; "
        "it allows PS256, PS384, PS512, RS256, RS384, RS512"
    )


def test_algorithms_allow_list_narrows(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path
) -> None:
    verifier = make_verifier(source_cfg("key_file", keys.rsa, tmp_path), algorithms="RS256, PS512")
    assert verifier.verify(sign(keys.rsa, "RS256")).claims["sub"] == SUB
    assert verifier.verify(sign(keys.rsa, "PS512")).claims["sub"] == SUB
    for alg in ("RS384", "RS512", "PS256", "PS384"):
        error = refused(verifier, sign(keys.rsa, alg))
        assert (
            error.reason == f"algorithm {alg} is not allowed ([auth.jwt] algorithms: RS256 PS512)"
        )
    error = refused(verifier, sign(keys.oct, "HS256"))
    assert error.reason.startswith("algorithm HS256 is not allowed")


def test_eddsa_and_ed25519_are_separately_allowed(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path
) -> None:
    verifier = make_verifier(source_cfg("key_file", keys.ed, tmp_path), algorithms="Ed25519")
    assert verifier.verify(sign(keys.ed, "Ed25519")).claims["sub"] == SUB
    assert refused(verifier, sign(keys.ed, "EdDSA")).reason.startswith(
        "algorithm EdDSA is not allowed"
    )


def test_jwk_alg_narrows_a_key_to_that_algorithm(keys: Keys, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(jwks_value_cfg(jwks(public_jwk(keys.rsa, "k1", alg="PS256"))))
    assert verifier.verify(sign(keys.rsa, "PS256", kid="k1")).key.algorithms == {"PS256"}
    error = refused(verifier, sign(keys.rsa, "RS256", kid="k1"))
    assert error.reason == "algorithm RS256 not allowed for an RSA key (kid 'k1'); it allows PS256"


def test_a_key_none_of_whose_algorithms_is_allowed_is_a_startup_error(
    keys: Keys, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(
        {"auth.jwt": {**source_cfg("key_file", keys.ec256, tmp_path), "algorithms": "RS256"}}
    )
    with pytest.raises(KeyError_, match=r"none of its algorithms \(ES256\) is allowed"):
        build_provider(settings)


@pytest.mark.parametrize("value", ["none", "RS256 none", "NONE", "None,RS256"])
def test_none_can_never_be_listed(make_settings: Any, value: str) -> None:
    with pytest.raises(ConfigError, match="'none' can never be allowed"):
        make_settings({"auth.jwt": {"algorithms": value}})


def test_an_unknown_algorithm_cannot_be_listed(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="unknown algorithm 'HS1'"):
        make_settings({"auth.jwt": {"algorithms": "RS256 HS1"}})


# --------------------------------------------------------------------------- time claims
@pytest.fixture
def rsa_verifier(keys: Keys, make_verifier: MakeVerifier, tmp_path: Path) -> Any:
    """``rsa_verifier(clock=..., **jwt)``: the RSA key from key_file, a FakeClock at NOW."""

    def build(clock: FakeClock | None = None, **jwt: str) -> Verifier:
        return make_verifier(source_cfg("key_file", keys.rsa, tmp_path), clock=clock, **jwt)

    return build


def rs(payload: dict[str, Any]) -> str:
    return sign(signing_keys().rsa, "RS256", payload)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(3600, True), (1, True), (0, True), (-59, True), (-61, False), (-3600, False)],
)
def test_exp_with_the_default_one_minute_leeway(rsa_verifier: Any, offset: int, ok: bool) -> None:
    verifier = rsa_verifier()
    token = rs(claims(exp=NOW + offset))
    if ok:
        assert verifier.verify(token).claims["exp"] == NOW + offset
    else:
        assert refused(verifier, token).reason.startswith("token expired ")


@pytest.mark.parametrize(
    ("ago", "shown"),
    [(192, "3m12s"), (61, "1m1s"), (3723, "1h2m3s"), (86400, "1d"), (90061, "1d1h1m1s")],
)
def test_expired_reason_says_by_how_long(rsa_verifier: Any, ago: int, shown: str) -> None:
    error = refused(rsa_verifier(), rs(claims(exp=NOW - ago)))
    assert error.reason == f"token expired {shown} ago"


def test_leeway_is_configurable(rsa_verifier: Any) -> None:
    strict = rsa_verifier(leeway="0")
    assert refused(strict, rs(claims(exp=NOW))).reason == "token expired 0s ago"
    assert strict.verify(rs(claims(exp=NOW + 1))).claims["sub"] == SUB
    lenient = rsa_verifier(leeway="10m")
    assert lenient.verify(rs(claims(exp=NOW - 599))).claims["sub"] == SUB
    assert refused(lenient, rs(claims(exp=NOW - 601))).reason == "token expired 10m1s ago"


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-3600, None),
        (0, None),
        (59, None),
        (61, "token not valid yet: nbf is 1m1s in the future"),
        (300, "token not valid yet: nbf is 5m in the future"),
    ],
)
def test_nbf_with_leeway(rsa_verifier: Any, offset: int, reason: str | None) -> None:
    token = rs(claims(nbf=NOW + offset))
    if reason is None:
        assert rsa_verifier().verify(token).claims["nbf"] == NOW + offset
    else:
        assert refused(rsa_verifier(), token).reason == reason


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-3600, None),
        (0, None),
        (59, None),
        (61, "token issued in the future: iat is 1m1s ahead"),
        (7200, "token issued in the future: iat is 2h ahead"),
    ],
)
def test_iat_in_the_future(rsa_verifier: Any, offset: int, reason: str | None) -> None:
    token = rs(claims(iat=NOW + offset, exp=NOW + 10000))
    if reason is None:
        assert rsa_verifier().verify(token).claims["iat"] == NOW + offset
    else:
        assert refused(rsa_verifier(), token).reason == reason


@pytest.fixture
def time_verifiers(rsa_verifier: Any) -> tuple[FakeClock, dict[tuple[int, bool], Verifier]]:
    """One clock, and an uncached verifier per (leeway, require_exp), for every example."""
    clock = FakeClock()
    return clock, {
        (leeway, require): rsa_verifier(
            clock=clock,
            leeway=f"{leeway}s",
            require_exp=str(require).lower(),
            verified_cache_size="0",
        )
        for leeway in (0, 60, 600)
        for require in (False, True)
    }


# The boundaries: "now" is NOW - 1 or NOW in whole seconds, the leeway 0, 60 or 600.
_EDGES = sorted(
    {NOW + sign * leeway + d for sign in (-1, 1) for leeway in (0, 60, 600) for d in (-2, -1, 0, 1)}
)
_TIME = st.one_of(
    st.sampled_from(_EDGES),
    st.integers(NOW - 4000, NOW + 4000),
    st.floats(NOW - 4000, NOW + 4000, allow_nan=False),
)


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(
    times={"exp": NOW - 60},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=True,
)
@example(
    times={"exp": NOW - 59},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=True,
)
@example(
    times={"exp": NOW},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=0,
    require_exp=True,
)
@example(
    times={"nbf": NOW + 60},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=False,
)
@example(
    times={"nbf": NOW + 61},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=False,
)
@example(
    times={"iat": NOW + 60},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=False,
)
@example(
    times={"iat": NOW + 61},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=False,
)
@example(
    times={"exp": None},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=True,
)
@example(
    times={"exp": None},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=60,
    require_exp=False,
)
@example(
    times={"exp": NOW - 600, "nbf": NOW + 600},
    order=["sub", "nbf", "exp", "iat"],
    now=NOW + 0.5,
    leeway=0,
    require_exp=True,
)
@example(
    times={"exp": NOW - 600, "nbf": NOW + 600},
    order=["sub", "exp", "nbf", "iat"],
    now=NOW + 0.5,
    leeway=0,
    require_exp=True,
)
@example(
    times={"iat": NOW + 600, "nbf": NOW + 600},
    order=["iat", "sub", "nbf", "exp"],
    now=NOW + 0.5,
    leeway=0,
    require_exp=False,
)
@given(
    times=st.dictionaries(
        st.sampled_from(["exp", "nbf", "iat"]), st.one_of(st.none(), _TIME), max_size=3
    ),
    order=st.permutations(["sub", "exp", "nbf", "iat"]),
    now=st.floats(NOW - 0.99, NOW + 0.99, allow_nan=False),
    leeway=st.sampled_from([0, 60, 600]),
    require_exp=st.booleans(),
)
def test_time_claims_are_judged_exactly_as_joserfc_judges_them(
    time_verifiers: tuple[FakeClock, dict[tuple[int, bool], Verifier]],
    times: dict[str, Any],
    order: list[str],
    now: float,
    leeway: int,
    require_exp: bool,
) -> None:
    """exp/nbf/iat are checked by our own code (speed); joserfc's registry is the referee."""
    payload = {name: ({"sub": SUB} | times)[name] for name in order if name in {"sub", *times}}
    referee = JWTClaimsRegistry(
        now=int(now), leeway=leeway, **({"exp": {"essential": True}} if require_exp else {})
    )
    try:
        referee.validate(dict(payload))
        expected = None
    except MissingClaimError:
        expected = "missing"
    except ExpiredTokenError:
        expected = "exp"
    except InvalidClaimError as exc:
        expected = exc.claim
    clock, verifiers = time_verifiers
    clock.now = now
    verifier = verifiers[leeway, require_exp]
    token = rs(payload)
    if expected is None:
        assert verifier.verify(token).claims == payload
        return
    reason = refused(verifier, token).reason
    if times.get("nbf", 0) is None or times.get("iat", 0) is None:
        return  # a null nbf/iat is refused by our type check before any time is compared
    # Of several failing claims joserfc reports the first in the token's order; so do we.
    if expected == "missing":
        assert reason == "claim 'exp' is missing ([auth.jwt] require_exp = true)"
    elif expected == "exp":
        assert reason.startswith(("token expired ", "claim 'exp' is invalid")), reason
    else:
        assert f" {expected} is " in reason, (expected, reason)


def test_require_exp_true_by_default(rsa_verifier: Any) -> None:
    for token in (rs(claims(exp=None)), rs({**claims(), "exp": None})):
        error = refused(rsa_verifier(), token)
        assert error.reason == "claim 'exp' is missing ([auth.jwt] require_exp = true)"


def test_require_exp_false_accepts_a_token_without_exp(rsa_verifier: Any) -> None:
    # Grafana's behaviour, by opt-in.
    verified = rsa_verifier(require_exp="false").verify(rs(claims(exp=None)))
    assert verified.claims["sub"] == SUB
    assert verified.expires_at is None


@pytest.mark.parametrize(
    ("iat", "exp", "reason"),
    [
        (NOW, NOW + 3600, None),
        (NOW - 1800, NOW + 1800, None),
        (None, NOW + 3600, None),
        (NOW, NOW + 3601, "token lifetime 1h1s exceeds max_token_lifetime 1h"),
        (NOW, NOW + 7200, "token lifetime 2h exceeds max_token_lifetime 1h"),
        # exp - iat too long although little of it is left
        (NOW - 3 * 3600, NOW + 1800, "token lifetime 3h30m exceeds max_token_lifetime 1h"),
        # no iat: exp - now counts
        (None, NOW + 5400, "token lifetime 1h30m exceeds max_token_lifetime 1h"),
        # an iat that lies (claims a short life) does not hide a far exp
        (NOW + 60, NOW + 5400, "token lifetime 1h30m exceeds max_token_lifetime 1h"),
    ],
)
def test_max_token_lifetime(
    rsa_verifier: Any, iat: int | None, exp: int, reason: str | None
) -> None:
    verifier = rsa_verifier(max_token_lifetime="1h")
    token = rs(claims(iat=iat, exp=exp))
    if reason is None:
        assert verifier.verify(token).claims["sub"] == SUB
    else:
        assert refused(verifier, token).reason == reason


def test_max_token_lifetime_needs_exp_even_when_exp_is_optional(rsa_verifier: Any) -> None:
    verifier = rsa_verifier(max_token_lifetime="1h", require_exp="false")
    error = refused(verifier, rs(claims(exp=None)))
    assert error.reason == "claim 'exp' is missing and max_token_lifetime is set"


def test_max_token_lifetime_off_by_default(rsa_verifier: Any) -> None:
    token = rs(claims(exp=NOW + 10 * 365 * 86400))
    assert rsa_verifier().verify(token).claims["sub"] == SUB


# --------------------------------------------------------------------------- registered claim types
@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", 5),
        ("iss", ["a"]),
        ("aud", 5),
        ("aud", [1]),
        ("aud", {"a": 1}),
        ("exp", "1700003600"),
        ("exp", True),
        ("exp", [NOW + 60]),
        ("nbf", "0"),
        ("nbf", False),
        ("iat", "now"),
        ("iat", None),
        ("jti", 5),
    ],
    ids=lambda v: json.dumps(v) if not isinstance(v, str) else v,
)
def test_registered_claims_of_the_wrong_type_are_refused(
    rsa_verifier: Any, claim: str, value: Any
) -> None:
    payload = {**claims(), claim: value}
    error = refused(rsa_verifier(), rs(payload))
    assert error.reason.startswith(f"claim {claim!r} is invalid")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused(keys: Keys, rsa_verifier: Any, literal: str) -> None:
    # Python's json accepts NaN/Infinity; JSON does not, and NaN would never compare as expired.
    payload = f'{{"sub":"{SUB}","exp":{literal}}}'.encode()
    error = refused(rsa_verifier(), forge(keys.rsa, {"alg": "RS256"}, payload))
    assert error.reason == "malformed token: payload is not JSON"


@pytest.mark.parametrize(
    "payload",
    [
        f'{{"sub":"{SUB}","exp":1e400}}',
        f'{{"sub":"{SUB}","exp":1{"0" * 400}}}',
        f'{{"sub":"{SUB}","exp":-1{"0" * 400}}}',
        f'{{"sub":"{SUB}","exp":{NOW + 60},"nbf":1e400}}',
        f'{{"sub":"{SUB}","exp":{NOW + 60},"nbf":1{"0" * 400}}}',
        f'{{"sub":"{SUB}","exp":{NOW + 60},"iat":1{"0" * 400}}}',
    ],
    ids=["exp-inf", "exp-huge", "exp-huge-negative", "nbf-inf", "nbf-huge", "iat-huge"],
)
def test_numeric_dates_out_of_float_range_are_refused(
    keys: Keys, rsa_verifier: Any, payload: str
) -> None:
    # A signed token whose exp/nbf/iat does not fit a float must be refused, not crash (500).
    refused(rsa_verifier(), forge(keys.rsa, {"alg": "RS256"}, payload.encode()))


@pytest.mark.parametrize(
    "sub",
    [None, "", 5, ["foo"], {"id": "foo"}, True],
    ids=["null", "empty", "number", "list", "object", "bool"],
)
def test_missing_or_empty_or_non_string_sub_is_missing_claim(rsa_verifier: Any, sub: Any) -> None:
    for payload in ({**claims(), "sub": sub}, claims(sub=None)):
        with pytest.raises(MissingClaim) as info:
            rsa_verifier().verify(rs(payload))
        assert info.value.message_id == "jwt.missing_claim"
        assert info.value.status == 401
        assert "'sub'" in info.value.reason


# --------------------------------------------------------------------------- expect_claims
def expecting(rsa_verifier: Any, expected: dict[str, Any]) -> Verifier:
    verifier: Verifier = rsa_verifier(expect_claims=json.dumps(expected))
    return verifier


def test_expect_iss_exact(rsa_verifier: Any) -> None:
    verifier = expecting(rsa_verifier, {"iss": "http://foo"})
    assert verifier.verify(rs(claims(iss="http://foo"))).claims["iss"] == "http://foo"
    for bad in ("http://bar", "http://foo/", "HTTP://FOO"):
        error = refused(verifier, rs(claims(iss=bad)))
        assert error.reason == f'claim \'iss\' mismatch: expected "http://foo", got "{bad}"'
    error = refused(verifier, rs(claims()))
    assert error.reason == "claim 'iss' is missing: expected \"http://foo\""


def test_expect_sub_exact(rsa_verifier: Any) -> None:
    verifier = expecting(rsa_verifier, {"sub": "foo"})
    assert verifier.verify(rs(claims(sub="foo"))).claims["sub"] == "foo"
    error = refused(verifier, rs(claims(sub="foobar")))
    assert error.reason == 'claim \'sub\' mismatch: expected "foo", got "foobar"'


@pytest.mark.parametrize(
    ("expected", "aud", "ok"),
    [
        ("api", "api", True),
        ("api", ["web", "api"], True),
        ("api", ["api"], True),
        (["api", "admin"], "admin", True),
        (["api", "admin"], ["web", "admin"], True),
        ("api", "web", False),
        ("api", ["web", "app"], False),
        ("api", [], False),
        ("api", None, False),
        (["api", "admin"], ["web"], False),
        ("api", "API", False),
    ],
)
def test_expect_aud_any_of(rsa_verifier: Any, expected: Any, aud: Any, ok: bool) -> None:
    verifier = expecting(rsa_verifier, {"aud": expected})
    token = rs(claims(aud=aud))
    if ok:
        assert verifier.verify(token).claims["aud"] == aud
    else:
        assert refused(verifier, token).reason.startswith("claim 'aud' mismatch: expected any of [")


def test_aud_mismatch_reason_lists_both_sides(rsa_verifier: Any) -> None:
    error = refused(expecting(rsa_verifier, {"aud": "api"}), rs(claims(aud="web")))
    assert error.reason == "claim 'aud' mismatch: expected any of [api], got [web]"
    error = refused(expecting(rsa_verifier, {"aud": ["api", "admin"]}), rs(claims(aud=["a", "b"])))
    assert error.reason == "claim 'aud' mismatch: expected any of [api, admin], got [a, b]"
    error = refused(expecting(rsa_verifier, {"aud": "api"}), rs(claims()))
    assert error.reason == "claim 'aud' mismatch: expected any of [api], got []"


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0, False, False),
        (1, 1, True),
        (1, 1.0, True),  # one JSON number, however it is spelled
        (1, "1", False),
        ("1", 1, False),
        (None, None, True),
        (None, False, False),
        ("", None, False),
        ({"id": 1, "roles": ["a", "b"]}, {"roles": ["a", "b"], "id": 1}, True),
        ({"id": 1, "roles": ["a", "b"]}, {"id": 1, "roles": ["b", "a"]}, False),
        ({"id": 1, "roles": ["a", "b"]}, {"id": True, "roles": ["a", "b"]}, False),
        ({"id": 1, "roles": ["a", "b"]}, {"id": "1", "roles": ["a", "b"]}, False),
        ({"id": 1}, {"id": 1, "extra": 2}, False),
        ({"id": 1, "extra": 2}, {"id": 1}, False),
        ([1, [True, {"a": None}]], [1, [True, {"a": None}]], True),
        ([1, [True, {"a": None}]], [1, [1, {"a": None}]], False),
        ([1, 2], [1, 2, 3], False),
        ([], {}, False),
        ("a", ["a"], False),  # only aud is any-of
    ],
)
def test_other_expected_claims_are_type_sensitive_deep_equality(
    rsa_verifier: Any, expected: Any, actual: Any, ok: bool
) -> None:
    verifier = expecting(rsa_verifier, {"custom": expected})
    token = rs({**claims(), "custom": actual})
    if ok:
        assert verifier.verify(token).claims["custom"] == actual
    else:
        error = refused(verifier, token)
        assert error.reason == (
            f"claim 'custom' mismatch: expected {json.dumps(expected, separators=(',', ':'))}, "
            f"got {json.dumps(actual, separators=(',', ':'))}"
        )


def test_an_expected_custom_claim_must_be_present(rsa_verifier: Any) -> None:
    verifier = expecting(rsa_verifier, {"tenant": "acme", "level": 3})
    assert verifier.verify(rs(claims(tenant="acme", level=3))).claims["level"] == 3
    error = refused(verifier, rs(claims(tenant="acme")))
    assert error.reason == "claim 'level' is missing: expected 3"


# --------------------------------------------------------------------------- verified-token cache
class MutableKeySet:
    """The verifier's neighbour: a key set the test edits in place."""

    def __init__(self, keys: dict[str | None, VerificationKey]) -> None:
        self.keys = keys

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self.keys.get(kid)

    def kids(self) -> list[str | None]:
        return list(self.keys)

    def refresh(self) -> None:
        """Nothing to re-read: the test edits ``keys``."""


def rsa_entry(kid: str = "k1") -> VerificationKey:
    from joserfc.jwk import RSAKey

    public = RSAKey.import_key(public_jwk(signing_keys().rsa))
    return VerificationKey(kid, public, frozenset({"RS256"}))


def cached_verifier(make_settings: Any, keyset: Any, clock: FakeClock, **jwt: str) -> Verifier:
    settings = make_settings({"auth.jwt": jwt})
    return Verifier(settings.jwt, keyset, clock=clock)


def test_a_second_verify_returns_the_cached_object(keys: Keys, make_settings: Any) -> None:
    keyset = MutableKeySet({"k1": rsa_entry()})
    verifier = cached_verifier(make_settings, keyset, FakeClock())
    token = sign(keys.rsa, "RS256", kid="k1")
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    # The AWS ALB spelling of the same token is the same token.
    padded = ".".join(part + "=" * (-len(part) % 4) for part in token.split("."))
    assert verifier.verify(padded) is first


def test_the_cache_never_extends_a_token_past_exp(keys: Keys, make_settings: Any) -> None:
    clock = FakeClock()
    verifier = cached_verifier(make_settings, MutableKeySet({"k1": rsa_entry()}), clock)
    token = sign(keys.rsa, "RS256", claims(exp=NOW + 10), kid="k1")
    first = verifier.verify(token)
    assert first.expires_at == NOW + 10 + 60
    clock.advance(69)  # exp + leeway - 1
    assert verifier.verify(token) is first
    clock.advance(1)
    assert refused(verifier, token).reason == "token expired 1m ago"
    clock.advance(3600)
    assert refused(verifier, token).reason == "token expired 1h1m ago"


def test_a_key_leaving_the_key_set_invalidates_its_cached_tokens(
    keys: Keys, make_settings: Any
) -> None:
    keyset = MutableKeySet({"k1": rsa_entry("k1"), "k2": rsa_entry("k2")})
    verifier = cached_verifier(make_settings, keyset, FakeClock())
    t1 = sign(keys.rsa, "RS256", kid="k1")
    t2 = sign(keys.rsa, "RS256", kid="k2")
    first1, first2 = verifier.verify(t1), verifier.verify(t2)

    del keyset.keys["k1"]
    assert refused(verifier, t1).reason == "kid 'k1' not in key set (keys: k2)"
    assert verifier.verify(t2) is first2

    # The same kid back with the same key material is a new key: verified afresh.
    keyset.keys["k1"] = rsa_entry("k1")
    again = verifier.verify(t1)
    assert again is not first1
    assert again.claims == first1.claims
    assert verifier.verify(t1) is again


def test_a_kid_rotated_to_other_key_material_refuses_cached_tokens(
    keys: Keys, make_settings: Any
) -> None:
    from joserfc.jwk import RSAKey

    keyset = MutableKeySet({"k1": rsa_entry("k1")})
    verifier = cached_verifier(make_settings, keyset, FakeClock())
    token = sign(keys.rsa, "RS256", kid="k1")
    verifier.verify(token)
    other = RSAKey.import_key(public_jwk(keys.rsa2))
    keyset.keys["k1"] = VerificationKey("k1", other, frozenset({"RS256"}))
    error = refused(verifier, token)
    assert error.reason == "signature does not verify with RS256 and kid 'k1'"


def test_verified_cache_size_zero_turns_the_cache_off(keys: Keys, make_settings: Any) -> None:
    verifier = cached_verifier(
        make_settings, MutableKeySet({"k1": rsa_entry()}), FakeClock(), verified_cache_size="0"
    )
    token = sign(keys.rsa, "RS256", kid="k1")
    first = verifier.verify(token)
    second = verifier.verify(token)
    assert second is not first
    assert second.claims == first.claims


def test_the_cache_is_bounded(keys: Keys, make_settings: Any) -> None:
    verifier = cached_verifier(
        make_settings, MutableKeySet({"k1": rsa_entry()}), FakeClock(), verified_cache_size="2"
    )
    tokens = [sign(keys.rsa, "RS256", claims(jti=str(i)), kid="k1") for i in range(3)]
    first = [verifier.verify(t) for t in tokens]
    assert verifier.verify(tokens[2]) is first[2]
    assert verifier.verify(tokens[0]) is not first[0]  # the oldest was evicted


def test_forget_drops_every_remembered_token(keys: Keys, make_settings: Any) -> None:
    verifier = cached_verifier(make_settings, MutableKeySet({"k1": rsa_entry()}), FakeClock())
    token = sign(keys.rsa, "RS256", kid="k1")
    first = verifier.verify(token)
    verifier.forget()
    assert verifier.verify(token) is not first


def test_refusals_are_not_cached(keys: Keys, make_settings: Any) -> None:
    keyset = MutableKeySet({})
    verifier = cached_verifier(make_settings, keyset, FakeClock())
    token = sign(keys.rsa, "RS256", kid="k1")
    refused(verifier, token)
    keyset.keys["k1"] = rsa_entry()
    assert verifier.verify(token).key.kid == "k1"


# --------------------------------------------------------------------------- AWS ALB padding
def test_aws_alb_padded_segments_are_accepted(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path
) -> None:
    # ALB signs ES256 with a kid and private header fields, and pads each segment with '='.
    header = {
        "typ": "JWT",
        "kid": "a7f4b6f2-alb",
        "alg": "ES256",
        "iss": "https://idp.example.com",
        "client": "client-id",
        "signer": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x/y",
        "exp": NOW + 120,
    }
    token = forge(keys.ec256, header, claims(email="a@example.com"))
    padded = ".".join(part + "=" * (-len(part) % 4) for part in token.split("."))
    assert padded.count("=") > 0
    verifier = make_verifier(source_cfg("key_file", keys.ec256, tmp_path, kid="a7f4b6f2-alb"))
    verified = verifier.verify(padded)
    assert verified.claims["email"] == "a@example.com"
    assert verified.header["signer"].startswith("arn:aws:elasticloadbalancing")


def test_errors_are_authsvc_errors_with_a_public_message(
    keys: Keys, make_verifier: MakeVerifier, tmp_path: Path
) -> None:
    verifier = make_verifier(source_cfg("key_file", keys.rsa, tmp_path))
    with pytest.raises(AuthsvcError) as info:
        verifier.verify("a.b")
    assert info.value.message == "Invalid JWT"
    assert info.value.reason == "malformed token: expected 3 dot-separated segments, got 2"
