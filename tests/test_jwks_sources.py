"""``jwk_set_url`` with several URLs, PEM at a URL, OpenID discovery, namespaced shared state.

Real document servers on 127.0.0.1, real keys and tokens (tests/tokens.py),
the provider built through its entry point; the clock is a fake wherever TTL
and staleness are decided, and the refresher threads run for real.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc.jwk import Key
from pytest_httpserver import HTTPServer
from tokens import (
    NOW,
    FakeClock,
    Keys,
    claims,
    public_jwk,
    public_pem,
    rsa_pkcs1_pem,
    self_signed_cert,
    sign,
    signing_keys,
)
from werkzeug import Request, Response

from authsvc.config import Settings
from authsvc.errors import InvalidToken, KeysUnavailable
from authsvc.keys.base import KeyPresence, KeyProvider
from authsvc.keys.jwks_url import JwksUrlProvider
from authsvc.plugins import PluginContext, load_plugin
from authsvc.remote_cache import MemoryCache, RedisCache, RemoteCache
from authsvc.verifier import Verifier

SettingsFactory = Callable[..., Settings]
AUDIENCE = "authsvc-test"
DISCOVERY = "/.well-known/openid-configuration"


# --------------------------------------------------------------------------- neighbours
def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class _QuickHTTPServer(HTTPServer):
    """Stops in milliseconds rather than werkzeug's half-second poll."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


@dataclass
class _Answer:
    body: bytes
    status: int
    content_type: str
    delay: float


class DocServer:
    """Documents by path, whose answers each test sets (404 for any other path)."""

    def __init__(self) -> None:
        self.http = _QuickHTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.http.expect_request(re.compile("^/")).respond_with_handler(self._handle)
        self._lock = threading.Lock()
        self._answers: dict[str, _Answer] = {}
        self.seen: list[str] = []
        self.authorization: list[tuple[str, str | None]] = []

    @property
    def base(self) -> str:
        return self.http.url_for("").rstrip("/")

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        with self._lock:
            return self.seen.count(path)

    def serve(
        self,
        path: str,
        body: Any,
        status: int = 200,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            self._answers[path] = _Answer(data, status, content_type, delay)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.seen.append(request.path)
            self.authorization.append((request.path, request.headers.get("Authorization")))
            answer = self._answers.get(request.path)
        if answer is None:
            return Response(b"not here", status=404, content_type="text/plain")
        if answer.delay:
            time.sleep(answer.delay)
        return Response(answer.body, status=answer.status, content_type=answer.content_type)


def _started() -> DocServer:
    server = DocServer()
    server.http.start()
    return server


def _stopped(server: DocServer) -> None:
    if server.http.is_running():
        server.http.stop()
    server.http.check_handler_errors()


@pytest.fixture
def a() -> Iterator[DocServer]:
    server = _started()
    yield server
    _stopped(server)


@pytest.fixture
def b() -> Iterator[DocServer]:
    server = _started()
    yield server
    _stopped(server)


@pytest.fixture
def keys() -> Keys:
    return signing_keys()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def jwks(*entries: tuple[Key, str]) -> dict[str, Any]:
    return {"keys": [public_jwk(key, kid) for key, kid in entries]}


def token(key: Key, alg: str, kid: str | None, **extra: Any) -> str:
    header = {"kid": kid} if kid is not None else {}
    return sign(key, alg, claims(aud=AUDIENCE, **extra), **header)


@dataclass
class Issuer:
    """One issuer's key provider, built through the entry point, and its verifier."""

    provider: JwksUrlProvider
    verifier: Verifier

    def verify(self, tok: str) -> str:
        return str(self.verifier.verify(tok).claims["sub"])


Build = Callable[..., Issuer]


@pytest.fixture
def build(make_settings: SettingsFactory, clock: FakeClock) -> Iterator[Build]:
    built: list[JwksUrlProvider] = []

    def make(
        cache: RemoteCache | None = None,
        name: str = "jwt",
        settings: Settings | None = None,
        **values: str,
    ) -> Issuer:
        if settings is None:
            section = "auth.jwt" if name == "jwt" else f"auth.jwt.{name}"
            base = {
                "enabled": "true",
                "header_name": "X-JWT-Assertion",
                "audience": AUDIENCE,
                "cache_ttl": "10m",
            }
            settings = make_settings({section: {**base, **values}})
        jwt = settings.issuers[name]
        factory = load_plugin("authsvc.key_providers", jwt.key_provider)
        provider = factory.from_config(
            PluginContext(settings, remote_cache=cache, clock=clock, issuer=name)
        )
        assert isinstance(provider, JwksUrlProvider)
        built.append(provider)
        return Issuer(provider, Verifier(jwt, provider, clock))

    yield make
    for provider in built:
        provider.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- several URLs
def test_the_key_set_is_the_union_of_every_url(
    a: DocServer, b: DocServer, build: Build, keys: Keys
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "a1")))
    b.serve("/keys", jwks((keys.ec256, "b1"), (keys.ed, "b2")))
    issuer = build(jwk_set_url=f"{a.url('/jwks')}, {b.url('/keys')}")
    provider = issuer.provider
    assert isinstance(provider, KeyProvider) and isinstance(provider, KeyPresence)
    assert provider.kids() == ["a1", "b1", "b2"]
    assert issuer.verify(token(keys.rsa, "RS256", "a1", sub="from-a")) == "from-a"
    assert issuer.verify(token(keys.ec256, "ES256", "b1", sub="from-b")) == "from-b"
    assert provider.health().state == "ok"
    assert (a.count("/jwks"), b.count("/keys")) == (1, 1)

    described = provider.describe()
    assert described["kind"] == "jwk_set_url"
    assert described["issuer"] == "jwt"
    assert described["urls"] == [a.url("/jwks"), b.url("/keys")]
    assert described["url"] == f"{a.url('/jwks')} {b.url('/keys')}"
    assert described["state"] == "ok"
    assert [k["kid"] for k in described["keys"]] == ["a1", "b1", "b2"]
    assert described["refused"] == [] and described["last_error"] is None
    assert [(f["url"], [k["kid"] for k in f["keys"]]) for f in described["fetches"]] == [
        (a.url("/jwks"), ["a1"]),
        (b.url("/keys"), ["b1", "b2"]),
    ]
    assert described["ttl"] == 600 and described["age"] == 0


