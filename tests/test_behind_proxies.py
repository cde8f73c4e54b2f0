"""End to end behind real reverse proxies: CONTRACT §7, identity integrity.

nginx (``auth_request``) and Caddy (``forward_auth``) stand in front of a real
``authsvc serve`` (two workers, SQLite under its home path, HS256 tokens with
auto sign-up) and of an upstream that records the exact bytes of each
request's head. What the upstream is told must name exactly one account.
One stack serves the whole module; each test uses accounts of its own.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey
from servers import (
    Process,
    ReceivedRequest,
    Upstream,
    make_homepath,
    require_binary,
    start_authsvc,
    start_caddy,
    start_nginx,
)

pytestmark = pytest.mark.slow

# 64 printable bytes: HS256 needs 32 at least; safe on a cfg: command line.
HMAC_SECRET = secrets.token_hex(32)
HEADER_BUDGET = 3 * 1024  # CONTRACT §7: X-Auth-* headers together stay below 3 KiB


def _digest(login: str) -> str:
    return hashlib.sha256(login.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def subject_of(login: str) -> str:
    """The ``sub`` of ``login``'s tokens: one account per login, across tests and proxies."""
    return f"sub-{_digest(login)}"


def mint(login: str, **claims: Any) -> str:
    """An HS256 token for ``login``, its sub and email derived from it; ``claims`` override."""
    digest = _digest(login)
    now = int(time.time())
    payload = {
        "sub": subject_of(login),
        "login": login,
        "email": f"{digest}@example.test",
        "name": f"User {digest}",
        "groups": [],
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(HMAC_SECRET.encode()))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Proxy:
    """A reverse proxy in front of authsvc and the upstream."""

    name: str
    server: Process
    authsvc: Process

    def get(self, path: str, token: str | None = None, **headers: str) -> requests.Response:
        sent = {**headers, **(bearer(token) if token is not None else {})}
        return requests.get(self.server.url(path), headers=sent, timeout=30)

    def explain(self, response: requests.Response) -> str:
        """What a failing assertion prints: the answer and both servers' logs."""
        return (
            f"{self.name} answered {response.status_code}: {response.text[:2000]}\n"
            f"--- {self.name} log\n{self.server.output()[-6000:]}\n"
            f"--- authsvc log\n{self.authsvc.output()[-6000:]}"
        )


# --------------------------------------------------------------------------- the stack
@pytest.fixture(scope="module")
def upstream_server() -> Iterator[Upstream]:
    upstream = Upstream()
    yield upstream
    upstream.close()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    """The module's upstream, its record of requests emptied for this test."""
    upstream_server.clear()
    return upstream_server


