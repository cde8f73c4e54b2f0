"""Attacks on the verifier: forged headers, algorithm games, malformed tokens, fuzzing.

Every refusal must be an InvalidToken (or another AuthsvcError) with status 401
and a reason a log can show safely; nothing else may escape the verifier.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import Key, OctKey, RSAKey
from pytest_httpserver import HTTPServer
from tokens import (
    NOW,
    SUB,
    FakeClock,
    Keys,
    b64u,
    b64u_json,
    build_provider,
    claims,
    forge,
    hs_by_hand,
    jwks,
    jwks_value_cfg,
    public_jwk,
    public_pem,
    rsa_pkcs1_pem,
    self_signed_cert,
    sign,
    signing_keys,
    source_cfg,
)

from authsvc.errors import AuthsvcError, InvalidToken
from authsvc.verifier import Verifier

Refuse = Callable[[Verifier, str], AuthsvcError]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


@pytest.fixture(scope="session")
def attacker() -> RSAKey:
    return RSAKey.generate_key(2048)


def refused(verifier: Verifier, token: str) -> AuthsvcError:
    """The verifier refuses ``token`` with a 401 AuthsvcError, and nothing else escapes."""
    try:
        verifier.verify(token)
    except AuthsvcError as exc:
        assert exc.status == 401, exc
        assert exc.reason, "a refusal says why"
        assert all(c.isprintable() for c in exc.reason), repr(exc.reason)
        return exc
    pytest.fail(f"accepted: {token[:80]}...")


@pytest.fixture
def make_verifier(make_settings: Any) -> Callable[..., Verifier]:
    def build(source: dict[str, str], **jwt: str) -> Verifier:
        settings = make_settings({"auth.jwt": {**source, **jwt}})
        return Verifier(settings.jwt, build_provider(settings), clock=FakeClock())

    return build


@pytest.fixture
def pem_verifier(keys: Keys, make_verifier: Callable[..., Verifier], tmp_path: Path) -> Verifier:
    """The RSA key from key_file, no kid."""
    return make_verifier(source_cfg("key_file", keys.rsa, tmp_path))


@pytest.fixture
def jwks_verifier(keys: Keys, make_verifier: Callable[..., Verifier]) -> Verifier:
    """A key set: RSA 'k1', EC P-256 'k2', Ed25519 'k3'."""
    document = jwks(
        public_jwk(keys.rsa, "k1"), public_jwk(keys.ec256, "k2"), public_jwk(keys.ed, "k3")
    )
    return make_verifier(jwks_value_cfg(document))


def header_of(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# --------------------------------------------------------------------------- alg none
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl", "real"], ids=["empty", "junk", "real"])
@pytest.mark.parametrize("kid", [None, "k1"], ids=["no-kid", "kid"])
def test_alg_none_in_every_casing_is_refused(
    keys: Keys,
    pem_verifier: Verifier,
    jwks_verifier: Verifier,
    alg: str,
    signature: str,
    kid: str | None,
) -> None:
    head = b64u_json(header_of(alg=alg, typ="JWT", kid=kid))
    body = b64u_json(claims())
    if signature == "real":
        signature = sign(keys.rsa, "RS256").split(".")[2]
    token = f"{head}.{body}.{signature}"
    for verifier in (pem_verifier, jwks_verifier):
        assert refused(verifier, token).reason == "algorithm 'none' is never accepted"


@pytest.mark.parametrize(
    "header",
    [{}, {"alg": None}, {"alg": ""}, {"alg": 256}, {"alg": ["RS256"]}, {"typ": "JWT"}],
    ids=["empty", "null", "empty-string", "number", "list", "typ-only"],
)
def test_a_header_without_a_usable_alg_is_refused(
    keys: Keys, pem_verifier: Verifier, header: dict[str, Any]
) -> None:
    token = forge(keys.rsa, header, claims(), alg="RS256")
    assert refused(pem_verifier, token).reason == "header has no 'alg'"


@pytest.mark.parametrize("alg", ["none ", "RS256 ", "rs256", "HS1", "ES256K", "Ed448", "RSA-OAEP"])
def test_an_alg_outside_the_allow_list_is_refused(
    keys: Keys, pem_verifier: Verifier, alg: str
) -> None:
    token = forge(keys.rsa, {"alg": alg}, claims(), alg="RS256")
    assert refused(pem_verifier, token).reason.startswith(f"algorithm {alg} is not allowed")


# --------------------------------------------------------------------------- key confusion
def hmac_secrets(key: Key) -> dict[str, bytes]:
    """What an attacker would try as the HMAC secret: every public form of the key."""
    import json

    forms = {
        "spki-pem": public_pem(key),
        "spki-pem-no-newline": public_pem(key).rstrip(b"\n"),
        "spki-der": key.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),  # type: ignore[attr-defined]
        "jwk-json": json.dumps(public_jwk(key)).encode(),
        "jwk-json-compact": json.dumps(public_jwk(key), separators=(",", ":")).encode(),
    }
    if isinstance(key, RSAKey):
        forms["pkcs1-pem"] = rsa_pkcs1_pem(key)
        forms["modulus"] = key.public_key.public_numbers().n.to_bytes(256, "big")
    return forms


@pytest.mark.parametrize("form", list(hmac_secrets(signing_keys().rsa)))
def test_hs256_macd_with_the_rsa_public_key_is_refused(
    keys: Keys, pem_verifier: Verifier, jwks_verifier: Verifier, form: str
) -> None:
    secret = hmac_secrets(keys.rsa)[form]
    token = hs_by_hand(secret, {"alg": "HS256", "typ": "JWT"}, claims())
    reason = refused(pem_verifier, token).reason
    assert reason.startswith("algorithm HS256 not allowed for an RSA key")
    token = hs_by_hand(secret, {"alg": "HS256", "kid": "k1"}, claims())
    reason = refused(jwks_verifier, token).reason
    assert reason.startswith("algorithm HS256 not allowed for an RSA key (kid 'k1')")


@pytest.mark.parametrize(("key_name", "kid"), [("ec256", "k2"), ("ed", "k3")])
def test_hs256_macd_with_an_ec_or_okp_public_key_is_refused(
    keys: Keys, jwks_verifier: Verifier, key_name: str, kid: str
) -> None:
    key = getattr(keys, key_name)
    for secret in hmac_secrets(key).values():
        token = hs_by_hand(secret, {"alg": "HS256", "kid": kid}, claims())
        assert "algorithm HS256 not allowed for" in refused(jwks_verifier, token).reason


# --------------------------------------------------------------------------- key-carrying headers
def test_an_embedded_jwk_header_is_ignored(
    attacker: RSAKey, pem_verifier: Verifier, jwks_verifier: Verifier
) -> None:
    embedded = public_jwk(attacker)
    token = forge(attacker, {"alg": "RS256", "jwk": embedded}, claims())
    reason = refused(pem_verifier, token).reason
    assert reason == "signature does not verify with RS256 and the configured key"
    for kid in ("k1", "attacker"):
        token = forge(
            attacker, {"alg": "RS256", "kid": kid, "jwk": {**embedded, "kid": kid}}, claims()
        )
        reason = refused(jwks_verifier, token).reason
        assert reason in (
            "signature does not verify with RS256 and kid 'k1'",
            "kid 'attacker' not in key set (keys: k1, k2, k3)",
        )


@pytest.fixture
def trap(httpserver: HTTPServer, attacker: RSAKey) -> Iterator[HTTPServer]:
    """A 127.0.0.1 server offering the attacker's key set and certificate; it must stay unasked."""
    httpserver.expect_request("/attacker.json").respond_with_json(
        jwks(public_jwk(attacker, "k1"), public_jwk(attacker, "attacker"))
    )
    cert = self_signed_cert(attacker).public_bytes(Encoding.PEM)
    httpserver.expect_request("/attacker.pem").respond_with_data(cert)
    yield httpserver
    assert httpserver.log == [], "the verifier fetched a URL named by the token"