@pytest.mark.parametrize(
    ("second", "why"),
    [
        pytest.param({}, "different keys", id="another-key"),
        pytest.param(
            {"alg": "PS256"}, "different algorithms for the same key", id="same-key-other-alg"
        ),
    ],
)
def test_a_kid_two_urls_serve_differently_is_refused(
    a: DocServer,
    b: DocServer,
    build: Build,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
    second: dict[str, str],
    why: str,
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "shared"), (keys.ec256, "a1")))
    other = keys.rsa if second else keys.rsa2
    b.serve("/jwks", {"keys": [public_jwk(other, "shared", **second)]})
    with caplog.at_level(logging.WARNING, logger="authsvc.keys.jwks_url"):
        issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/jwks')}")
    expected = (
        f"kid 'shared' is served by {a.url('/jwks')} and {b.url('/jwks')} with {why}; refused"
    )
    assert issuer.provider.kids() == ["a1"]
    assert issuer.provider.get_key("shared") is None
    with pytest.raises(InvalidToken) as caught:
        issuer.verify(token(keys.rsa, "RS256", "shared"))
    assert caught.value.reason == expected
    assert issuer.verify(token(keys.ec256, "ES256", "a1")) == "foo-subj"
    assert expected in issuer.provider.describe()["refused"]
    logged = [r.getMessage() for r in caplog.records]
    assert f"jwk_set_url[jwt]: {expected}" in logged
    assert logged.count(f"jwk_set_url[jwt]: {expected}") == 1, "logged once, not per rebuild"


def test_the_same_key_at_two_urls_is_one_key(
    a: DocServer, b: DocServer, build: Build, keys: Keys
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "shared"), (keys.ec256, "a1")))
    b.serve("/jwks", jwks((keys.rsa, "shared")))
    issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/jwks')}")
    assert issuer.provider.kids() == ["shared", "a1"]
    assert issuer.verify(token(keys.rsa, "RS256", "shared")) == "foo-subj"
    assert issuer.provider.describe()["refused"] == []