@pytest.fixture(scope="module")
def authsvc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    home = make_homepath(tmp_path_factory.mktemp("authsvc"))
    server = start_authsvc(
        home,
        "cfg:server.workers=2",
        "cfg:auth.jwt.enabled=true",
        "cfg:auth.jwt.header_name=Authorization",
        f"cfg:auth.jwt.hmac_secret={HMAC_SECRET}",
        "cfg:auth.jwt.username_claim=login",
        "cfg:auth.jwt.email_claim=email",
        "cfg:auth.jwt.groups_attribute_path=groups",
        "cfg:auth.jwt.auto_sign_up=true",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(
    authsvc: Process, upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    binary = require_binary("nginx")
    server = start_nginx(
        binary, tmp_path_factory.mktemp("nginx"), authsvc.port, upstream_server.port
    )
    yield Proxy("nginx", server, authsvc)
    server.stop()


@pytest.fixture(scope="module")
def caddy(
    authsvc: Process, upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    binary = require_binary("caddy")
    server = start_caddy(
        binary, tmp_path_factory.mktemp("caddy"), authsvc.port, upstream_server.port
    )
    yield Proxy("caddy", server, authsvc)
    server.stop()


@pytest.fixture(params=["nginx", "caddy"])
def proxy(request: pytest.FixtureRequest) -> Proxy:
    """Each reverse proxy in turn."""
    found: Proxy = request.getfixturevalue(request.param)
    return found


def only(received: list[ReceivedRequest], path: str) -> ReceivedRequest:
    """The one request the upstream received for ``path``."""
    matching = [r for r in received if r.path == path]
    assert len(matching) == 1, f"{len(matching)} requests for {path}: {matching!r}"
    return matching[0]


def assert_one_account_per_user_header(received: list[ReceivedRequest]) -> None:
    """No X-User value reached the upstream for two accounts (told apart by their sub)."""
    accounts: dict[bytes | None, set[bytes | None]] = {}
    for r in received:
        accounts.setdefault(r.value("X-User"), set()).add(r.value("X-Subject"))
    shared = {user: subs for user, subs in accounts.items() if len(subs) > 1}
    assert not shared, f"one X-User for several accounts: {shared!r}"


# --------------------------------------------------------------------------- a. UTF-8
def test_non_latin1_logins_reach_the_upstream_as_their_exact_utf8_bytes(
    proxy: Proxy, upstream: Upstream
) -> None:
    """Before, granian's latin-1 header encoding turned both logins into ``??``."""
    accounts = [("用户", "张三"), ("名字", "李四")]
    for i, (login, name) in enumerate(accounts):
        token = mint(login, name=name)
        # The first request takes the full path, the repeats the verified-token fast
        # path of whichever of the two workers answers.
        for n in range(3):
            response = proxy.get(f"/utf8/{i}/{n}", token)
            assert response.status_code == 200, proxy.explain(response)

    assert len(upstream.received) == 6
    for r in upstream.received:
        login, name = accounts[int(r.path.split("/")[2])]
        assert r.value("X-User") == login.encode("utf-8")
        assert r.value("X-Name") == name.encode("utf-8")
        assert r.value("X-Subject") == subject_of(login).encode()
    assert_one_account_per_user_header(upstream.received)


# --------------------------------------------------------------------------- b. look-alikes
LOOK_ALIKES = {
    "surrounding-spaces": " admin ",
    "zero-width-space": "admin\u200b",
    "trailing-no-break-space": "admin\u00a0",
    "leading-tab": "\tadmin",
    "trailing-crlf": "admin\r\n",
}


def test_look_alike_logins_are_refused_and_admin_passes(
    nginx: Proxy, authsvc: Process, upstream: Upstream
) -> None:
    admin = mint("admin")
    first = nginx.get("/admin/first", admin)
    assert first.status_code == 200, nginx.explain(first)

    for case, login in LOOK_ALIKES.items():
        token = mint(login)
        direct = requests.get(authsvc.url("/api/auth/verify"), headers=bearer(token), timeout=30)
        response = nginx.get(f"/look-alike/{case}", token)

        assert response.status_code == 401, (case, nginx.explain(response))
        assert direct.status_code == 401, (case, direct.text)
        assert direct.json()["messageId"] == "jwt.invalid", (case, direct.text)
        assert "login" in direct.json()["reason"], (case, direct.text)

    last = nginx.get("/admin/last", admin)
    assert last.status_code == 200, nginx.explain(last)
    assert [r.path for r in upstream.received] == ["/admin/first", "/admin/last"]
    assert {r.value("X-User") for r in upstream.received} == {b"admin"}
    assert_one_account_per_user_header(upstream.received)


@pytest.mark.parametrize("login", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_a_look_alike_login_through_caddy_is_refused(
    caddy: Proxy, upstream: Upstream, login: str
) -> None:
    response = caddy.get("/look-alike", mint(login))

    assert response.status_code == 401, caddy.explain(response)
    assert response.json()["messageId"] == "jwt.invalid"  # Caddy relays authsvc's answer
    assert upstream.received == []


# --------------------------------------------------------------------------- c. big identities
def test_3000_groups_fit_the_default_proxy_buffer_cut_at_a_group_boundary(
    proxy: Proxy, authsvc: Process, upstream: Upstream
) -> None:
    groups = [f"g{n:04d}" for n in range(3000)]
    token = mint("many-groups", groups=groups)

    response = proxy.get("/many-groups", token)

    assert response.status_code == 200, proxy.explain(response)
    assert "too big header" not in proxy.server.output()
    received = only(upstream.received, "/many-groups")
    header = received.value("X-Groups")
    assert header, received.head[:2000]
    listed = header.decode("utf-8").split(",")
    assert listed == groups[: len(listed)], "not a prefix of the token's groups, in order"
    assert len(listed) < len(groups)
    assert received.value("X-Groups-Truncated") == b"true"

    direct = requests.get(authsvc.url("/api/auth/verify"), headers=bearer(token), timeout=30)
    x_auth = [(k, v) for k, v in direct.headers.items() if k.lower().startswith("x-auth-")]
    # Header values arrive decoded as latin-1 here: one character per byte.
    assert sum(len(k) + len(v) + 4 for k, v in x_auth) <= HEADER_BUDGET, x_auth
    assert direct.json()["groups"] == groups  # the body keeps the full list


def test_a_10000_character_name_reaches_the_upstream_cut_to_255(
    proxy: Proxy, upstream: Upstream
) -> None:
    name = "Ünïcødé " * 1250  # 10,000 characters; the 255th is no space
    assert len(name) == 10_000

    response = proxy.get("/long-name", mint("long-name", name=name))

    assert response.status_code == 200, proxy.explain(response)
    received = only(upstream.received, "/long-name")
    assert received.value("X-Name") == name[:255].encode("utf-8")
    assert received.value("X-User") == b"long-name"


# --------------------------------------------------------------------------- d. group names
def test_commas_and_percent_signs_in_group_names_are_percent_encoded(
    proxy: Proxy, upstream: Upstream
) -> None:
    token = mint("odd-groups", groups=["dev,admins", "100%", "ops"])

    response = proxy.get("/odd-groups", token)

    assert response.status_code == 200, proxy.explain(response)
    received = only(upstream.received, "/odd-groups")
    assert received.value("X-Groups") == b"dev%2Cadmins,100%25,ops"
    assert not received.value("X-Groups-Truncated")


# --------------------------------------------------------------------------- e. spoofing
def test_a_request_without_a_token_is_refused_before_the_upstream(
    proxy: Proxy, upstream: Upstream
) -> None:
    response = proxy.get("/no-token", **{"X-User": "admin"})

    assert response.status_code == 401, proxy.explain(response)
    assert upstream.received == []


def test_identity_headers_sent_by_the_client_are_replaced_by_authsvc_s(
    proxy: Proxy, upstream: Upstream
) -> None:
    spoofed = {
        "X-User": "admin",
        "X-Email": "admin@example.test",
        "X-Role": "Admin",
        "X-Groups": "admins",
        "X-Groups-Truncated": "true",
        "X-Subject": "admin",
    }

    response = proxy.get("/spoofed", mint("alice", email="alice@example.test"), **spoofed)

    assert response.status_code == 200, proxy.explain(response)
    received = only(upstream.received, "/spoofed")
    assert received.values("X-User") == [b"alice"]
    assert received.values("X-Email") == [b"alice@example.test"]
    assert received.values("X-Role") == [b"Viewer"]
    assert received.values("X-Subject") == [subject_of("alice").encode()]
    # alice has no groups: nginx sends no X-Groups header, Caddy 2.6 an empty one.
    assert not received.value("X-Groups")
    assert not received.value("X-Groups-Truncated")
