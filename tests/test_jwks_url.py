"""``jwk_set_url``: a real JWKS server on 127.0.0.1, real keys, real tokens.

The clock is a fake (the provider's neighbour) wherever TTL and staleness are
decided; the refresher thread runs for real and is waited for with bounded
polling.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, RSAKey
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from authsvc import __version__
from authsvc.config import Settings
from authsvc.errors import InvalidToken, KeysUnavailable
from authsvc.keys.base import (
    KeyDescription,
    KeyError_,
    KeyHealth,
    KeyIds,
    KeyProvider,
    UnknownKidRefresh,
)
from authsvc.keys.jwks_url import JwksUrlProvider
from authsvc.plugins import PluginContext
from authsvc.remote_cache import MemoryCache, RedisCache, RemoteCache
from authsvc.verifier import Verifier

SettingsFactory = Callable[..., Settings]
DAY = 86400.0


# --------------------------------------------------------------------------- neighbours
class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    made: dict[str, Key] = {
        kid: ECKey.generate_key("P-256", parameters={"kid": kid}) for kid in ("k1", "k2", "k3")
    }
    made["r1"] = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    with warnings.catch_warnings():  # joserfc warns when asked for a weak key: that's the point
        warnings.simplefilter("ignore", SecurityWarning)
        made["weak"] = RSAKey.generate_key(1024, parameters={"kid": "weak"})
    return made


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def token(key: Key, now: float, sub: str = "alice") -> str:
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    claims = {"sub": sub, "iat": int(now), "exp": int(now + 30 * DAY)}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)


class _QuickHTTPServer(HTTPServer):
    """Stops in milliseconds rather than werkzeug's half-second poll."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


class JwksServer:
    """A JWKS endpoint whose answer each test sets, counting what it was asked."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.http = _QuickHTTPServer(
            host="127.0.0.1", port=0, ssl_context=ssl_context, threaded=True
        )
        self.http.expect_request("/jwks").respond_with_handler(self._handle)
        self._lock = threading.Lock()
        self.seen: list[dict[str, str]] = []
        self.serve({"keys": []})
        self.delay = 0.0

    @property
    def url(self) -> str:
        return self.http.url_for("/jwks")

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def serve(
        self,
        body: dict[str, Any] | bytes,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> None:
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status = status
        self.content_type = content_type
        self.headers = headers or {}
        self.stream = stream

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.seen.append(dict(request.headers))
        if self.delay:
            time.sleep(self.delay)
        body = self.body
        chunks: Iterable[bytes] = (
            (body[i : i + 1000] for i in range(0, len(body), 1000)) if self.stream else [body]
        )
        response = Response(chunks, status=self.status, content_type=self.content_type)
        if not self.stream:
            response.headers["Content-Length"] = str(len(body))
        response.headers.update(self.headers)
        return response


@pytest.fixture
def server() -> Iterator[JwksServer]:
    srv = JwksServer()
    srv.http.start()
    yield srv
    if srv.http.is_running():
        srv.http.stop()
    srv.http.check_handler_errors()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Instance:
    """One service instance's key provider and the verifier in front of it."""

    provider: JwksUrlProvider
    verifier: Verifier
    settings: Settings

    def verify(self, tok: str) -> str:
        return str(self.verifier.verify(tok).claims["sub"])


MakeInstance = Callable[..., Instance]


@pytest.fixture
def make_instance(
    server: JwksServer, make_settings: SettingsFactory, clock: FakeClock
) -> Iterator[MakeInstance]:
    built: list[JwksUrlProvider] = []

    def build(
        cache: RemoteCache | None = None,
        clock_: Callable[[], float] = clock,
        url: str | None = None,
        **jwt_values: str,
    ) -> Instance:
        values = {
            "enabled": "true",
            "header_name": "X-JWT-Assertion",
            "jwk_set_url": url or server.url,
            "cache_ttl": "10m",
            **jwt_values,
        }
        settings = make_settings({"auth.jwt": values})
        context = PluginContext(settings, remote_cache=cache, clock=clock_)
        provider = JwksUrlProvider.from_config(context)
        built.append(provider)
        return Instance(provider, Verifier(settings.jwt, provider, clock_), settings)

    yield build
    for provider in built:
        provider.close()


def doc_key(url: str) -> str:
    return "jwks:jwt:" + hashlib.sha256(url.encode()).hexdigest()


