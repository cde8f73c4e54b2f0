"""Grafana's JWT verifier and key-set tests, ported to authsvc.

Sources: grafana/grafana ``pkg/services/auth/jwt/auth_test.go`` (every
``TestIntegration*`` function and its scenarios, plus the leeway variants of
its older revisions) and ``key_sets_test.go`` (``TestGetCacheExpiration``),
with ``key_sets.go``'s start-up rules (ambiguous or missing key source, PEM
block types, https-only URLs, CA and bearer-token files).

Test classes carry Grafana's function names; methods carry the scenario
names. Grafana signs with PS512 (``sign()`` in signing_test.go) and so do we.
Its key material is three RSA keys whose JWKs have kids ``key-id-00``..``02``;
the JWKS holds the first two, the third is "a key not from the set".

Where CONTRACT differs from Grafana on purpose the test checks OUR behaviour
and says which Grafana case it adapts:

- ``require_exp = true``: Grafana's tokens often have no ``exp``; ours get one.
- ``sub`` is required (a MissingClaim): Grafana's ``iss``-only tokens get one.
- ``aud`` is any-of, Grafana's is all-of.
- an unknown kid forces one JWKS fetch (``jwk_set_refresh_cooldown``).
- certificates are accepted in key_file, private keys are not.
- ``http://`` JWKS URLs are allowed for loopback hosts only, in every environment.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey
from pytest_httpserver import HTTPServer
from tokens import (
    NOW,
    SUB,
    FakeClock,
    Keys,
    b64u_json,
    build_provider,
    jwks,
    jwks_file_cfg,
    jwks_value_cfg,
    key_file_cfg,
    key_value_cfg,
    public_jwk,
    public_pem,
    rsa_pkcs1_pem,
    self_signed_cert,
    sign,
    signing_keys,
)
from werkzeug import Request, Response

from authsvc.config import ConfigError
from authsvc.errors import AuthsvcError, KeysUnavailable
from authsvc.keys.base import KeyDescription, KeyError_, KeyProvider
from authsvc.verifier import Verifier

GRAFANA_KIDS = ("key-id-00", "key-id-01", "key-id-02")


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


@pytest.fixture(scope="session")
def rsa_keys(keys: Keys) -> tuple[RSAKey, RSAKey, RSAKey]:
    """Grafana's ``rsaKeys``: three RSA keys; ``jwKeys[i]`` is key i under ``key-id-0i``."""
    return keys.rsa, keys.rsa2, keys.rsa3


@pytest.fixture(scope="session")
def jwks_public(rsa_keys: tuple[RSAKey, RSAKey, RSAKey]) -> dict[str, Any]:
    """Grafana's ``jwksPublic``: the first two keys; the last is reserved as an unknown key."""
    return jwks(
        *(public_jwk(k, kid) for k, kid in zip(rsa_keys[:2], GRAFANA_KIDS[:2], strict=True))
    )


def our_claims(**claims: Any) -> dict[str, Any]:
    """Grafana's claims plus what CONTRACT requires: a ``sub`` and an ``exp`` (unless given)."""
    base: dict[str, Any] = {"sub": SUB, "exp": NOW + 3600}
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


def gsign(key: RSAKey, claims: dict[str, Any], kid: str | None = None) -> str:
    """Grafana's ``sign()``: PS512, ``typ: JWT``, the JWK's kid when signing with a jwKey."""
    return sign(key, "PS512", claims, **({"kid": kid} if kid else {}))


def jw_sign(rsa_keys: tuple[RSAKey, ...], i: int, claims: dict[str, Any] | None = None) -> str:
    """``sign(t, &jwKeys[i], ...)``."""
    return gsign(rsa_keys[i], claims or our_claims(), GRAFANA_KIDS[i])


Scenario = Callable[..., Verifier]


@pytest.fixture
def scenario(make_settings: Any) -> Iterator[Scenario]:
    """Grafana's ``scenarioRunner``: settings from ``[auth.jwt]`` values, the provider from
    its entry point, a verifier whose clock is a FakeClock at NOW (unless given)."""
    built: list[KeyProvider] = []

    def run(clock: FakeClock | None = None, **values: str) -> Verifier:
        settings = make_settings(
            {"auth.jwt": {"enabled": "true", "header_name": "X-JWT", **values}}
        )
        provider = build_provider(settings)
        built.append(provider)
        return Verifier(settings.jwt, provider, clock=clock or FakeClock())

    yield run
    for provider in built:
        close = getattr(provider, "close", None)
        if close is not None:
            close()