@pytest.mark.parametrize("field", ["jku", "x5u"])
@pytest.mark.parametrize("kid", [None, "k1", "attacker"], ids=["no-kid", "our-kid", "new-kid"])
def test_jku_and_x5u_are_never_fetched(
    trap: HTTPServer,
    attacker: RSAKey,
    pem_verifier: Verifier,
    jwks_verifier: Verifier,
    field: str,
    kid: str | None,
) -> None:
    url = trap.url_for("/attacker.json" if field == "jku" else "/attacker.pem")
    token = forge(attacker, header_of(alg="RS256", kid=kid, **{field: url}), claims())
    for verifier in (pem_verifier, jwks_verifier):
        refused(verifier, token)


def test_jku_is_never_fetched_by_a_jwks_url_provider(
    trap: HTTPServer, keys: Keys, attacker: RSAKey, make_settings: Any
) -> None:
    # The configured URL is fetched (start-up, then the unknown-kid refetch); the token's never.
    jwks_url = pytest.importorskip("authsvc.keys.jwks_url")
    from authsvc.plugins import PluginContext

    trap.expect_request("/jwks").respond_with_json(jwks(public_jwk(keys.rsa, "k1")))
    settings = make_settings({"auth.jwt": {"jwk_set_url": trap.url_for("/jwks")}})
    provider = jwks_url.JwksUrlProvider.from_config(PluginContext(settings))
    try:
        verifier = Verifier(settings.jwt, provider, clock=FakeClock())
        for kid in ("k1", "attacker"):
            header = {"alg": "RS256", "kid": kid, "jku": trap.url_for("/attacker.json")}
            refused(verifier, forge(attacker, header, claims()))
        assert verifier.verify(sign(keys.rsa, "RS256", kid="k1")).claims["sub"] == SUB
    finally:
        provider.close()
    assert {request.path for request, _ in trap.log} == {"/jwks"}
    trap.log.clear()


