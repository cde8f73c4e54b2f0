"""CONTRACT §6 metrics: one view of the whole service, and what it counts.

In-process apps count in a registry of their own; ``authsvc serve`` with
several workers is scraped for real to show that every scrape, whichever
worker answers it, sees the whole service, monotonically.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.jwk import OctKey
from pytest_httpserver import HTTPServer
from servers import make_homepath, start_authsvc
from tokens import jwks, public_jwk, signing_keys

SECRET = "m" * 48
HEADER = "X-JWT-Assertion"


def token(sub: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + 600, **claims}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()))


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in Prometheus text."""
    found = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            found[m[1] or ""] = float(m[2])
    return found


# An HS256 issuer that signs users up on first sight.
ISSUER = {
    "enabled": "true",
    "header_name": HEADER,
    "hmac_secret": SECRET,
    "auto_sign_up": "true",
    "username_claim": "sub",
}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app({"auth.jwt": ISSUER})


def scrape(app: Flask) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_authentications_are_counted_by_issuer_and_result(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/auth/verify", headers={HEADER: token("a")}).status_code == 200
    assert client.get("/api/auth/verify", headers={HEADER: token("b")}).status_code == 200
    assert client.get("/api/auth/verify", headers={HEADER: "x.y.z"}).status_code == 401
    assert client.get("/api/auth/verify").status_code == 401
    text = scrape(app)
    auth = samples(text, "authsvc_auth_total")
    assert auth['{issuer="jwt",result="ok"}'] == 2
    assert auth['{issuer="jwt",result="jwt.invalid"}'] == 1
    assert auth['{issuer="none",result="auth.unauthorized"}'] == 1
    assert samples(text, "authsvc_signups_total") == {'{issuer="jwt"}': 2.0}
    cache = samples(text, "authsvc_verified_cache_total")
    assert cache == {'{result="hit"}': 0.0, '{result="miss"}': 3.0}  # two tokens and x.y.z
    assert samples(text, "authsvc_jwks_keys") == {'{issuer="jwt"}': 1.0}


def test_a_repeated_token_is_a_cache_hit(app: Flask) -> None:
    client = app.test_client()
    tok = token("c")
    for _ in range(3):
        assert client.get("/api/auth/verify", headers={HEADER: tok}).status_code == 200
    cache = samples(scrape(app), "authsvc_verified_cache_total")
    assert cache == {'{result="hit"}': 2.0, '{result="miss"}': 1.0}


def test_metrics_off_serves_nothing_and_counts_nothing(make_app: Callable[..., Flask]) -> None:
    app = make_app({"metrics": {"enabled": "false"}, "auth.jwt": ISSUER})
    client = app.test_client()
    tok = token("off")
    for _ in range(2):
        assert client.get("/api/auth/verify", headers={HEADER: tok}).status_code == 200
    assert client.get("/api/auth/verify", headers={HEADER: "x.y.z"}).status_code == 401
    assert client.get("/metrics").status_code == 404
    # Nothing was counted: the registry a scrape would read holds no sample above zero.
    from prometheus_client import generate_latest

    text = generate_latest(app.extensions["authsvc"].metrics.registry).decode()
    for name in (
        "authsvc_auth_total",
        "authsvc_verified_cache_total",
        "authsvc_signups_total",
        "authsvc_http_requests_total",
    ):
        assert not any(v > 0 for v in samples(text, name).values()), name


def test_session_events_are_counted(app: Flask) -> None:
    client = app.test_client(use_cookies=False)
    login = client.post("/api/login/jwt", headers={HEADER: token("s")})
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    assert client.post("/api/logout", headers=cookie).status_code == 200
    events = samples(scrape(app), "authsvc_sessions_total")
    assert events['{event="created"}'] == 1
    assert events['{event="revoked"}'] == 1
    assert events['{event="rotated"}'] == 0


def test_jwks_fetches_and_age_are_reported(
    make_app: Callable[..., Flask], httpserver: HTTPServer
) -> None:
    key = signing_keys().ec256
    httpserver.expect_request("/jwks").respond_with_json(jwks(public_jwk(key, "k")))
    app = make_app(
        {
            "auth.jwt.idp": {
                "header_name": HEADER,
                "jwk_set_url": httpserver.url_for("/jwks"),
                "audience": "api",
            }
        }
    )
    text = scrape(app)
    assert samples(text, "authsvc_jwks_fetch_total") == {'{issuer="idp",result="ok"}': 1.0}
    assert samples(text, "authsvc_jwks_keys") == {'{issuer="idp"}': 1.0}
    assert samples(text, "authsvc_jwks_age_seconds")['{issuer="idp"}'] >= 0


@pytest.mark.slow
def test_two_workers_give_one_monotonic_view(tmp_path: Path) -> None:
    """Every scrape, whichever worker answers, adds up both workers' counters."""
    home = make_homepath(tmp_path / "home")
    server = start_authsvc(
        home,
        "cfg:server.workers=2",
        "cfg:auth.jwt.enabled=true",
        f"cfg:auth.jwt.header_name={HEADER}",
        f"cfg:auth.jwt.hmac_secret={SECRET}",
        "cfg:auth.jwt.auto_sign_up=true",
        "cfg:auth.jwt.username_claim=sub",
    )
    try:
        deadline = time.monotonic() + 30
        while "Started worker-2" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        tok = token("mp")
        route = '{route="/api/auth/verify",status="200"}'
        sent, seen, workers, scraped_by = 0, [], set(), set()
        with ThreadPoolExecutor(8) as pool:
            # Rounds until both workers have answered a request or a scrape (the kernel and
            # granian decide who accepts a connection): at least 12, at most 100.
            for rounds in range(100):
                if rounds >= 12 and len(workers | scraped_by) == 2 and len(scraped_by) >= 1:
                    break
                answers = list(
                    pool.map(lambda _: get(server.url("/api/auth/verify"), tok), range(8))
                )
                for response in answers:
                    assert response.status_code == 200
                    workers.add(worker(response))
                sent += len(answers)
                scrape = get(server.url("/metrics"))
                scraped_by.add(worker(scrape))
                seen.append(samples(scrape.text, "authsvc_http_requests_total").get(route, 0.0))
                auth = samples(scrape.text, "authsvc_auth_total")['{issuer="jwt",result="ok"}']
                # Whichever worker answered the scrape, it counts every worker's requests.
                assert auth == sent, json.dumps(seen)
        both = workers | scraped_by
        assert len(both) == 2, f"only {both} answered in 100 rounds: the test proves nothing"
        assert seen == sorted(seen), f"counters went backwards: {seen}"
        assert seen[-1] == sent
    finally:
        server.stop()


def get(url: str, tok: str = "") -> requests.Response:
    """A request on a new connection (so that either worker may take it)."""
    headers = {HEADER: tok, "Connection": "close"} if tok else {"Connection": "close"}
    return requests.get(url, headers=headers, timeout=10)


def worker(response: requests.Response) -> str:
    """The answering worker: request ids are ``<random><pid>-<n>`` per process."""
    return response.headers["X-Request-Id"].rsplit("-", 1)[0]


_MULTIPROCESS_CHECK = """
import json, threading
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from authsvc.metrics import Metrics

metrics = Metrics()
assert metrics.cache_hit.inc == metrics.cache_hit._write, "not the direct path"

def work():
    for _ in range(1000):
        metrics.request("/api/auth/verify", 200, 0.0007)
        metrics.request("/edge", 200, 0.0005)  # on a bound: that bucket, as prometheus-client
        metrics.authenticated("jwt", "ok")
        metrics.cache_hit.one()

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
registry = CollectorRegistry()
MultiProcessCollector(registry)
out = {}
for family in registry.collect():
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"""


def test_multiprocess_series_are_written_exactly_by_the_direct_path(tmp_path: Path) -> None:
    """Under serve, series are written straight into prometheus-client's files (metrics.py
    ``_Series``): from four threads, every increment is in the file a scrape reads, in the
    right histogram bucket. Runs in a process of its own: prometheus-client picks its
    multiprocess mode when it is imported."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _MULTIPROCESS_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    route = '"route": "/api/auth/verify"'
    assert values["authsvc_http_requests_total{" + route + ', "status": "200"}'] == 4000
    assert values['authsvc_auth_total{"issuer": "jwt", "result": "ok"}'] == 4000
    assert values['authsvc_verified_cache_total{"result": "hit"}'] == 4000
    bucket = "authsvc_http_request_duration_seconds_bucket"
    assert values[bucket + '{"le": "0.0005", ' + route + "}"] == 0
    assert values[bucket + '{"le": "0.001", ' + route + "}"] == 4000  # cumulative from here
    assert values[bucket + '{"le": "+Inf", ' + route + "}"] == 4000
    assert values[bucket + '{"le": "0.0005", "route": "/edge"}'] == 4000
    total = values["authsvc_http_request_duration_seconds_sum{" + route + "}"]
    assert abs(total - 4000 * 0.0007) < 1e-9