@pytest.fixture
def pkix_public_key_file(rsa_keys: tuple[RSAKey, ...], tmp_path: Path) -> dict[str, str]:
    """Grafana's ``configurePKIXPublicKeyFile``: rsaKeys[0] as a PUBLIC KEY PEM in key_file."""
    return key_file_cfg(tmp_path, public_pem(rsa_keys[0]), "public-key.pem")


def rejects(verifier: Verifier, token: str) -> AuthsvcError:
    with pytest.raises(AuthsvcError) as info:
        verifier.verify(token)
    assert info.value.status == 401
    return info.value


def sub_of(verifier: Verifier, token: str) -> Any:
    return verifier.verify(token).claims["sub"]


# --------------------------------------------------------------------------- auth_test.go
class TestVerifyUsingPKIXPublicKeyFile:
    def test_verifies_a_token(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        verifier = scenario(**pkix_public_key_file)
        assert sub_of(verifier, gsign(rsa_keys[0], our_claims())) == SUB

    def test_verifies_grafanas_exact_token_with_require_exp_off(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        # Grafana's token is {"sub": ...} alone; CONTRACT accepts it only with require_exp = false.
        token = gsign(rsa_keys[0], {"sub": SUB})
        assert "exp" in rejects(scenario(**pkix_public_key_file), token).reason
        assert sub_of(scenario(require_exp="false", **pkix_public_key_file), token) == SUB

    def test_rejects_a_token_signed_by_unknown_key(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        error = rejects(scenario(**pkix_public_key_file), gsign(rsa_keys[1], our_claims()))
        assert error.reason == "signature does not verify with PS512 and the configured key"

    def test_verifies_a_token_with_a_specified_kid(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        verifier = scenario(key_id="some-key-id", **pkix_public_key_file)
        assert sub_of(verifier, gsign(rsa_keys[0], our_claims(), "some-key-id")) == SUB


class TestVerifyUsingJWKSetFile:
    @pytest.fixture
    def configure(self, jwks_public: dict[str, Any], tmp_path: Path) -> dict[str, str]:
        return jwks_file_cfg(tmp_path, jwks_public)

    def test_verifies_a_token_signed_with_a_key_from_the_set(
        self, scenario: Scenario, configure: dict[str, str], rsa_keys: Any
    ) -> None:
        assert sub_of(scenario(**configure), jw_sign(rsa_keys, 0)) == SUB

    def test_verifies_a_token_signed_with_another_key_from_the_set(
        self, scenario: Scenario, configure: dict[str, str], rsa_keys: Any
    ) -> None:
        assert sub_of(scenario(**configure), jw_sign(rsa_keys, 1)) == SUB

    def test_rejects_a_token_signed_with_a_key_not_from_the_set(
        self, scenario: Scenario, configure: dict[str, str], rsa_keys: Any
    ) -> None:
        error = rejects(scenario(**configure), jw_sign(rsa_keys, 2))
        assert error.reason == "kid 'key-id-02' not in key set (keys: key-id-00, key-id-01)"


class JwksEndpoint:
    """A JWKS URL on 127.0.0.1 (pytest-httpserver) whose answer each test sets.

    ``answers`` is a list: request i gets ``answers[min(i, len - 1)]``, which is
    Grafana's jwkCachingScenario ("each call responds differently").
    """

    def __init__(self, server: HTTPServer, path: str = "/.well-known/jwks.json") -> None:
        self.server = server
        self.path = path
        self.answers: list[dict[str, Any]] = [{"keys": []}]
        self.headers: dict[str, str] = {}
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server.expect_request(path).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for(self.path)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            answer = self.answers[min(len(self.requests), len(self.answers) - 1)]
            self.requests.append(dict(request.headers))
        return Response(json.dumps(answer), content_type="application/json", headers=self.headers)


@pytest.fixture
def endpoint(httpserver: HTTPServer) -> JwksEndpoint:
    pytest.importorskip("authsvc.keys.jwks_url")
    return JwksEndpoint(httpserver)


class TestVerifyUsingJWKSetURL:
    @pytest.mark.parametrize(
        ("url", "ok"),
        [
            ("https://example.com/.well-known/jwks.json", True),
            # Grafana allows http:// in its dev environment only; CONTRACT allows it for
            # loopback hosts in every environment, and never for a remote host.
            ("http://example.com/.well-known/jwks.json", False),
            ("http://127.0.0.1:8000/jwks.json", True),
            ("http://127.9.9.9/jwks.json", True),
            ("http://localhost/jwks.json", True),
            ("http://[::1]:8000/jwks.json", True),
            ("http://10.0.0.1/jwks.json", False),
            ("http://localhost.example.com/jwks.json", False),
            ("ftp://example.com/jwks.json", False),
        ],
    )
    def test_should_refuse_to_start_with_non_https_url(
        self, make_settings: Any, url: str, ok: bool
    ) -> None:
        # Checked while loading the configuration: nothing is fetched yet.
        values = {"auth.jwt": {"enabled": "true", "header_name": "X-JWT", "jwk_set_url": url}}
        if ok:
            assert make_settings(values).jwt.jwk_set_url == (url,)
        else:
            with pytest.raises(ConfigError) as info:
                make_settings(values)
            assert any("[auth.jwt] jwk_set_url:" in p for p in info.value.problems)

    def test_verifies_a_token_signed_with_a_key_from_the_set(
        self, scenario: Scenario, endpoint: JwksEndpoint, jwks_public: Any, rsa_keys: Any
    ) -> None:
        endpoint.answers = [jwks_public]
        assert sub_of(scenario(jwk_set_url=endpoint.url), jw_sign(rsa_keys, 0)) == SUB

    def test_verifies_a_token_signed_with_another_key_from_the_set(
        self, scenario: Scenario, endpoint: JwksEndpoint, jwks_public: Any, rsa_keys: Any
    ) -> None:
        endpoint.answers = [jwks_public]
        assert sub_of(scenario(jwk_set_url=endpoint.url), jw_sign(rsa_keys, 1)) == SUB

    def test_rejects_a_token_signed_with_a_key_not_from_the_set(
        self, scenario: Scenario, endpoint: JwksEndpoint, jwks_public: Any, rsa_keys: Any
    ) -> None:
        endpoint.answers = [jwks_public]
        error = rejects(scenario(jwk_set_url=endpoint.url), jw_sign(rsa_keys, 2))
        assert error.reason == "kid 'key-id-02' not in key set (keys: key-id-00, key-id-01)"


class TestCachingJWKHTTPResponse:
    """Grafana's jwkCachingScenario: cache_ttl = 1h, request i is answered with key i alone."""

    @pytest.fixture
    def caching(self, endpoint: JwksEndpoint, jwks_public: dict[str, Any]) -> JwksEndpoint:
        endpoint.answers = [{"keys": [k]} for k in jwks_public["keys"]]
        return endpoint

    def test_caches_the_jwk_response(
        self, scenario: Scenario, caching: JwksEndpoint, rsa_keys: Any
    ) -> None:
        verifier = scenario(jwk_set_url=caching.url, cache_ttl="1h", verified_cache_size="0")
        for i in range(5):
            assert sub_of(verifier, jw_sign(rsa_keys, 0, our_claims(jti=str(i)))) == SUB
        assert caching.count == 1  # the start-up fetch, and no other

    def test_respects_ttl_setting_while_cached(
        self, scenario: Scenario, caching: JwksEndpoint, rsa_keys: Any
    ) -> None:
        # Grafana: token1 (kid key-id-01, not in the cached set) fails and nothing is fetched.
        # CONTRACT: an unknown kid forces one fetch, then jwk_set_refresh_cooldown holds.
        verifier = scenario(jwk_set_url=caching.url, cache_ttl="1m")
        token0, token1 = jw_sign(rsa_keys, 0), jw_sign(rsa_keys, 1)
        assert sub_of(verifier, token0) == SUB
        assert sub_of(verifier, token0) == SUB
        assert caching.count == 1  # cached within the TTL
        assert sub_of(verifier, token1) == SUB
        assert caching.count == 2  # the forced fetch brought key-id-01 (and dropped key-id-00)
        error = rejects(verifier, token0)
        assert error.reason == "kid 'key-id-00' not in key set (keys: key-id-01)"
        assert caching.count == 2  # within the cooldown: no third fetch

    def test_respects_ttl_setting_after_expiry(
        self, scenario: Scenario, caching: JwksEndpoint, rsa_keys: Any
    ) -> None:
        # Grafana's older revision: after the TTL the set is fetched again; key-id-01 then
        # verifies and key-id-00 no longer does. refresh() is what the refresher does when
        # the TTL is up (tests/test_jwks_url.py drives the refresher with a fake clock).
        verifier = scenario(jwk_set_url=caching.url, cache_ttl="10s", jwk_set_refresh_cooldown="1h")
        token0, token1 = jw_sign(rsa_keys, 0), jw_sign(rsa_keys, 1)
        assert sub_of(verifier, token0) == SUB
        assert caching.count == 1
        verifier.keys.refresh()
        assert caching.count == 2
        assert sub_of(verifier, token1) == SUB
        # key-id-00 has left the set: its kid is unknown now, which forces one fetch (the
        # endpoint answers key-id-01 again), and the cooldown then holds.
        for _ in range(2):
            error = rejects(verifier, token0)
            assert error.reason == "kid 'key-id-00' not in key set (keys: key-id-01)"
        assert caching.count == 3

    def test_does_not_cache_the_response_when_ttl_is_zero(
        self, scenario: Scenario, caching: JwksEndpoint, rsa_keys: Any
    ) -> None:
        verifier = scenario(jwk_set_url=caching.url, cache_ttl="0", verified_cache_size="0")
        assert caching.count == 1  # CONTRACT: the set is also fetched at start-up
        caching.requests.clear()  # request i from now on is answered with key i
        for i in range(2):
            assert sub_of(verifier, jw_sign(rsa_keys, i)) == SUB, f"verify call {i + 1}"
        assert caching.count == 2


class TestSignatureWithNoneAlgorithm:
    def test_rejects_a_token_signed_with_none_algorithm(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str]
    ) -> None:
        token = f"{b64u_json({'alg': 'none', 'typ': 'JWT'})}.{b64u_json(our_claims(sub='foo'))}."
        error = rejects(scenario(**pkix_public_key_file), token)
        assert error.reason == "algorithm 'none' is never accepted"


class TestClaimValidation:
    @pytest.fixture
    def verifier(self, scenario: Scenario, pkix_public_key_file: dict[str, str]) -> Scenario:
        def build(expect_claims: str = "{}", **values: str) -> Verifier:
            return scenario(expect_claims=expect_claims, **values, **pkix_public_key_file)

        return build

    def test_validates_iss_field_for_equality(self, verifier: Scenario, rsa_keys: Any) -> None:
        # Grafana's tokens carry iss alone; ours need sub and exp too.
        v = verifier('{"iss": "http://foo"}')
        assert (
            v.verify(gsign(rsa_keys[0], our_claims(iss="http://foo"))).claims["iss"] == "http://foo"
        )
        rejects(v, gsign(rsa_keys[0], our_claims(iss="http://bar")))

    def test_validates_sub_field_for_equality(self, verifier: Scenario, rsa_keys: Any) -> None:
        v = verifier('{"sub": "foo"}')
        assert sub_of(v, gsign(rsa_keys[0], our_claims(sub="foo"))) == "foo"
        rejects(v, gsign(rsa_keys[0], our_claims(sub="bar")))

    @pytest.mark.parametrize(
        ("aud", "grafana_ok", "our_ok"),
        [
            (["bar", "foo"], True, True),
            (["foo", "bar", "baz"], True, True),
            (["foo"], False, True),  # CONTRACT: aud is any-of; Grafana wants all expected
            (["bar", "baz"], False, True),  # same
            (["baz"], False, False),
        ],
    )
    def test_validates_aud_field_for_inclusion(
        self, verifier: Scenario, rsa_keys: Any, aud: list[str], grafana_ok: bool, our_ok: bool
    ) -> None:
        v = verifier('{"aud": ["foo", "bar"]}')
        token = gsign(rsa_keys[0], our_claims(aud=aud))
        if our_ok:
            assert v.verify(token).claims["aud"] == aud
        else:
            rejects(v, token)

    @pytest.mark.parametrize(
        ("claims", "ok"),
        [
            ({"my-str": "foo", "my-number": 123}, True),
            ({"my-str": "bar", "my-number": 123}, False),
            ({"my-str": "foo", "my-number": 100}, False),
            ({"my-str": "foo"}, False),
            ({"my-number": 123}, False),
        ],
    )
    def test_validates_non_registered_custom_claims_for_equality(
        self, verifier: Scenario, rsa_keys: Any, claims: dict[str, Any], ok: bool
    ) -> None:
        v = verifier('{"my-str": "foo", "my-number": 123}')
        token = gsign(rsa_keys[0], our_claims(**claims))
        if ok:
            assert v.verify(token).claims["my-number"] == 123
        else:
            rejects(v, token)

    @pytest.mark.parametrize(
        ("offset", "ok"),
        [
            (3600, True),  # now + 1h
            (-3600, False),  # now - 1h
            (0, True),  # older revision: time.Now() is fine within the one-minute leeway
            (-61, False),  # older revision: now - 1m - 1s
        ],
    )
    def test_validates_exp_claim_of_the_token(
        self, verifier: Scenario, rsa_keys: Any, offset: int, ok: bool
    ) -> None:
        token = gsign(rsa_keys[0], our_claims(exp=NOW + offset))
        if ok:
            assert sub_of(verifier(), token) == SUB
        else:
            assert rejects(verifier(), token).reason.startswith("token expired")

    @pytest.mark.parametrize(
        ("offset", "ok"), [(-3600, True), (3600, False), (0, True), (61, False)]
    )
    def test_validates_nbf_claim_of_the_token(
        self, verifier: Scenario, rsa_keys: Any, offset: int, ok: bool
    ) -> None:
        token = gsign(rsa_keys[0], our_claims(nbf=NOW + offset))
        if ok:
            assert sub_of(verifier(), token) == SUB
        else:
            assert rejects(verifier(), token).reason.startswith("token not valid yet")

    @pytest.mark.parametrize(
        ("offset", "ok"), [(-3600, True), (3600, False), (0, True), (61, False)]
    )
    def test_validates_iat_claim_of_the_token(
        self, verifier: Scenario, rsa_keys: Any, offset: int, ok: bool
    ) -> None:
        token = gsign(rsa_keys[0], our_claims(iat=NOW + offset, exp=NOW + 7200))
        if ok:
            assert sub_of(verifier(), token) == SUB
        else:
            assert rejects(verifier(), token).reason.startswith("token issued in the future")

    @pytest.mark.parametrize(
        "expected",
        ['{"iss": 5}', '{"sub": ["foo"]}', '{"aud": 5}', '{"aud": ["foo", 1]}', '{"aud": {}}'],
    )
    def test_expectations_of_the_wrong_type_are_refused_at_startup(
        self, make_settings: Any, pkix_public_key_file: dict[str, str], expected: str
    ) -> None:
        with pytest.raises(ConfigError, match="expect_claims"):
            make_settings({"auth.jwt": {"expect_claims": expected, **pkix_public_key_file}})


class TestBase64Paddings:
    def test_verifies_a_token_with_canonical_base64_padding(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        # What AWS ALB sends: each segment padded to a multiple of four.
        token = gsign(rsa_keys[0], our_claims())
        padded = ".".join(p + "=" * (-len(p) % 4) for p in token.split("."))
        assert sub_of(scenario(**pkix_public_key_file), padded) == SUB

    def test_verifies_a_token_with_base64_padding_non_compliant_but_accepted(
        self, scenario: Scenario, pkix_public_key_file: dict[str, str], rsa_keys: Any
    ) -> None:
        # Grafana's exact case: its token ({"sub": ...} alone, so require_exp = false here)
        # with part i padded by i '=': "parts with different padding numbers".
        token = gsign(rsa_keys[0], {"sub": SUB})
        padded = ".".join(p + "=" * i for i, p in enumerate(token.split(".")))
        assert len(token.split(".")[1]) % 4 == 0  # so its one '=' is more than base64 needs
        verifier = scenario(require_exp="false", **pkix_public_key_file)
        assert sub_of(verifier, padded) == SUB


# --------------------------------------------------------------------------- TLS and bearer token
def _ca_and_server_cert(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authsvc test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        tmp_path / "ca.pem",
        tmp_path / "server.pem",
        tmp_path / "server.key",
    )
    ca_path.write_bytes(ca.public_bytes(Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return ca_path, cert_path, key_path


class _QuickHTTPServer(HTTPServer):
    """Stops in milliseconds rather than werkzeug's half-second poll."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


@pytest.fixture(scope="module")
def tls_endpoint(
    tmp_path_factory: pytest.TempPathFactory, jwks_public: dict[str, Any]
) -> Iterator[tuple[JwksEndpoint, Path]]:
    """Grafana's httptest.NewTLSServer: an https JWKS URL on 127.0.0.1, and its CA file."""
    pytest.importorskip("authsvc.keys.jwks_url")
    ca, cert, key = _ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _QuickHTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True)
    endpoint = JwksEndpoint(server)
    endpoint.answers = [jwks_public]
    server.start()
    yield endpoint, ca
    server.stop()


class TestCustomRootCAJWKHTTPSClient:
    def test_tls_client_ca_being_empty_uses_the_system_roots(
        self, scenario: Scenario, tls_endpoint: tuple[JwksEndpoint, Path], rsa_keys: Any
    ) -> None:
        # Grafana checks RootCAs is nil; we check the consequence: our test CA is not trusted,
        # the fetch fails (not a start-up error), and verifying says why (503).
        endpoint, _ = tls_endpoint
        verifier = scenario(jwk_set_url=endpoint.url, jwk_set_timeout="5s")
        with pytest.raises(KeysUnavailable) as info:
            verifier.verify(jw_sign(rsa_keys, 0))
        assert info.value.status == 503
        assert "TLS" in info.value.reason or "certificate" in info.value.reason

    def test_tls_client_ca_path_is_read_and_added_to_client_root_cas(
        self, scenario: Scenario, tls_endpoint: tuple[JwksEndpoint, Path], rsa_keys: Any
    ) -> None:
        endpoint, ca = tls_endpoint
        verifier = scenario(jwk_set_url=endpoint.url, tls_client_ca=str(ca))
        assert sub_of(verifier, jw_sign(rsa_keys, 0)) == SUB

    @pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
    def test_tls_skip_verify_insecure(
        self, scenario: Scenario, tls_endpoint: tuple[JwksEndpoint, Path], rsa_keys: Any
    ) -> None:
        # Grafana's jwkHTTPScenario swaps in ts.Client(); tls_skip_verify_insecure is the knob.
        endpoint, _ = tls_endpoint
        verifier = scenario(jwk_set_url=endpoint.url, tls_skip_verify_insecure="true")
        assert sub_of(verifier, jw_sign(rsa_keys, 1)) == SUB

    def test_error_when_tls_client_ca_file_does_not_exist(
        self, make_settings: Any, tmp_path: Path
    ) -> None:
        values = {
            "jwk_set_url": "https://example.com/.well-known/jwks.json",
            "tls_client_ca": str(tmp_path / "missing-ca.crt"),
        }
        with pytest.raises(ConfigError, match=r"\[auth\.jwt\] tls_client_ca: file not found"):
            make_settings({"auth.jwt": values})

    @pytest.mark.parametrize("content", [b"", b"not a certificate\n"], ids=["empty", "text"])
    def test_error_when_tls_client_ca_path_does_not_contain_pem_certs(
        self, scenario: Scenario, tmp_path: Path, content: bytes
    ) -> None:
        pytest.importorskip("authsvc.keys.jwks_url")
        ca = tmp_path / "ca.crt"
        ca.write_bytes(content)
        with pytest.raises((ConfigError, KeyError_)):
            scenario(jwk_set_url="https://127.0.0.1:1/jwks.json", tls_client_ca=str(ca))


class TestAuthorizationHeaderJWKHTTPSClient:
    def test_jwk_set_bearer_token_file_being_empty_sends_no_token(
        self, scenario: Scenario, endpoint: JwksEndpoint, jwks_public: Any, rsa_keys: Any
    ) -> None:
        endpoint.answers = [jwks_public]
        assert sub_of(scenario(jwk_set_url=endpoint.url), jw_sign(rsa_keys, 0)) == SUB
        assert "Authorization" not in endpoint.requests[-1]

    @pytest.mark.parametrize(
        ("content", "sent"),
        [
            ("fake_token_string", "Bearer fake_token_string"),  # prefixed with 'Bearer '
            ("Bearer fake_token_string", "Bearer fake_token_string"),  # prefix not doubled
            ("  fake_token_string\n", "Bearer fake_token_string"),
        ],
        ids=["is-read-and-added", "prefix-is-not-doubled", "trimmed"],
    )
    def test_jwk_set_bearer_token_file_is_read_and_added_to_headers(
        self,
        scenario: Scenario,
        endpoint: JwksEndpoint,
        jwks_public: Any,
        rsa_keys: Any,
        tmp_path: Path,
        content: str,
        sent: str,
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(content)
        endpoint.answers = [jwks_public]
        verifier = scenario(jwk_set_url=endpoint.url, jwk_set_bearer_token_file=str(token_file))
        assert sub_of(verifier, jw_sign(rsa_keys, 0)) == SUB
        assert endpoint.requests[-1]["Authorization"] == sent

    @pytest.mark.parametrize("content", ["       ", ""], ids=["just-spaces", "no-token"])
    def test_error_when_jwk_set_bearer_token_file_does_not_contain_a_token(
        self,
        scenario: Scenario,
        endpoint: JwksEndpoint,
        jwks_public: Any,
        tmp_path: Path,
        content: str,
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(content)
        endpoint.answers = [jwks_public]
        with pytest.raises((ConfigError, KeyError_)):
            scenario(jwk_set_url=endpoint.url, jwk_set_bearer_token_file=str(token_file))

    def test_error_when_jwk_set_bearer_token_file_does_not_exist(
        self, make_settings: Any, tmp_path: Path
    ) -> None:
        values = {
            "jwk_set_url": "https://example.com/.well-known/jwks.json",
            "jwk_set_bearer_token_file": str(tmp_path / "missing-token"),
        }
        with pytest.raises(ConfigError, match=r"jwk_set_bearer_token_file: file not found"):
            make_settings({"auth.jwt": values})


# --------------------------------------------------------------------------- key_sets_test.go
class TestGetCacheExpiration:
    """cache_ttl = 10m, shortened (never lengthened) by the response's Cache-Control max-age."""

    @pytest.mark.parametrize(
        ("header", "ttl"),
        [
            ("", 600),  # no cache control header
            ("max-age=300", 300),  # max-age less than cache duration
            ("max-age=7200", 600),  # max-age greater than cache duration
            ("max-age=invalid", 600),  # invalid max-age
            ("max-age=300, no-cache", 300),  # multiple cache control directives
        ],
        ids=["none", "less", "greater", "invalid", "multiple"],
    )
    def test_get_cache_expiration(
        self,
        scenario: Scenario,
        endpoint: JwksEndpoint,
        jwks_public: Any,
        header: str,
        ttl: int,
    ) -> None:
        endpoint.answers = [jwks_public]
        if header:
            endpoint.headers = {"Cache-Control": header}
        provider = scenario(jwk_set_url=endpoint.url, cache_ttl="10m").keys
        assert isinstance(provider, KeyDescription)
        assert provider.describe()["ttl"] == ttl


# --------------------------------------------------------------------------- key_sets.go rules
class TestInitKeySet:
    def test_key_set_is_not_configured(self, make_settings: Any) -> None:
        # ErrKeySetIsNotConfigured
        with pytest.raises(ConfigError, match="needs a key source"):
            make_settings({"auth.jwt": {"enabled": "true", "header_name": "X-JWT"}})

    @pytest.mark.parametrize(
        "second",
        [
            {"jwk_set_file": "jwks.json"},
            {"jwk_set_url": "https://example.com/jwks.json"},
            {"key_value": "AAAA"},
            {"hmac_secret": "s" * 32},
        ],
        ids=["jwk_set_file", "jwk_set_url", "key_value", "hmac_secret"],
    )
    def test_key_set_configuration_is_ambiguous(
        self,
        make_settings: Any,
        pkix_public_key_file: dict[str, str],
        tmp_path: Path,
        second: dict[str, str],
    ) -> None:
        # ErrKeySetConfigurationAmbiguous
        (tmp_path / "jwks.json").write_text('{"keys": []}')
        with pytest.raises(ConfigError, match="only one key source may be set"):
            make_settings({"auth.jwt": {**pkix_public_key_file, **second}})

    def test_key_file_does_not_exist(self, make_settings: Any, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"key_file: file not found"):
            make_settings({"auth.jwt": {"key_file": str(tmp_path / "nope.pem")}})

    def test_jwk_set_file_does_not_exist(self, make_settings: Any, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"jwk_set_file: file not found"):
            make_settings({"auth.jwt": {"jwk_set_file": str(tmp_path / "nope.json")}})

    @pytest.mark.parametrize(
        "content",
        [b"", b"garbage", b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n"],
        ids=["empty", "garbage", "empty-block"],
    )
    def test_failed_to_parse_pem_file(
        self, scenario: Scenario, tmp_path: Path, content: bytes
    ) -> None:
        # ErrFailedToParsePemFile
        with pytest.raises(KeyError_, match=r"\[auth\.jwt\] key_file: not a PEM public key"):
            scenario(**key_file_cfg(tmp_path, content))

    def test_unknown_pem_block_type(self, scenario: Scenario, keys: Keys, tmp_path: Path) -> None:
        # Grafana: `unknown pem block type "CERTIFICATE REQUEST"`.
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(keys.ec256.private_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        with pytest.raises(KeyError_, match=r"\[auth\.jwt\] key_file: not a PEM public key"):
            scenario(**key_file_cfg(tmp_path, csr.public_bytes(Encoding.PEM)))

    @pytest.mark.parametrize("source", ["key_file", "key_value"])
    def test_pem_block_types(
        self, scenario: Scenario, keys: Keys, tmp_path: Path, source: str
    ) -> None:
        # Grafana: PUBLIC KEY and RSA PUBLIC KEY verify; so do we. CERTIFICATE is "unknown pem
        # block type" there, a key here (CONTRACT). PRIVATE KEY / RSA PRIVATE KEY / EC PRIVATE
        # KEY verify there, and are refused here (tests/test_verifier.py).
        token = gsign(keys.rsa, our_claims())
        for pem in (
            public_pem(keys.rsa),
            rsa_pkcs1_pem(keys.rsa),
            self_signed_cert(keys.rsa).public_bytes(Encoding.PEM),
        ):
            cfg = key_file_cfg(tmp_path, pem) if source == "key_file" else key_value_cfg(pem)
            assert sub_of(scenario(**cfg), token) == SUB

    @pytest.mark.parametrize(
        "content",
        [b"{not json", b'{"keys": "nope"}', b"[]"],
        ids=["not-json", "keys-not-list", "array"],
    )
    def test_jwk_set_file_that_is_not_a_key_set(
        self, scenario: Scenario, tmp_path: Path, content: bytes
    ) -> None:
        (tmp_path / "jwks.json").write_bytes(content)
        with pytest.raises(
            KeyError_,
            match=r"^argument cfg:auth\.jwt\.jwk_set_file \[auth\.jwt\] jwk_set_file: not",
        ):
            scenario(jwk_set_file=str(tmp_path / "jwks.json"))

    def test_jwk_set_value_is_base64_jwks(
        self, scenario: Scenario, jwks_public: Any, rsa_keys: Any
    ) -> None:
        cfg = jwks_value_cfg(jwks_public)
        assert sub_of(scenario(**cfg), jw_sign(rsa_keys, 1)) == SUB
        # URL-safe alphabet, no padding, line-wrapped: all the same document.
        raw = json.dumps(jwks_public).encode()
        for text in (
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            base64.encodebytes(raw).decode(),
        ):
            assert sub_of(scenario(jwk_set_value=text), jw_sign(rsa_keys, 0)) == SUB

    def test_key_value_is_base64_pem(self, scenario: Scenario, rsa_keys: Any) -> None:
        pem = public_pem(rsa_keys[0])
        for text in (
            base64.b64encode(pem).decode(),
            base64.urlsafe_b64encode(pem).decode().rstrip("="),
        ):
            assert sub_of(scenario(key_value=text), gsign(rsa_keys[0], our_claims())) == SUB