def test_x5c_with_the_attackers_certificate_is_ignored(
    attacker: RSAKey, pem_verifier: Verifier, jwks_verifier: Verifier
) -> None:
    cert = self_signed_cert(attacker, "CN=login.example.com")
    x5c = [b64encode_std(cert.public_bytes(Encoding.DER))]
    for kid in (None, "k1"):
        token = forge(attacker, header_of(alg="RS256", kid=kid, x5c=x5c), claims())
        assert (
            "signature does not verify"
            in refused(jwks_verifier if kid else pem_verifier, token).reason
        )


def b64encode_std(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- kid injection
INJECTED_KIDS = {
    "path-traversal": "../../etc/passwd",
    "sql": "' OR 1=1 --",
    "sql-union": "k1' UNION SELECT 'secret' --",
    "very-long": "k" * 10_000,
    "nul": "k1\x00",
    "newline": "k1\nX-Injected: 1",
    "crlf": "k1\r\n\r\n<script>",
    "escape": "\x1b[31mred\x1b[0m",
    "bidi-override": "k1\u202egnp.exe",
    "del": "k1\x7f",
    "url": "https://evil.example/jwks.json",
    "empty": "",
}


@pytest.mark.parametrize("kid", list(INJECTED_KIDS.values()), ids=list(INJECTED_KIDS))
def test_kid_injection_gives_a_clean_refusal(
    attacker: RSAKey, jwks_verifier: Verifier, kid: str
) -> None:
    token = forge(attacker, {"alg": "RS256", "kid": kid}, claims())
    error = refused(jwks_verifier, token)
    assert isinstance(error, InvalidToken)
    assert error.reason.endswith("not in key set (keys: k1, k2, k3)")
    assert len(error.reason) < 200
    for c in "\x00\n\r\x1b\x7f\u202e":
        assert c not in error.reason


@pytest.mark.parametrize("kid", [5, 1.5, True, ["k1"], {"kid": "k1"}], ids=str)
def test_a_non_string_kid_is_refused(keys: Keys, jwks_verifier: Verifier, kid: Any) -> None:
    token = forge(keys.rsa, {"alg": "RS256", "kid": kid}, claims())
    assert refused(jwks_verifier, token).reason == "header 'kid' must be a string"


def test_a_null_kid_is_no_kid(keys: Keys, pem_verifier: Verifier, jwks_verifier: Verifier) -> None:
    token = forge(keys.rsa, {"alg": "RS256", "kid": None}, claims())
    assert pem_verifier.verify(token).claims["sub"] == SUB
    assert refused(jwks_verifier, token).reason.startswith("token has no kid")


# --------------------------------------------------------------------------- signatures
SIGNERS = [
    ("rsa", "RS256", "k1"),
    ("rsa", "PS384", "k1"),
    ("ec256", "ES256", "k2"),
    ("ed", "EdDSA", "k3"),
]


@pytest.mark.parametrize(("key_name", "alg", "kid"), SIGNERS, ids=[a for _, a, _ in SIGNERS])
def test_stripped_truncated_and_modified_signatures_are_refused(
    keys: Keys, jwks_verifier: Verifier, key_name: str, alg: str, kid: str
) -> None:
    token = sign(getattr(keys, key_name), alg, kid=kid)
    assert jwks_verifier.verify(token).claims["sub"] == SUB
    head, body, sig = token.split(".")
    raw = __import__("base64").urlsafe_b64decode(sig + "==")
    other = sign(getattr(keys, key_name), alg, claims(sub="mallory"), kid=kid).split(".")[2]
    variants = {
        "stripped": f"{head}.{body}.",
        "truncated-4": f"{head}.{body}.{sig[:-4]}",
        "truncated-half": f"{head}.{body}.{b64u(raw[: len(raw) // 2])}",
        "one-byte-flipped": f"{head}.{body}.{b64u(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:])}",
        "last-byte-flipped": f"{head}.{body}.{b64u(raw[:-1] + bytes([raw[-1] ^ 0x80]))}",
        "zeros": f"{head}.{body}.{b64u(bytes(len(raw)))}",
        "extended": f"{head}.{body}.{b64u(raw + bytes(1))}",
        "another-tokens": f"{head}.{body}.{other}",
        "payload-swapped": f"{head}.{b64u_json(claims(sub='mallory'))}.{sig}",
    }
    for name, forged in variants.items():
        error = refused(jwks_verifier, forged)
        if name == "stripped":
            assert error.reason == "signature is missing"
        else:
            assert error.reason.startswith(
                ("signature does not verify", "malformed token: signature is not")
            ), (name, error.reason)


def test_ecdsa_der_and_psychic_signatures_are_refused(keys: Keys, jwks_verifier: Verifier) -> None:
    token = sign(keys.ec256, "ES256", kid="k2")
    head, body, sig = token.split(".")
    raw = __import__("base64").urlsafe_b64decode(sig + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    der = encode_dss_signature(r, s)  # what an X.509 signature looks like; JOSE wants r || s
    for forged in (
        f"{head}.{body}.{b64u(der)}",
        f"{head}.{body}.{b64u(bytes(64))}",  # CVE-2022-21449: r = s = 0
        f"{head}.{body}.{b64u(bytes(1))}",
    ):
        assert (
            refused(jwks_verifier, forged).reason
            == "signature does not verify with ES256 and kid 'k2'"
        )


def test_an_hs256_token_with_a_wrong_secret_is_refused(
    make_verifier: Callable[..., Verifier],
) -> None:
    verifier = make_verifier({"hmac_secret": "s" * 32})
    assert verifier.verify(sign(OctKey.import_key(b"s" * 32), "HS256")).claims["sub"] == SUB
    forged = sign(OctKey.import_key(b"t" * 32), "HS256")
    assert (
        refused(verifier, forged).reason
        == "signature does not verify with HS256 and the configured key"
    )


# --------------------------------------------------------------------------- sizes
def test_an_oversized_header_is_refused(keys: Keys, pem_verifier: Verifier) -> None:
    token = forge(keys.rsa, {"alg": "RS256", "pad": "x" * (16 * 1024 + 1)}, claims())
    assert refused(pem_verifier, token).reason == "header is larger than 16384 bytes"


def test_an_oversized_token_is_refused(keys: Keys, pem_verifier: Verifier) -> None:
    token = forge(keys.rsa, {"alg": "RS256"}, claims(blob="x" * 70_000))
    assert refused(pem_verifier, token).reason.endswith("bytes, more than 65536")


def test_a_header_with_a_realistic_x5c_chain_is_accepted(
    keys: Keys, pem_verifier: Verifier
) -> None:
    chain = [
        b64encode_std(self_signed_cert(k, cn).public_bytes(Encoding.DER))
        for k, cn in ((keys.rsa, "leaf"), (keys.rsa2, "intermediate"), (keys.rsa3, "root"))
    ]
    header = {"alg": "RS256", "typ": "JWT", "x5c": chain, "x5t#S256": b64u(b"t" * 32)}
    token = forge(keys.rsa, header, claims())
    assert 2500 < len(token.split(".")[0]) < 16 * 1024
    assert pem_verifier.verify(token).header["x5c"] == chain


# --------------------------------------------------------------------------- malformed tokens
@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b64u(b"not json"), "malformed token: header is not JSON"),
        (b64u(b"\xff\xfe{}"), "malformed token: header is not JSON"),
        (b64u(b'{"alg":"RS256"'), "malformed token: header is not JSON"),
        (b64u(b'["RS256"]'), "malformed token: header is not a JSON object"),
        (b64u(b'"RS256"'), "malformed token: header is not a JSON object"),
        (b64u(b"null"), "malformed token: header is not a JSON object"),
        (b64u(b'{"alg":NaN}'), "malformed token: header is not JSON"),
        (b64u(b"x" * 20_000), "header is larger than 16384 bytes"),
        (b64u(b"[" * 5000 + b"]" * 5000), "malformed token: header is not JSON"),
    ],
    ids=["text", "bad-utf8", "truncated", "array", "string", "null", "nan", "huge", "deep"],
)
def test_a_header_that_is_not_a_json_object_is_refused(
    keys: Keys, pem_verifier: Verifier, header: str, reason: str
) -> None:
    token = forge(keys.rsa, header, claims(), alg="RS256")
    assert refused(pem_verifier, token).reason.startswith(reason)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "malformed token: payload is not JSON"),
        (b"\xff\xfe", "malformed token: payload is not JSON"),
        (b'[{"sub":"foo-subj"}]', "malformed token: payload is not a JSON object"),
        (b"[]", "malformed token: payload is not a JSON object"),
        (b'"foo-subj"', "malformed token: payload is not a JSON object"),
        (b"5", "malformed token: payload is not a JSON object"),
        (b"null", "malformed token: payload is not a JSON object"),
        (b"", "malformed token: payload is not JSON"),
        (b"[" * 5000 + b"]" * 5000, "malformed token: payload is not JSON"),
    ],
    ids=[
        "text",
        "bad-utf8",
        "array-of-object",
        "array",
        "string",
        "number",
        "null",
        "empty",
        "deep",
    ],
)
def test_a_signed_payload_that_is_not_a_json_object_is_refused(
    keys: Keys, pem_verifier: Verifier, payload: bytes, reason: str
) -> None:
    token = forge(keys.rsa, {"alg": "RS256"}, payload)
    assert refused(pem_verifier, token).reason == reason