def shared_body(cache: RemoteCache, url: str) -> dict[str, Any]:
    stored = cache.get(doc_key(url))
    assert stored is not None
    result: dict[str, Any] = json.loads(stored.partition(b"\n")[2])
    return result


def kids_of(document: dict[str, Any]) -> list[str]:
    return [k["kid"] for k in document["keys"]]


# --------------------------------------------------------------------------- start-up
def test_fetched_at_start_up_and_verifies(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"], keys["r1"]))
    inst = make_instance()
    provider = inst.provider
    for protocol in (KeyProvider, KeyHealth, KeyIds, UnknownKidRefresh, KeyDescription):
        assert isinstance(provider, protocol)
    assert server.count == 1
    assert provider.health().state == "ok"
    assert provider.kids() == ["k1", "r1"]
    assert inst.verify(token(keys["k1"], clock.now)) == "alice"
    assert inst.verify(token(keys["r1"], clock.now, sub="bob")) == "bob"
    assert server.count == 1, "verification reads memory only"

    described = provider.describe()
    assert described["kind"] == "jwk_set_url"
    assert described["url"] == server.url
    assert described["keys"] == [
        {"kid": "k1", "kty": "EC", "algorithms": ["ES256"]},
        {
            "kid": "r1",
            "kty": "RSA",
            "algorithms": ["PS256", "PS384", "PS512", "RS256", "RS384", "RS512"],
        },
    ]
    assert described["last_error"] is None
    assert described["age"] == 0
    assert described["ttl"] == 600


def test_request_headers(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    server.serve(jwks(keys["k1"]))
    make_instance()
    seen = server.seen[0]
    assert seen["User-Agent"] == f"authsvc/{__version__}"
    assert seen["Accept"] == "application/json"
    assert "Authorization" not in seen


def test_failing_url_at_start_up_is_not_fatal(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(b"upstream broke", status=502, content_type="text/plain")
    inst = make_instance()
    state = inst.provider.health()
    assert state.state == "failing"
    assert server.url in state.detail and "HTTP 502" in state.detail
    with pytest.raises(KeysUnavailable) as caught:
        inst.verify(token(keys["k1"], clock.now))
    assert caught.value.status == 503
    assert caught.value.message_id == "jwt.keys_unavailable"
    assert server.url in caught.value.reason and "HTTP 502" in caught.value.reason
    assert inst.provider.describe()["last_error"] == "HTTP 502 BAD GATEWAY"


def test_url_credentials_never_shown(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    server.serve(jwks(keys["k1"]))
    url = server.url.replace("http://", "http://user:s3cret@") + "?api_key=s3cret"
    provider = make_instance(url=url).provider
    assert provider.kids() == ["k1"]
    assert provider.describe()["url"] == server.url + "?..."
    assert "s3cret" not in json.dumps(provider.describe())


def test_configuration_problems_raise(
    server: JwksServer, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    _context, ca = _self_signed(tmp_path)  # a real CA file: config.py checks it loads
    settings = make_settings(
        {
            "auth.jwt": {
                "jwk_set_url": server.url,
                "tls_client_ca": str(ca),
                "tls_skip_verify_insecure": "true",
            }
        }
    )
    with pytest.raises(KeyError_, match="tls_skip_verify_insecure"):
        JwksUrlProvider.from_config(PluginContext(settings))
    assert server.count == 0


# --------------------------------------------------------------------------- rotation
def test_rotation_after_refresh_ahead_of_ttl(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(cache_ttl="10m")
    old_token = token(keys["k1"], clock.now)
    assert inst.verify(old_token) == "alice"  # now remembered in the verified-token cache

    server.serve(jwks(keys["k2"]))
    clock.advance(7 * 60)  # before 80% of the TTL: nothing happens
    inst.provider.get_key("k1")
    time.sleep(0.05)
    assert server.count == 1

    clock.advance(60)  # 8 of 10 minutes: the refresher fetches ahead of expiry
    inst.provider.get_key("k1")
    wait_until(lambda: inst.provider.kids() == ["k2"], "the refresher to fetch the new set")
    assert inst.provider.health().state == "ok"
    assert inst.verify(token(keys["k2"], clock.now, sub="carol")) == "carol"
    with pytest.raises(InvalidToken, match="kid 'k1' not in key set"):
        inst.verify(old_token)


def test_refresher_runs_in_real_time(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(clock_=time.time, cache_ttl="1s")
    server.serve(jwks(keys["k2"]))
    wait_until(lambda: inst.provider.kids() == ["k2"], "a refresh within the 1s TTL")
    assert inst.verify(token(keys["k2"], time.time())) == "alice"


def test_unchanged_keys_keep_their_identity(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    provider = make_instance().provider
    before = provider.get_key("k1")
    server.serve(jwks(keys["k1"], keys["k2"]))
    provider.refresh()
    assert provider.get_key("k1") is before, "a refresh must not invalidate verified tokens"
    assert provider.get_key("k2") is not None


# --------------------------------------------------------------------------- unknown kid
def test_unknown_kid_forces_one_fetch_then_the_cooldown_holds(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(jwk_set_refresh_cooldown="30s")
    server.serve(jwks(keys["k1"], keys["k2"]))
    assert inst.verify(token(keys["k2"], clock.now)) == "alice"
    assert server.count == 2

    server.serve(jwks(keys["k1"], keys["k2"], keys["k3"]))
    clock.advance(20)
    with pytest.raises(InvalidToken, match="kid 'k3' not in key set"):
        inst.verify(token(keys["k3"], clock.now))
    with pytest.raises(InvalidToken, match="kid 'k3' not in key set"):
        inst.verify(token(keys["k3"], clock.now))
    assert server.count == 2, "a second forced fetch within the cooldown"

    clock.advance(11)
    assert inst.verify(token(keys["k3"], clock.now)) == "alice"
    assert server.count == 3


def test_concurrent_unknown_kid_lookups_cause_one_fetch(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    server.serve(jwks(keys["k1"]))
    provider = make_instance().provider
    server.serve(jwks(keys["k1"], keys["k2"]))
    server.delay = 0.2  # the one fetch is slow, so the others pile up behind it
    barrier = threading.Barrier(200)
    found: list[object] = []

    def lookup() -> None:
        barrier.wait()
        found.append(provider.get_key("k2") or provider.on_unknown_kid("k2"))

    threads = [threading.Thread(target=lookup) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert server.count == 2
    assert len(found) == 200
    assert all(k is not None and k is found[0] for k in found)


# --------------------------------------------------------------------------- failures
@pytest.fixture(params=["http-500", "connection-refused"])
def outage(request: pytest.FixtureRequest, server: JwksServer) -> Callable[[], str]:
    """Makes the URL fail; returns the text the last error must contain."""

    def fail() -> str:
        if request.param == "http-500":
            server.serve(b"oops", status=500, content_type="text/plain")
            return "HTTP 500"
        server.http.stop()
        return "connection failed"

    return fail


def test_last_good_set_serves_while_the_url_fails(
    server: JwksServer,
    make_instance: MakeInstance,
    keys: dict[str, Key],
    clock: FakeClock,
    outage: Callable[[], str],
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(cache_ttl="10m", jwk_set_max_stale="24h")
    expected_error = outage()
    clock.advance(11 * 60)
    with pytest.raises(KeysUnavailable, match=expected_error):
        inst.provider.refresh()
    assert inst.verify(token(keys["k1"], clock.now)) == "alice"
    state = inst.provider.health()
    assert state.state == "stale"
    assert expected_error in state.detail and "fetched 11m ago" in state.detail
    assert expected_error in inst.provider.describe()["last_error"]


def test_keys_unavailable_past_max_stale(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(cache_ttl="10m", jwk_set_max_stale="2h")
    tok = token(keys["k1"], clock.now)
    assert inst.verify(tok) == "alice"
    server.serve(b"oops", status=500, content_type="text/plain")
    clock.advance(2 * 3600 - 1)
    with pytest.raises(KeysUnavailable):
        inst.provider.refresh()
    assert inst.verify(tok) == "alice"
    clock.advance(1)
    with pytest.raises(KeysUnavailable) as caught:
        inst.verify(tok)  # even from the verified-token cache
    reason = caught.value.reason
    assert server.url in reason and "HTTP 500" in reason and "jwk_set_max_stale (2h)" in reason
    assert inst.provider.health().state == "failing"


def test_retries_back_off_to_30s_and_recover(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    provider = make_instance(cache_ttl="10m").provider

    def failed_now() -> bool:  # the attempt is over (its failure recorded) at this clock time
        at = datetime.datetime.fromtimestamp(clock.now, datetime.UTC)
        return bool(provider.describe()["last_error_at"] == at.strftime("%Y-%m-%dT%H:%M:%SZ"))

    server.serve(b"oops", status=500, content_type="text/plain")
    clock.advance(8 * 60)
    provider.get_key("k1")
    wait_until(failed_now, "the refresh ahead of expiry to fail")
    # 1s, 2s, 4s ... would pass 30s at the 6th retry: the cap keeps every retry within 30s.
    for _ in range(8):
        clock.advance(30)
        provider.get_key("k1")
        wait_until(failed_now, "the next retry")
    assert server.count == 10
    assert provider.health().state == "stale"

    server.serve(jwks(keys["k2"]))
    clock.advance(30)
    provider.get_key("k1")
    wait_until(lambda: provider.health().state == "ok", "recovery within 30s")
    assert provider.kids() == ["k2"]


def test_recovers_after_failing_at_start_up(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.http.stop()
    inst = make_instance()
    with pytest.raises(KeysUnavailable, match="connection failed"):
        inst.provider.get_key("k1")
    server.serve(jwks(keys["k1"]))
    server.http.start()
    clock.advance(30)
    with pytest.raises(KeysUnavailable):
        inst.provider.get_key("k1")  # wakes the refresher; nothing waits on the request path
    wait_until(lambda: inst.provider.health().state == "ok", "recovery")
    assert inst.verify(token(keys["k1"], clock.now)) == "alice"


def _padded(document: dict[str, Any], size: int) -> bytes:
    body = json.dumps(document).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        pytest.param({"status": 500, "content_type": "text/plain"}, "HTTP 500", id="http-500"),
        pytest.param({"status": 404}, "HTTP 404", id="http-404"),
        pytest.param(
            {"body": b"<html><body>Sign in</body></html>", "content_type": "text/html"},
            "not a usable key set (text/html): not JSON",
            id="html-200",
        ),
        pytest.param({"body": b'{"keys": [}'}, "not JSON", id="invalid-json"),
        pytest.param(
            {"body": b'{"issuer": "x"}'}, 'expected an object with a "keys" array', id="not-a-jwks"
        ),
        pytest.param({"body": b'{"keys": []}'}, "no usable key in the set", id="empty-set"),
        pytest.param(
            {"oversized": True}, "larger than jwk_set_max_bytes (4096 bytes)", id="oversized"
        ),
        pytest.param(
            {"oversized": True, "stream": True},
            "larger than jwk_set_max_bytes (4096 bytes)",
            id="oversized-chunked",
        ),
    ],
)
def test_bad_responses_are_never_cached(
    server: JwksServer,
    make_instance: MakeInstance,
    keys: dict[str, Key],
    clock: FakeClock,
    response: dict[str, Any],
    error: str,
) -> None:
    server.serve(jwks(keys["k1"]))
    cache = MemoryCache(clock)
    inst = make_instance(cache=cache, jwk_set_max_bytes="4096")
    before = inst.provider.get_key("k1")

    options = dict(response)
    body = options.pop("body", b"")
    if options.pop("oversized", False):
        body = _padded(jwks(keys["k1"], keys["k2"]), 5000)  # valid, only too large
    server.serve(body, **options)
    clock.advance(20 * 60)
    with pytest.raises(KeysUnavailable, match="cannot fetch"):
        inst.provider.refresh()

    assert inst.provider.get_key("k1") is before
    assert inst.provider.kids() == ["k1"]
    assert error in inst.provider.describe()["last_error"]
    assert kids_of(shared_body(cache, server.url)) == ["k1"], "the shared document is unchanged"
    assert inst.provider.health().state == "stale"


# joserfc itself warns when it imports the 1024-bit key, before our policy refuses it.
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_a_bad_key_is_dropped_and_the_good_ones_kept(
    server: JwksServer,
    make_instance: MakeInstance,
    keys: dict[str, Key],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.serve(jwks(keys["k1"], keys["weak"], keys["r1"]))
    with caplog.at_level(logging.WARNING, logger="authsvc.keys.jwks_url"):
        inst = make_instance()
    assert inst.provider.kids() == ["k1", "r1"]
    assert inst.verify(token(keys["k1"], clock.now)) == "alice"
    refused = inst.provider.describe()["refused"]
    assert refused == ["key 'weak': RSA modulus of 1024 bits is too short (at least 2048)"]
    assert any(
        "key 'weak'" in r.getMessage() and "1024 bits" in r.getMessage() for r in caplog.records
    )
    with pytest.raises(InvalidToken, match="kid 'weak' not in key set"):
        inst.verify(token(keys["weak"], clock.now))


# --------------------------------------------------------------------------- TTL
@pytest.mark.parametrize(
    ("headers", "ttl"),
    [
        pytest.param({}, 600, id="no-cache-control"),
        pytest.param({"Cache-Control": "public, max-age=60"}, 60, id="max-age-shorter"),
        pytest.param({"Cache-Control": "max-age=86400"}, 600, id="max-age-longer"),
        pytest.param({"Cache-Control": "max-age=120", "Age": "30"}, 90, id="age-subtracted"),
        pytest.param({"Cache-Control": "no-cache, max-age=0"}, 10, id="max-age-0-floored"),
        pytest.param({"Cache-Control": "s-maxage=30"}, 600, id="s-maxage-ignored"),
    ],
)
def test_cache_control_max_age(
    server: JwksServer,
    make_instance: MakeInstance,
    keys: dict[str, Key],
    headers: dict[str, str],
    ttl: int,
) -> None:
    server.serve(jwks(keys["k1"]), headers=headers)
    assert make_instance(cache_ttl="10m").provider.describe()["ttl"] == ttl


def test_short_max_age_drives_the_refresh(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]), headers={"Cache-Control": "max-age=60"})
    provider = make_instance(cache_ttl="60m").provider
    server.serve(jwks(keys["k2"]), headers={"Cache-Control": "max-age=60"})
    clock.advance(49)
    provider.get_key("k1")
    wait_until(lambda: provider.kids() == ["k2"], "a refresh after 80% of max-age")
    assert server.count == 2


def test_cache_ttl_0_fetches_for_each_lookup(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    inst = make_instance(cache_ttl="0", verified_cache_size="0")
    assert server.count == 1
    for n in range(2, 5):
        assert inst.verify(token(keys["k1"], clock.now)) == "alice"
        assert server.count == n
    server.serve(jwks(keys["k2"]))
    assert inst.provider.get_key("k1") is None
    assert inst.provider.get_key("k2") is not None
    assert inst.provider.health().state == "ok"

    # While the URL fails, the last good set serves and retries back off, not once per lookup.
    server.serve(b"oops", status=500, content_type="text/plain")
    count = server.count
    for _ in range(5):
        assert inst.provider.get_key("k2") is not None
    assert server.count == count + 1
    assert inst.provider.health().state == "stale"


def test_cache_ttl_0_without_stale_serving(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    server.serve(jwks(keys["k1"]))
    provider = make_instance(cache_ttl="0", jwk_set_max_stale="0").provider
    clock.advance(5)
    assert provider.get_key("k1") is not None
    assert provider.health().state == "ok"
    server.serve(b"oops", status=500, content_type="text/plain")
    with pytest.raises(KeysUnavailable, match="HTTP 500"):
        provider.get_key("k1")
    assert provider.health().state == "failing"


# --------------------------------------------------------------------------- bearer token, TLS
def test_bearer_token_file_is_read_before_every_fetch(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    server.serve(jwks(keys["k1"]))
    provider = make_instance(jwk_set_bearer_token_file=str(token_file)).provider
    assert server.seen[-1]["Authorization"] == "Bearer first-token"

    token_file.write_text("Bearer second-token")
    provider.refresh()
    assert server.seen[-1]["Authorization"] == "Bearer second-token"

    token_file.write_text("  third-token  ")
    server.serve(jwks(keys["k1"], keys["k2"]))
    assert provider.on_unknown_kid("k2") is not None
    assert server.seen[-1]["Authorization"] == "Bearer third-token"

    token_file.unlink()
    with pytest.raises(KeysUnavailable, match="cannot read jwk_set_bearer_token_file"):
        provider.refresh()
    assert server.count == 3


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[JwksServer, Path]]:
    context, cert = _self_signed(tmp_path)
    srv = JwksServer(context)
    srv.http.start()
    yield srv, cert
    srv.http.stop()


def test_tls_client_ca_verifies_the_server(
    tls_server: tuple[JwksServer, Path], make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    srv, cert = tls_server
    srv.serve(jwks(keys["k1"]))
    assert srv.url.startswith("https://127.0.0.1:")
    unverified = make_instance(url=srv.url).provider
    assert unverified.health().state == "failing"
    assert "TLS error" in unverified.describe()["last_error"]
    trusted = make_instance(url=srv.url, tls_client_ca=str(cert)).provider
    assert trusted.health().state == "ok"
    assert trusted.kids() == ["k1"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_skip_verify_insecure(
    tls_server: tuple[JwksServer, Path], make_instance: MakeInstance, keys: dict[str, Key]
) -> None:
    srv, _ = tls_server
    srv.serve(jwks(keys["k1"]))
    provider = make_instance(url=srv.url, tls_skip_verify_insecure="true").provider
    assert provider.kids() == ["k1"]


# --------------------------------------------------------------------------- shared state
@pytest.mark.redis
def test_instances_share_the_document_and_the_cooldown_through_redis(
    server: JwksServer,
    make_instance: MakeInstance,
    make_settings: SettingsFactory,
    keys: dict[str, Key],
    clock: FakeClock,
    redis_db: int,
) -> None:
    remote = make_settings(
        {"remote_cache": {"type": "redis", "connstr": f"addr=127.0.0.1:6379,db={redis_db}"}}
    ).remote_cache
    caches = [RedisCache(remote, clock), RedisCache(remote, clock)]
    try:
        server.serve(jwks(keys["k1"]))
        first = make_instance(cache=caches[0], jwk_set_refresh_cooldown="30s")
        second = make_instance(cache=caches[1], jwk_set_refresh_cooldown="30s")
        assert server.count == 2

        server.serve(jwks(keys["k1"], keys["k2"]))
        clock.advance(1)
        assert first.verify(token(keys["k2"], clock.now)) == "alice"
        assert server.count == 3
        assert kids_of(shared_body(caches[1], server.url)) == ["k1", "k2"]
        # The second instance finds k2 in the document the first one shared: no fetch.
        assert second.verify(token(keys["k2"], clock.now, sub="bob")) == "bob"
        assert server.count == 3

        # ... and the first one's forced fetch holds the cooldown for both.
        server.serve(jwks(keys["k1"], keys["k2"], keys["k3"]))
        with pytest.raises(InvalidToken, match="kid 'k3' not in key set"):
            second.verify(token(keys["k3"], clock.now))
        assert server.count == 3
    finally:
        for cache in caches:
            cache.close()


def test_an_unreachable_redis_does_not_fail_verification(
    server: JwksServer,
    make_instance: MakeInstance,
    make_settings: SettingsFactory,
    keys: dict[str, Key],
    clock: FakeClock,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = make_settings(
        {"remote_cache": {"type": "redis", "connstr": f"addr=127.0.0.1:{port},db=0"}}
    ).remote_cache
    cache = RedisCache(remote, clock)
    try:
        server.serve(jwks(keys["k1"]))
        inst = make_instance(cache=cache)
        server.serve(jwks(keys["k1"], keys["k2"]))
        assert inst.verify(token(keys["k2"], clock.now)) == "alice"
        server.serve(jwks(keys["k1"], keys["k2"], keys["k3"]))
        with pytest.raises(InvalidToken, match="kid 'k3' not in key set"):
            inst.verify(token(keys["k3"], clock.now))  # the cooldown holds in this process
        assert server.count == 2
    finally:
        cache.close()


def test_a_new_instance_falls_back_to_the_shared_set(
    server: JwksServer, make_instance: MakeInstance, keys: dict[str, Key], clock: FakeClock
) -> None:
    cache = MemoryCache(clock)  # stands for Redis: what matters is that both instances use it
    server.serve(jwks(keys["k1"]))
    make_instance(cache=cache)
    server.serve(b"oops", status=503, content_type="text/plain")
    clock.advance(60)
    late = make_instance(cache=cache)
    assert late.provider.kids() == ["k1"]
    assert late.verify(token(keys["k1"], clock.now)) == "alice"
    assert "HTTP 503" in late.provider.describe()["last_error"]


# --------------------------------------------------------------------------- the app
def test_health_endpoint_reports_the_url_keys(
    server: JwksServer, make_app: Callable[..., Flask], keys: dict[str, Key]
) -> None:
    server.serve(b"down", status=500, content_type="text/plain")
    app = make_app(
        {
            "auth.jwt": {
                "enabled": "true",
                "header_name": "X-JWT-Assertion",
                "jwk_set_url": server.url,
            }
        }
    )
    provider = app.extensions["authsvc"].issuers.get("jwt").keys
    try:
        assert isinstance(provider, JwksUrlProvider)
        failing = app.test_client().get("/api/health")
        assert failing.status_code == 503
        assert failing.get_json()["keys"] == "failing"
        server.serve(jwks(keys["k1"]))
        provider.refresh()
        ok = app.test_client().get("/api/health")
        assert ok.status_code == 200
        assert ok.get_json()["keys"] == "ok"
    finally:
        provider.close()