def test_one_url_failing_from_the_start_while_the_other_serves(
    a: DocServer, b: DocServer, build: Build, keys: Keys, clock: FakeClock
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "a1")))
    b.serve("/jwks", b"upstream broke", status=502, content_type="text/plain")
    issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/jwks')}")
    assert issuer.verify(token(keys.rsa, "RS256", "a1")) == "foo-subj"
    state = issuer.provider.health()
    assert state.state == "stale", "200, but not every URL is serving"
    assert f"cannot fetch the key set from {b.url('/jwks')}: HTTP 502" in state.detail
    described = issuer.provider.describe()
    assert described["state"] == "stale"
    assert [f["state"] for f in described["fetches"]] == ["ok", "failing"]
    assert described["fetches"][0]["last_error"] is None
    assert described["fetches"][1]["last_error"] == "HTTP 502 BAD GATEWAY"
    assert described["last_error"] == f"{b.url('/jwks')}: HTTP 502 BAD GATEWAY"

    # B recovers: its refresher retries in the background, within the 30s backoff cap.
    b.serve("/jwks", jwks((keys.ec256, "b1")))
    clock.advance(30)
    issuer.provider.get_key("a1")
    wait_until(lambda: issuer.provider.health().state == "ok", "B's retry")
    assert issuer.verify(token(keys.ec256, "ES256", "b1")) == "foo-subj"


def test_one_url_failing_later_serves_its_last_good_set(
    a: DocServer, b: DocServer, build: Build, keys: Keys, clock: FakeClock
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "a1")))
    b.serve("/jwks", jwks((keys.ec256, "b1")))
    issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/jwks')}", jwk_set_max_stale="2h")
    b_token = token(keys.ec256, "ES256", "b1", exp=NOW + 4 * 3600)
    b.serve("/jwks", b"oops", status=500, content_type="text/plain")

    # Within the TTL a failed fetch changes nothing: still ok.
    with pytest.raises(KeysUnavailable) as caught:
        issuer.provider.refresh()
    assert caught.value.reason == (
        f"cannot fetch the key set from {b.url('/jwks')}: HTTP 500 INTERNAL SERVER ERROR"
    )
    assert issuer.provider.health().state == "ok"

    clock.advance(11 * 60)
    with pytest.raises(KeysUnavailable):
        issuer.provider.refresh()
    assert issuer.verify(b_token) == "foo-subj"
    state = issuer.provider.health()
    assert state.state == "stale"
    assert f"fetched 11m ago from {b.url('/jwks')}; last error: HTTP 500" in state.detail
    assert a.url("/jwks") not in state.detail
    fetches = issuer.provider.describe()["fetches"]
    assert [f["state"] for f in fetches] == ["ok", "stale"]
    assert "HTTP 500" in fetches[1]["last_error"]

    # Past jwk_set_max_stale B's keys leave the union; A's still serve.
    a.serve("/jwks", jwks((keys.rsa, "a1")))
    clock.advance(2 * 3600)
    with pytest.raises(KeysUnavailable):
        issuer.provider.refresh()  # A answers, B still fails
    with pytest.raises(InvalidToken, match=r"kid 'b1' not in key set \(keys: a1\)"):
        issuer.verify(b_token)
    assert issuer.provider.health().state == "stale"
    assert issuer.provider.describe()["fetches"][1]["state"] == "failing"

    # Both past it: no usable key at all.
    a.serve("/jwks", b"gone", status=503, content_type="text/plain")
    clock.advance(3 * 3600)
    with pytest.raises(KeysUnavailable) as caught:
        issuer.provider.get_key("a1")
    reason = caught.value.reason
    assert reason.startswith("no URL of jwk_set_url has a usable key set: ")
    assert a.url("/jwks") in reason and b.url("/jwks") in reason
    assert issuer.provider.health().state == "failing"