@pytest.mark.parametrize(
    ("count", "reason"),
    [
        (1, "malformed token: expected 3 dot-separated segments, got 1"),
        (2, "malformed token: expected 3 dot-separated segments, got 2"),
        (4, "malformed token: expected 3 dot-separated segments, got 4"),
        (5, "malformed token: encrypted tokens (JWE) are not accepted"),
        (6, "malformed token: expected 3 dot-separated segments, got 6"),
    ],
)
def test_a_token_needs_exactly_three_segments(
    keys: Keys, pem_verifier: Verifier, count: int, reason: str
) -> None:
    parts = sign(keys.rsa, "RS256").split(".")
    parts = (parts * 2)[:count]
    assert refused(pem_verifier, ".".join(parts)).reason == reason


@pytest.mark.parametrize("token", ["", ".", "..", "...", " ", "Bearer", "null"], ids=repr)
def test_degenerate_tokens_are_refused(pem_verifier: Verifier, token: str) -> None:
    refused(pem_verifier, token)


@pytest.mark.parametrize("segment", [0, 1, 2], ids=["header", "payload", "signature"])
@pytest.mark.parametrize("char", ["+", "/", "!", " ", "\n", "%", "\x00", "*", "~"], ids=repr)
def test_non_base64url_characters_are_refused(
    keys: Keys, pem_verifier: Verifier, segment: int, char: str
) -> None:
    parts = sign(keys.rsa, "RS256").split(".")
    parts[segment] = parts[segment][:5] + char + parts[segment][6:]
    reason = refused(pem_verifier, ".".join(parts)).reason
    # A payload is covered by the signature, which fails first: any refusal will do there.
    if segment != 1:
        assert "not base64url" in reason or "not canonical" in reason, reason


