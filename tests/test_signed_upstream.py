"""End to end: nginx ``auth_request`` passes authsvc's signed assertion to an upstream that
verifies it against ``/.well-known/jwks.json`` (CONTRACT §5, README "Signed assertions").

A real ``authsvc serve`` (two workers, HS256 tokens with auto sign-up, a P-256
signing key with its certificate, ``[upstream_assertion]`` on), real nginx
configured with the README's lines, and an upstream that trusts no header: it
fetches authsvc's JWKS and verifies ``X-Auth-Assertion`` with joserfc, as the
README's ten-line upstream does, recording what it verified. A client-sent
``X-Auth-Assertion`` never reaches it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry
from servers import (
    Process,
    free_port,
    make_homepath,
    require_binary,
    start_authsvc,
    start_nginx,
)
from signing_material import certificate, chain_pem, private_pem, thumbprint, write

pytestmark = pytest.mark.slow

HMAC_SECRET = secrets.token_hex(32)

REPO = Path(__file__).resolve().parent.parent


def readme_block(lang: str, after: str) -> str:
    """The first ```LANG block of README.md after the text ``after``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


# The README's nginx lines, inside the server block of tests/servers.py's nginx.
README_NGINX = readme_block("nginx", "## Signed assertions")
README_UPSTREAM = readme_block("python", "The upstream, in ten lines")
NGINX_SERVER = (
    "upstream authsvc {\n    server 127.0.0.1:AUTHSVC_PORT;\n}\n\n"
    "upstream app {\n    server 127.0.0.1:UPSTREAM_PORT;\n}\n\n"
    "server {\n    listen 127.0.0.1:LISTEN_PORT;\n\n"
    + "".join(f"    {line}\n" if line else "\n" for line in README_NGINX.splitlines())
    + "}\n"
)


@dataclass(frozen=True)
class Seen:
    """One request the upstream received: every X-Auth-Assertion value, and the verdict."""

    path: str
    assertions: list[str]
    claims: dict[str, Any] | None
    error: str


class _Verifying(BaseHTTPRequestHandler):
    """The README's upstream: verify X-Auth-Assertion against authsvc's JWKS, or 401."""

    server: _VerifyingServer

    def do_GET(self) -> None:
        values = self.headers.get_all("X-Auth-Assertion") or []
        claims, error = None, ""
        try:
            if len(values) != 1:
                raise ValueError(f"{len(values)} X-Auth-Assertion headers")
            token = jwt.decode(values[0], self.server.keys(), algorithms=["ES256"])
            self.server.rules.validate(token.claims)
            claims = dict(token.claims)
        except (JoseError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.server.seen.append(Seen(self.path, values, claims, error))
        body = json.dumps(claims).encode() if claims else b"refused\n"
        self.send_response(200 if claims else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _VerifyingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, authsvc_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _Verifying)
        self.authsvc_url = authsvc_url
        self.seen: list[Seen] = []
        self.rules = JWTClaimsRegistry(
            iss={"essential": True, "value": authsvc_url},
            aud={"essential": True, "value": authsvc_url},
        )
        self._keys: KeySet | None = None

    def keys(self) -> KeySet:
        if self._keys is None:
            with urllib.request.urlopen(self.authsvc_url + ".well-known/jwks.json") as response:
                self._keys = KeySet.import_key_set(json.load(response))
        return self._keys


@dataclass
class Stack:
    authsvc: Process
    nginx: Process
    upstream: _VerifyingServer
    kid: str
    nginx_binary: str

    def get(self, path: str, token: str | None = None, **headers: str) -> requests.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.nginx.url(path), headers=headers, timeout=30)

    def seen(self, path: str) -> Seen:
        matching = [s for s in self.upstream.seen if s.path == path]
        assert len(matching) == 1, matching
        return matching[0]

    def explain(self, response: requests.Response) -> str:
        return (
            f"nginx answered {response.status_code}: {response.text[:500]}\n"
            f"--- nginx\n{self.nginx.output()[-3000:]}\n"
            f"--- authsvc\n{self.authsvc.output()[-3000:]}"
        )


def mint(sub: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "email": f"{sub}@example.test", "iat": now, "exp": now + 3600}
    return jwt.encode(
        {"alg": "HS256"}, {**payload, **claims}, OctKey.import_key(HMAC_SECRET.encode())
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx_binary = require_binary("nginx")
    home = make_homepath(tmp_path_factory.mktemp("authsvc"))
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = write(home, "signing.pem", private_pem(key))
    cert_file = write(home, "signing.crt", chain_pem(certificate(key, "authsvc e2e")))
    authsvc = start_authsvc(
        home,
        "cfg:server.workers=2",
        "cfg:auth.jwt.enabled=true",
        "cfg:auth.jwt.header_name=Authorization",
        f"cfg:auth.jwt.hmac_secret={HMAC_SECRET}",
        "cfg:auth.jwt.username_claim=sub",
        "cfg:auth.jwt.email_claim=email",
        "cfg:auth.jwt.groups_attribute_path=groups",
        "cfg:auth.jwt.auto_sign_up=true",
        f"cfg:signing.key_file={key_file}",
        f"cfg:signing.certificate_file={cert_file}",
        "cfg:upstream_assertion.enabled=true",
    )
    upstream = _VerifyingServer(authsvc.url("/"))
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    nginx = None
    try:
        nginx = start_nginx(
            nginx_binary,
            tmp_path_factory.mktemp("nginx"),
            authsvc.port,
            upstream.server_address[1],
            NGINX_SERVER,
        )
        yield Stack(authsvc, nginx, upstream, thumbprint(key), nginx_binary)
    finally:
        if nginx is not None:
            nginx.stop()
        upstream.shutdown()
        upstream.server_close()
        authsvc.stop()


def test_the_upstream_verifies_who_the_caller_is(stack: Stack) -> None:
    for n in range(3):  # the first takes the long way, the others a worker's caches
        response = stack.get(f"/who/{n}", mint("erin", groups=["ops"], name="Erin E"))
        assert response.status_code == 200, stack.explain(response)
        seen = stack.seen(f"/who/{n}")
        assert seen.error == ""
        assert seen.claims is not None
        assert seen.claims["sub"] == "jwt/erin"
        assert seen.claims["login"] == "erin"
        assert seen.claims["groups"] == ["ops"]
        assert seen.claims["idp"] == "jwt"
        assert seen.claims["name"] == "Erin E"
    header = stack.upstream.keys().keys[0]
    assert header.kid == stack.kid
    assert "x5c" in header.as_dict()


def test_a_client_sent_assertion_never_reaches_the_upstream(stack: Stack) -> None:
    # The attacker's own assertion for "admin", under authsvc's kid, sent beside a real token.
    attacker = ECKey.generate_key("P-256")
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "ES256", "kid": stack.kid},
        {
            "iss": stack.authsvc.url("/"),
            "aud": stack.authsvc.url("/"),
            "sub": "jwt/admin",
            "login": "admin",
            "role": "Admin",
            "iat": now,
            "exp": now + 300,
            "jti": "forged",
        },
        attacker,
    )
    response = stack.get("/forged", mint("frank"), **{"X-Auth-Assertion": forged})
    assert response.status_code == 200, stack.explain(response)
    seen = stack.seen("/forged")
    assert forged not in seen.assertions
    assert seen.claims is not None and seen.claims["login"] == "frank"

    # Without a token nginx stops at authsvc's 401: the upstream hears nothing.
    alone = stack.get("/forged-alone", **{"X-Auth-Assertion": forged})
    assert alone.status_code == 401
    assert not [s for s in stack.upstream.seen if s.path == "/forged-alone"]

    # Straight to the upstream, past the proxy: the forgery does not verify.
    direct = requests.get(
        f"http://127.0.0.1:{stack.upstream.server_address[1]}/direct",
        headers={"X-Auth-Assertion": forged},
        timeout=10,
    )
    assert direct.status_code == 401
    assert "BadSignatureError" in stack.seen("/direct").error


def test_published_documents_are_served_to_anyone(stack: Stack) -> None:
    jwks = requests.get(stack.authsvc.url("/.well-known/jwks.json"), timeout=10)
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    discovery = requests.get(stack.authsvc.url("/.well-known/openid-configuration"), timeout=10)
    assert discovery.json() == {
        "issuer": stack.authsvc.url("/"),
        "jwks_uri": stack.authsvc.url("/.well-known/jwks.json"),
    }


def test_only_public_halves_are_published(stack: Stack) -> None:
    """The JWKS holds public halves only (no ``d``), whichever worker answers."""
    for _ in range(4):
        document = requests.get(stack.authsvc.url("/.well-known/jwks.json"), timeout=10).json()
        assert all("d" not in key for key in document["keys"])


def test_the_readme_upstream_behind_the_readme_nginx_lines(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """README.md's ten-line upstream, run as written (its URL and port filled in)."""
    port = free_port()
    code = README_UPSTREAM.replace("https://auth.example.com/", stack.authsvc.url("/"))
    code = code.replace('("127.0.0.1", 9000)', f'("127.0.0.1", {port})')
    assert code.count(stack.authsvc.url("/")) == 1 and str(port) in code
    log = tmp_path_factory.mktemp("readme_upstream") / "stderr"
    with log.open("wb") as stderr:
        upstream = subprocess.Popen([sys.executable, "-c", code], stderr=stderr)
    nginx = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                assert upstream.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the README upstream did not start"
                time.sleep(0.1)
        nginx = start_nginx(
            stack.nginx_binary,
            tmp_path_factory.mktemp("nginx"),
            stack.authsvc.port,
            port,
            NGINX_SERVER,
        )
        hello = requests.get(
            nginx.url("/"), headers={"Authorization": f"Bearer {mint('gina')}"}, timeout=10
        )
        assert (hello.status_code, hello.text) == (200, "hello gina\n")
        assert requests.get(nginx.url("/"), timeout=10).status_code == 401  # authsvc said no
        bare = requests.get(f"http://127.0.0.1:{port}/", timeout=10)  # past the proxy
        assert bare.status_code == 401
    finally:
        if nginx is not None:
            nginx.stop()
        upstream.kill()
        upstream.wait()