def test_an_unknown_kid_is_looked_for_at_every_url(
    a: DocServer, b: DocServer, build: Build, keys: Keys
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "a1")))
    b.serve("/jwks", jwks((keys.ec256, "b1")))
    issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/jwks')}")
    b.serve("/jwks", jwks((keys.ec256, "b1"), (keys.ec384, "b2")))
    assert issuer.verify(token(keys.ec384, "ES384", "b2")) == "foo-subj"
    assert (a.count("/jwks"), b.count("/jwks")) == (2, 2)
    # Each URL's cooldown holds on its own.
    with pytest.raises(InvalidToken, match="kid 'b3' not in key set"):
        issuer.verify(token(keys.ec384, "ES384", "b3"))
    assert (a.count("/jwks"), b.count("/jwks")) == (2, 2)


# --------------------------------------------------------------------------- PEM at a URL
def _cert_pem(key: Key) -> bytes:
    return self_signed_cert(key).public_bytes(Encoding.PEM)


@pytest.mark.parametrize(
    ("material", "content_type", "alg"),
    [
        pytest.param(lambda k: public_pem(k.rsa), "application/x-pem-file", "RS256", id="spki"),
        pytest.param(lambda k: rsa_pkcs1_pem(k.rsa), "text/plain", "PS256", id="pkcs1"),
        pytest.param(lambda k: _cert_pem(k.ec256), "application/json", "ES256", id="cert"),
        pytest.param(lambda k: b"\n" + public_pem(k.ed), "", "EdDSA", id="ed25519"),
    ],
)
@pytest.mark.parametrize("kid", ["idp-signing", None], ids=["key_id", "no-key_id"])
def test_a_pem_key_or_certificate_at_a_url_is_a_one_key_set(
    a: DocServer,
    build: Build,
    keys: Keys,
    material: Callable[[Keys], bytes],
    content_type: str,
    alg: str,
    kid: str | None,
) -> None:
    a.serve("/key.pem", material(keys), content_type=content_type)
    issuer = build(jwk_set_url=a.url("/key.pem"), **({"key_id": kid} if kid else {}))
    assert issuer.provider.kids() == [kid]
    assert issuer.provider.health().state == "ok"
    signer = {"RS": keys.rsa, "PS": keys.rsa, "ES": keys.ec256, "Ed": keys.ed}[alg[:2]]
    assert issuer.verify(token(signer, alg, kid)) == "foo-subj"
    other = "someone-else" if kid else "idp-signing"
    with pytest.raises(InvalidToken, match=r"not in key set|no kid"):
        issuer.verify(token(signer, alg, other))


def test_a_pem_url_beside_a_jwks_url(a: DocServer, b: DocServer, build: Build, keys: Keys) -> None:
    a.serve("/jwks", jwks((keys.ec256, "a1")))
    b.serve("/cert", _cert_pem(keys.rsa), content_type="application/x-x509-ca-cert")
    issuer = build(jwk_set_url=f"{a.url('/jwks')} {b.url('/cert')}", key_id="adfs")
    assert issuer.provider.kids() == ["a1", "adfs"]
    assert issuer.verify(token(keys.rsa, "RS256", "adfs")) == "foo-subj"


@pytest.mark.parametrize(
    ("pem", "error"),
    [
        pytest.param(
            lambda k: k.rsa.as_pem(private=True),
            "key 'idp': is a private key; publish the public key",
            id="private-key",
        ),
        pytest.param(
            lambda k: b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
            "key 'idp': not a PEM public key or certificate",
            id="garbage-pem",
        ),
    ],
)
def test_a_pem_url_under_the_key_policy(
    a: DocServer, build: Build, keys: Keys, pem: Callable[[Keys], bytes], error: str
) -> None:
    a.serve("/key.pem", pem(keys), content_type="text/plain")
    issuer = build(jwk_set_url=a.url("/key.pem"), key_id="idp")
    assert issuer.provider.health().state == "failing"
    last_error = issuer.provider.describe()["last_error"]
    assert last_error.startswith("the response is not a usable key set (text/plain): " + error)
    with pytest.raises(KeysUnavailable, match=r"is a private key|not a PEM"):
        issuer.provider.get_key("idp")


# --------------------------------------------------------------------------- namespaced state
def _two_issuers(make_settings: SettingsFactory, url: str) -> Settings:
    common = {"enabled": "true", "jwk_set_url": url, "audience": AUDIENCE, "cache_ttl": "10m"}
    return make_settings(
        {
            "auth.jwt": {**common, "header_name": "X-JWT-Assertion"},
            "auth.jwt.corp": {**common, "header_name": "X-Corp-Assertion"},
        }
    )