@pytest.mark.parametrize(
    "char", ["é", "\u2024", "\U0001f600"], ids=["e-acute", "one-dot-leader", "emoji"]
)
def test_non_ascii_in_the_payload_segment_is_refused(
    keys: Keys, pem_verifier: Verifier, char: str
) -> None:
    head, body, sig = sign(keys.rsa, "RS256").split(".")
    refused(pem_verifier, f"{head}.{body[:5]}{char}{body[6:]}.{sig}")


@pytest.mark.parametrize("segment", [0, 2], ids=["header", "signature"])
def test_non_ascii_elsewhere_is_refused(keys: Keys, pem_verifier: Verifier, segment: int) -> None:
    parts = sign(keys.rsa, "RS256").split(".")
    parts[segment] = parts[segment][:5] + "é" + parts[segment][6:]
    assert "not base64url" in refused(pem_verifier, ".".join(parts)).reason


def test_non_canonical_base64url_is_refused(keys: Keys, pem_verifier: Verifier) -> None:
    head, body, sig = sign(keys.rsa, "RS256").split(".")
    # The last character of a 2-byte-remainder segment carries spare bits; setting them
    # spells the same bytes differently. One token must have one spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(sig) % 4 == 2  # 256-byte RSA signature
    last = alphabet.index(sig[-1])
    twisted = sig[:-1] + alphabet[last | 1 if not last & 1 else last & ~1]
    assert twisted != sig
    assert refused(pem_verifier, f"{head}.{body}.{twisted}").reason == (
        "malformed token: signature is not canonical base64url"
    )


# --------------------------------------------------------------------------- crit and b64
@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "crit": ["exp"], "exp": NOW + 60},
        {"alg": "RS256", "crit": ["http://example.com/ext"], "http://example.com/ext": True},
        {"alg": "RS256", "crit": []},
        {"alg": "RS256", "crit": "b64"},
        {"alg": "RS256", "crit": ["b64"], "b64": True},
        {"alg": "RS256", "crit": ["b64"], "b64": False},
    ],
    ids=["exp", "uri", "empty", "not-a-list", "b64-true", "b64-false"],
)
def test_any_crit_header_is_refused(
    keys: Keys, pem_verifier: Verifier, header: dict[str, Any]
) -> None:
    token = forge(keys.rsa, header, claims())
    assert refused(pem_verifier, token).reason.startswith(
        "header 'crit' lists extensions this verifier does not implement"
    )


def test_unencoded_payload_is_refused(keys: Keys, pem_verifier: Verifier) -> None:
    # RFC 7797 without crit is malformed anyway; either way it is not accepted.
    token = forge(keys.rsa, {"alg": "RS256", "b64": False}, claims())
    reason = refused(pem_verifier, token).reason
    assert reason == "unencoded payloads (b64: false) are not accepted"


def test_unregistered_header_fields_are_fine(keys: Keys, pem_verifier: Verifier) -> None:
    header = {"alg": "RS256", "typ": "at+jwt", "cty": "JWT", "x-custom": {"a": [1]}}
    assert pem_verifier.verify(forge(keys.rsa, header, claims())).header["x-custom"] == {"a": [1]}


# --------------------------------------------------------------------------- fuzzing
FUZZ_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %\x00\n{}\"'"