def _share_nothing_across_issuers(
    a: DocServer,
    build: Build,
    make_settings: SettingsFactory,
    keys: Keys,
    caches: tuple[RemoteCache, RemoteCache],
) -> None:
    a.serve("/jwks", jwks((keys.rsa, "k1")))
    settings = _two_issuers(make_settings, a.url("/jwks"))
    jwt = build(caches[0], settings=settings)
    corp = build(caches[1], "corp", settings=settings)
    assert a.count("/jwks") == 2, "each issuer fetches for itself"
    a.serve("/jwks", jwks((keys.rsa, "k1"), (keys.ec256, "k2")))
    assert jwt.verify(token(keys.ec256, "ES256", "k2")) == "foo-subj"
    assert a.count("/jwks") == 3
    # corp neither adopts jwt's document nor waits out jwt's cooldown: it fetches.
    assert corp.verify(token(keys.ec256, "ES256", "k2")) == "foo-subj"
    assert a.count("/jwks") == 4


def test_two_issuers_with_one_url_share_nothing_in_memory(
    a: DocServer,
    build: Build,
    make_settings: SettingsFactory,
    keys: Keys,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = MemoryCache(clock)
    with caplog.at_level(logging.INFO, logger="authsvc.keys.jwks_url"):
        _share_nothing_across_issuers(a, build, make_settings, keys, (cache, cache))
    url_id = sha(a.url("/jwks"))
    for issuer in ("jwt", "corp"):
        assert cache.get(f"jwks:{issuer}:{url_id}") is not None
        assert cache.get(f"jwks-cooldown:{issuer}:{url_id}") is not None
    assert cache.get(f"jwks:{url_id}") is None
    logged = [r.getMessage() for r in caplog.records]
    assert f"jwk_set_url[corp] {a.url('/jwks')}: key set holds 'k1'" in logged


@pytest.mark.redis
def test_two_issuers_with_one_url_share_nothing_in_redis(
    a: DocServer,
    build: Build,
    make_settings: SettingsFactory,
    keys: Keys,
    clock: FakeClock,
    redis_db: int,
) -> None:
    import redis

    remote = make_settings(
        {"remote_cache": {"type": "redis", "connstr": f"addr=127.0.0.1:6379,db={redis_db}"}}
    ).remote_cache
    caches = (RedisCache(remote, clock), RedisCache(remote, clock))  # two instances
    client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    try:
        _share_nothing_across_issuers(a, build, make_settings, keys, caches)
        url_id = sha(a.url("/jwks"))
        stored = sorted(k.decode() for k in client.keys("authsvc:*"))
        assert stored == [
            f"authsvc:jwks-cooldown:corp:{url_id}",
            f"authsvc:jwks-cooldown:jwt:{url_id}",
            f"authsvc:jwks:corp:{url_id}",
            f"authsvc:jwks:jwt:{url_id}",
        ]
    finally:
        client.close()
        for cache in caches:
            cache.close()


# --------------------------------------------------------------------------- discovery
def discovery_document(server: DocServer, issuer: str, jwks_path: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": server.url(jwks_path),
        "token_endpoint": server.url("/token"),
        "id_token_signing_alg_values_supported": ["RS256"],
    }


@pytest.mark.parametrize(
    ("path", "configured"),
    [
        pytest.param("", "{base}", id="root"),
        pytest.param("/realms/x", "{base}/realms/x", id="path-kept"),
        pytest.param("/realms/x", "{base}/realms/x/", id="trailing-slash"),
    ],
)
def test_discovery_finds_the_keys_and_follows_the_document(
    a: DocServer,
    build: Build,
    keys: Keys,
    clock: FakeClock,
    path: str,
    configured: str,
) -> None:
    issuer_url = configured.format(base=a.base)
    cache = MemoryCache(clock)
    a.serve(path + DISCOVERY, discovery_document(a, issuer_url, path + "/certs"))
    a.serve(path + "/certs", jwks((keys.rsa, "r1")))
    issuer = build(cache, oidc_discovery="true", issuer=issuer_url)
    assert issuer.provider.kids() == ["r1"]
    assert issuer.verify(token(keys.rsa, "RS256", "r1", iss=issuer_url)) == "foo-subj"
    described = issuer.provider.describe()
    assert described["kind"] == "oidc_discovery"
    assert described["url"] == issuer_url and described["urls"] == [issuer_url]
    assert described["discovery"] == a.url(path + DISCOVERY)
    assert described["jwks_uri"] == a.url(path + "/certs")
    assert described["state"] == "ok"
    shared = cache.get(f"oidc:jwt:{sha(issuer_url)}")
    assert shared is not None and json.loads(shared.partition(b"\n")[2])["issuer"] == issuer_url
    assert cache.get(f"jwks:jwt:{sha(a.url(path + '/certs'))}") is not None

    # The provider moves its keys: the document is re-read with the set at the next refresh.
    a.serve(path + DISCOVERY, discovery_document(a, issuer_url, path + "/certs-2"))
    a.serve(path + "/certs-2", jwks((keys.ec256, "e1")))
    clock.advance(8 * 60)
    issuer.provider.get_key("r1")
    wait_until(lambda: issuer.provider.kids() == ["e1"], "the refresh ahead of expiry")
    assert a.count(path + DISCOVERY) == 2
    assert issuer.provider.describe()["jwks_uri"] == a.url(path + "/certs-2")

    # An unknown kid re-reads both, once per cooldown.
    a.serve(path + "/certs-2", jwks((keys.ec256, "e1"), (keys.ec384, "e2")))
    assert issuer.verify(token(keys.ec384, "ES384", "e2", iss=issuer_url)) == "foo-subj"
    assert (a.count(path + DISCOVERY), a.count(path + "/certs-2")) == (3, 2)


def test_a_second_instance_adopts_the_shared_discovery(
    a: DocServer, build: Build, keys: Keys, clock: FakeClock
) -> None:
    cache = MemoryCache(clock)  # stands for Redis: what matters is that both instances use it
    a.serve(DISCOVERY, discovery_document(a, a.base, "/certs"))
    a.serve("/certs", jwks((keys.rsa, "r1")))
    build(cache, oidc_discovery="true", issuer=a.base)
    a.serve(DISCOVERY, b"down", status=503, content_type="text/plain")
    clock.advance(60)
    late = build(cache, oidc_discovery="true", issuer=a.base)
    assert late.provider.kids() == ["r1"]
    assert late.verify(token(keys.rsa, "RS256", "r1", iss=a.base)) == "foo-subj"
    assert "HTTP 503" in late.provider.describe()["last_error"]


@pytest.mark.parametrize("same_origin", [True, False], ids=["same-origin", "other-origin"])
def test_the_bearer_token_stays_with_the_issuers_origin(
    a: DocServer, b: DocServer, build: Build, keys: Keys, tmp_path: Path, same_origin: bool
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    keys_at = a if same_origin else b
    a.serve(DISCOVERY, discovery_document(keys_at, a.base, "/certs"))
    keys_at.serve("/certs", jwks((keys.rsa, "r1")))
    issuer = build(oidc_discovery="true", issuer=a.base, jwk_set_bearer_token_file=str(token_file))
    assert issuer.provider.kids() == ["r1"]
    assert (DISCOVERY, "Bearer s3cret") in a.authorization
    assert keys_at.authorization[-1] == ("/certs", "Bearer s3cret" if same_origin else None)


def _doc(
    server: DocServer, issuer: str | None = None, jwks_uri: str | None = None
) -> dict[str, Any]:
    document = discovery_document(server, issuer or server.base, "/certs")
    if jwks_uri is not None:
        document["jwks_uri"] = jwks_uri
    return document


# Each case: what the discovery server answers, and what the reason must say.
BROKEN_DISCOVERY: list[Any] = [
    pytest.param(
        lambda s: {"body": _doc(s, issuer="https://login.example.com")},
        "its issuer 'https://login.example.com' is not the configured issuer '{base}'",
        id="wrong-issuer",
    ),
    pytest.param(
        lambda s: {"body": _doc(s, issuer=s.base + "/")},
        "its issuer '{base}/' is not the configured issuer '{base}'",
        id="issuer-with-trailing-slash",
    ),
    pytest.param(
        lambda s: {"body": {"jwks_uri": s.url("/certs")}},
        "its issuer missing is not the configured issuer '{base}'",
        id="no-issuer",
    ),
    pytest.param(
        lambda s: {"body": b"nope", "status": 404, "content_type": "text/plain"},
        "discovery document {base}/.well-known/openid-configuration: HTTP 404 NOT FOUND",
        id="http-404",
    ),
    pytest.param(
        lambda s: {"body": b"\x00\xff\xfe garbage \x80", "content_type": "application/json"},
        "discovery document {base}/.well-known/openid-configuration: not JSON",
        id="garbage",
    ),
    pytest.param(
        lambda s: {"body": b"<html>Sign in</html>", "content_type": "text/html"},
        "discovery document {base}/.well-known/openid-configuration: not JSON",
        id="html",
    ),
    pytest.param(
        lambda s: {"body": [s.base, s.url("/certs")]},
        "discovery document {base}/.well-known/openid-configuration: not a JSON object",
        id="not-an-object",
    ),
    pytest.param(
        lambda s: {"body": _doc(s, jwks_uri="http://keys.example.com/certs")},
        "jwks_uri http://keys.example.com/certs must be https:// "
        "(http only to a loopback host, not keys.example.com)",
        id="jwks_uri-remote-http",
    ),
    pytest.param(
        lambda s: {"body": _doc(s, jwks_uri="file:///etc/passwd")},
        "jwks_uri 'file:///etc/passwd' is not an https:// URL",
        id="jwks_uri-file",
    ),
    pytest.param(
        lambda s: {"body": {**_doc(s), "jwks_uri": 42}},
        "no jwks_uri (expected a URL string)",
        id="jwks_uri-not-a-string",
    ),
    pytest.param(
        lambda s: {"body": _doc(s, jwks_uri=s.url("/missing"))},
        "jwks_uri {base}/missing: HTTP 404 NOT FOUND",
        id="jwks_uri-404",
    ),
    pytest.param(
        lambda s: {"body": _doc(s, jwks_uri=s.url("/"))},
        "jwks_uri {base}/: the response is not a usable key set (text/plain): not JSON",
        id="jwks_uri-not-a-key-set",
    ),
    pytest.param(
        lambda s: {"body": _doc(s), "delay": 1.5},
        "discovery document {base}/.well-known/openid-configuration: "
        "no answer within jwk_set_timeout (1s)",
        id="slow",
    ),
]


@pytest.mark.parametrize(("answer", "error"), BROKEN_DISCOVERY)
def test_broken_discovery_fails_clearly_then_recovers(
    a: DocServer,
    build: Build,
    keys: Keys,
    clock: FakeClock,
    answer: Callable[[DocServer], dict[str, Any]],
    error: str,
) -> None:
    a.serve("/", b"the home page", content_type="text/plain")
    a.serve("/certs", jwks((keys.rsa, "r1")))
    a.serve(DISCOVERY, **answer(a))
    issuer = build(oidc_discovery="true", issuer=a.base, jwk_set_timeout="1s")
    expected = error.format(base=a.base)

    state = issuer.provider.health()
    assert state.state == "failing"
    assert expected in state.detail
    with pytest.raises(KeysUnavailable) as caught:
        issuer.verify(token(keys.rsa, "RS256", "r1", iss=a.base))
    assert caught.value.reason.startswith(f"cannot fetch the key set from {a.base}: ")
    assert expected in caught.value.reason
    assert expected in issuer.provider.describe()["last_error"]

    # Fixed: the background retry (backoff capped at 30s) brings the keys without a restart.
    a.serve(DISCOVERY, _doc(a))
    clock.advance(30)
    with pytest.raises(KeysUnavailable):
        issuer.provider.get_key("r1")  # wakes the refresher; nothing waits on the request path
    wait_until(lambda: issuer.provider.health().state == "ok", "recovery", timeout=10)
    assert issuer.verify(token(keys.rsa, "RS256", "r1", iss=a.base)) == "foo-subj"
    assert issuer.provider.describe()["jwks_uri"] == a.url("/certs")