def mutate(token: str, rng: random.Random, pool: list[str], alphabet: str) -> str:
    """One to three random edits: flips, deletions, insertions, segment games, truncation."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randrange(len(token) + 1)
        if op == 0 and token:  # replace one character
            i = min(i, len(token) - 1)
            token = token[:i] + rng.choice(alphabet) + token[i + 1 :]
        elif op == 1 and token:  # delete one character
            token = token[:i] + token[i + 1 :]
        elif op == 2:  # insert one character
            token = token[:i] + rng.choice(alphabet) + token[i:]
        elif op == 3:  # truncate
            token = token[:i]
        elif op == 4:  # swap two segments
            parts = token.split(".")
            a, b = rng.randrange(len(parts)), rng.randrange(len(parts))
            parts[a], parts[b] = parts[b], parts[a]
            token = ".".join(parts)
        elif op == 5:  # a segment from another valid token
            parts, donor = token.split("."), rng.choice(pool).split(".")
            j = rng.randrange(min(len(parts), len(donor)))
            parts[j] = donor[j]
            token = ".".join(parts)
        elif op == 6:  # drop or duplicate a segment
            parts = token.split(".")
            j = rng.randrange(len(parts))
            parts = parts[:j] + parts[j + 1 :] if rng.random() < 0.5 else parts[: j + 1] + parts[j:]
            token = ".".join(parts)
        else:  # flip one bit of a decoded byte, re-encoded: still valid base64url
            parts = token.split(".")
            j = rng.randrange(len(parts))
            try:
                raw = bytearray(
                    __import__("base64").urlsafe_b64decode(parts[j] + "=" * (-len(parts[j]) % 4))
                )
            except ValueError:
                continue
            if raw:
                k = rng.randrange(len(raw))
                raw[k] ^= 1 << rng.randrange(8)
                parts[j] = b64u(bytes(raw))
                token = ".".join(parts)
    return token


def fuzz(
    verifiers: list[tuple[Verifier, str]], alphabet: str, rounds: int, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    keys = signing_keys()
    # Segments to splice in: valid tokens, but from keys none of the verifiers trusts.
    pool = [
        sign(keys.rsa2, "PS256", kid="k1"),
        sign(keys.rsa2, "RS256", claims(sub="mallory"), kid="k1"),
        sign(keys.ec384, "ES384", kid="k2"),
        sign(OctKey.import_key(b"x" * 64), "HS512"),
    ]
    outcome = {"refused": 0, "accepted-equivalent": 0}
    for verifier, original in verifiers:
        assert verifier.verify(original).claims["sub"] == SUB
        for _ in range(rounds):
            mutated = mutate(original, rng, pool, alphabet)
            try:
                verifier.verify(mutated)
            except AuthsvcError as exc:
                assert exc.status == 401, (mutated, exc)
                outcome["refused"] += 1
                continue
            # Accepted: only the original itself, or it with (ALB) padding added.
            assert mutated.replace("=", "") == original, mutated
            outcome["accepted-equivalent"] += 1
    return outcome


@pytest.fixture
def fuzz_targets(
    keys: Keys, jwks_verifier: Verifier, make_verifier: Callable[..., Verifier]
) -> list[tuple[Verifier, str]]:
    hmac = make_verifier({"hmac_secret": keys.hmac_secret})
    return [
        (jwks_verifier, sign(keys.rsa, "PS256", kid="k1")),
        (jwks_verifier, sign(keys.ec256, "ES256", kid="k2")),
        (jwks_verifier, sign(keys.ed, "EdDSA", kid="k3")),
        (hmac, sign(keys.oct, "HS512")),
    ]


def test_fuzzed_tokens_are_refused_cleanly(fuzz_targets: list[tuple[Verifier, str]]) -> None:
    outcome = fuzz(fuzz_targets, FUZZ_ALPHABET, rounds=500, seed=20240601)
    assert sum(outcome.values()) == 2000
    assert outcome["refused"] > 1900


def test_fuzzed_tokens_with_non_ascii_are_refused_cleanly(
    fuzz_targets: list[tuple[Verifier, str]],
) -> None:
    fuzz(fuzz_targets, FUZZ_ALPHABET + "é\u00a0\u2028\U0001f600", rounds=500, seed=20240602)
