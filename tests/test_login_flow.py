"""Login, the session cookie, logout, disabling, redirects and CSRF, over HTTP.

Apps come from the factory on SQLite with a fake clock; tokens are real ES256
JWTs verified against a JWKS file. The CSRF origin is ``[server] root_url``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey
from tokens import SIGNING_KID, FakeClock
from werkzeug.test import TestResponse

from authsvc.app import Service

COOKIE = "authsvc_session"
JWT_HEADER = "X-JWT-Assertion"
KID = SIGNING_KID
ROOT_URL = "https://auth.example.com/"
ORIGIN = "https://auth.example.com"
MINUTE = 60.0
HOUR = 3600.0


# --------------------------------------------------------------------------- harness
def set_cookie(response: TestResponse) -> dict[str, Any] | None:
    """The session cookie a response sets (value plus lower-cased attributes), or None."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attrs = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        if name != COOKIE:
            continue
        parsed: dict[str, Any] = {"value": value}
        for attr in attrs:
            key, eq, val = attr.partition("=")
            parsed[key.lower()] = val if eq else True
        return parsed
    return None


def expect_error(response: TestResponse, status: int, message_id: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    assert body["statusCode"] == status
    assert body["message"] and body["reason"]
    return dict(body)


@dataclass
class Instance:
    app: Flask
    clock: FakeClock
    key: ECKey

    @property
    def svc(self) -> Service:
        svc: Service = self.app.extensions["authsvc"]
        return svc

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client(use_cookies=False)

    def token(self, sub: str, ttl: float = HOUR, **extra: Any) -> str:
        now = int(self.clock.now)
        claims = {"sub": sub, "email": f"{sub}@example.com", "iat": now, "exp": now + int(ttl)}
        claims.update(extra)
        return jwt.encode({"alg": "ES256", "kid": KID}, claims, self.key)

    def login(self, sub: str, **claims: Any) -> str:
        response = self.client.post(
            "/api/login/jwt", headers={JWT_HEADER: self.token(sub, **claims)}
        )
        assert response.status_code == 200, response.get_json()
        cookie = set_cookie(response)
        assert cookie is not None
        return str(cookie["value"])

    def call(
        self,
        session: str | None,
        path: str = "/api/user",
        method: str = "GET",
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> TestResponse:
        sent = dict(headers or {})
        if session is not None:
            sent["Cookie"] = f"{COOKIE}={session}"
        return self.client.open(path, method=method, headers=sent, **kw)

    def with_jwt(
        self, token: str, path: str = "/api/user", method: str = "GET", **kw: Any
    ) -> TestResponse:
        headers = {JWT_HEADER: token, **kw.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kw)


@pytest.fixture
def service(
    make_app: Callable[..., Flask], signing_key: ECKey, jwks_file: Path
) -> Iterator[Callable[..., Instance]]:
    """``service(security={...})`` builds an app on SQLite under the test's home path."""
    built: list[Instance] = []

    def build(**sections: dict[str, str]) -> Instance:
        values: dict[str, dict[str, str]] = {
            "server": {"root_url": ROOT_URL},
            "auth.jwt": {
                "enabled": "true",
                "header_name": JWT_HEADER,
                "jwk_set_file": str(jwks_file),
                "auto_sign_up": "true",
                "username_claim": "sub",
                "email_claim": "email",
                "role_attribute_path": "role",
                "allow_assign_server_admin": "true",
                "url_login": "true",
            },
        }
        for section, kv in sections.items():
            values.setdefault(section, {}).update(kv)
        clock = FakeClock()
        s = Instance(make_app(values, clock=clock), clock, signing_key)
        built.append(s)
        return s

    yield build
    for s in built:
        s.svc.close()


# --------------------------------------------------------------------------- login and the cookie
def test_login_returns_the_user_and_sets_the_session_cookie(
    service: Callable[..., Instance],
) -> None:
    s = service()
    token = s.token("alice", name="Alice Liddell", role="Editor")

    response = s.client.post("/api/login/jwt", headers={JWT_HEADER: token})

    assert response.status_code == 200
    user = response.get_json()
    assert user == {
        "id": user["id"],
        "login": "alice",
        "email": "alice@example.com",
        "name": "Alice Liddell",
        "role": "Editor",
        "isServerAdmin": False,
        "groups": [],
        "authModule": "authjwt",
    }
    assert response.headers["Cache-Control"] == "no-store"
    cookie = set_cookie(response)
    assert cookie is not None
    assert cookie["httponly"] is True
    assert cookie["path"] == "/"
    assert cookie["samesite"] == "Lax"
    # root_url is https: Secure whatever cookie_secure says (CONTRACT §7).
    assert cookie["secure"] is True
    assert int(cookie["max-age"]) == 30 * 86400
    assert token not in response.get_data(as_text=True)

    me = s.call(str(cookie["value"]))
    assert me.status_code == 200
    assert me.get_json() == user


def test_a_bearer_prefix_on_the_login_header_is_accepted(service: Callable[..., Instance]) -> None:
    s = service()
    response = s.client.post("/api/login/jwt", headers={JWT_HEADER: f"Bearer {s.token('alice')}"})
    assert response.status_code == 200
    assert set_cookie(response) is not None


HTTP_ROOT_URL = "http://auth.example.com/"
COOKIE_POLICIES = [
    pytest.param({}, HTTP_ROOT_URL, "Lax", False, id="defaults-lax"),
    pytest.param({"cookie_secure": "true"}, HTTP_ROOT_URL, "Lax", True, id="secure-lax"),
    pytest.param({"cookie_samesite": "strict"}, HTTP_ROOT_URL, "Strict", False, id="strict"),
    pytest.param(
        {"cookie_samesite": "none", "cookie_secure": "true"}, HTTP_ROOT_URL, "None", True, id="none"
    ),
    pytest.param({"cookie_samesite": "disabled"}, HTTP_ROOT_URL, None, False, id="disabled"),
    pytest.param({}, ROOT_URL, "Lax", True, id="https-root-url-is-secure"),
    pytest.param({"cookie_secure": "false"}, ROOT_URL, "Lax", True, id="https-overrides-false"),
]


@pytest.mark.parametrize(("security", "root_url", "samesite", "secure"), COOKIE_POLICIES)
def test_every_session_cookie_follows_the_security_section(
    service: Callable[..., Instance],
    security: dict[str, str],
    root_url: str,
    samesite: str | None,
    secure: bool,
) -> None:
    s = service(security=security, server={"root_url": root_url})
    login = s.client.post("/api/login/jwt", headers={JWT_HEADER: s.token("alice")})
    url_login = s.client.get("/login", query_string={"auth_token": s.token("alice")})
    session = str((set_cookie(login) or {})["value"])
    s.clock.advance(10 * MINUTE)
    rotated = s.call(session)
    logout = s.call(session, "/api/logout", "POST")

    for response in (login, url_login, rotated, logout):
        cookie = set_cookie(response)
        assert cookie is not None, response.headers
        assert cookie["httponly"] is True
        assert cookie["path"] == "/"
        assert cookie.get("samesite") == samesite
        assert ("secure" in cookie) is secure
    cleared = set_cookie(logout)
    assert cleared is not None
    assert cleared["value"] == ""
    assert int(cleared["max-age"]) == 0


def test_no_credentials_is_401_with_a_bare_bearer_challenge(
    service: Callable[..., Instance],
) -> None:
    s = service()
    for path in ("/api/user", "/api/auth/verify"):
        response = s.call(None, path)
        expect_error(response, 401, "auth.unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    expect_error(s.client.post("/api/login/jwt"), 401, "auth.unauthorized")


def test_forward_auth_with_the_session_cookie_names_the_user(
    service: Callable[..., Instance],
) -> None:
    s = service()
    session = s.login("alice", name="Alice Liddell", role="Editor")

    response = s.call(session, "/api/auth/verify")

    assert response.status_code == 200
    assert response.headers["X-Auth-User"] == "alice"
    assert response.headers["X-Auth-Email"] == "alice@example.com"
    assert response.headers["X-Auth-Name"] == "Alice Liddell"
    assert response.headers["X-Auth-Role"] == "Editor"
    assert response.headers["X-Auth-Groups"] == ""
    assert response.headers["X-Auth-Subject"] == "alice"
    assert response.headers["Cache-Control"] == "no-store"
    expect_error(
        s.call(session, "/api/auth/verify", query_string={"role": "Admin"}), 403, "auth.forbidden"
    )
    assert s.call(session, "/api/auth/verify", query_string={"role": "Viewer"}).status_code == 200


# --------------------------------------------------------------------------- logout
def test_api_logout_revokes_the_session_server_side(service: Callable[..., Instance]) -> None:
    s = service()
    session = s.login("alice")
    copy = session  # what a thief, or a second tab, still holds

    response = s.call(session, "/api/logout", "POST")

    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out"}
    cleared = set_cookie(response)
    assert cleared is not None and cleared["value"] == ""
    expect_error(s.call(copy), 401, "session.invalid")
    expect_error(s.call(copy, "/api/auth/verify"), 401, "session.invalid")
    assert s.svc.sessions.store.list() == []


def test_api_logout_without_a_session_is_401(service: Callable[..., Instance]) -> None:
    s = service()
    expect_error(s.call(None, "/api/logout", "POST"), 401, "auth.unauthorized")


@pytest.mark.parametrize(
    ("signout", "location"),
    [
        pytest.param("", "/", id="default"),
        pytest.param("https://sso.example.com/bye", "https://sso.example.com/bye", id="configured"),
    ],
)
def test_logout_page_revokes_and_redirects(
    service: Callable[..., Instance], signout: str, location: str
) -> None:
    s = service(auth={"signout_redirect_url": signout})
    session = s.login("alice")
    other = s.login("alice")

    response = s.call(session, "/logout")

    assert response.status_code == 302
    assert response.headers["Location"] == location
    cleared = set_cookie(response)
    assert cleared is not None and cleared["value"] == ""
    expect_error(s.call(session), 401, "session.invalid")
    assert s.call(other).status_code == 200  # only the session logged out of ends

    again = s.call(None, "/logout")  # no session: still a clean redirect
    assert again.status_code == 302
    assert again.headers["Location"] == location


def test_logging_out_with_a_rotated_away_token_still_ends_the_session(
    service: Callable[..., Instance],
) -> None:
    s = service()
    old = s.login("alice")
    s.clock.advance(10 * MINUTE)
    new = str((set_cookie(s.call(old)) or {})["value"])
    s.clock.advance(2 * MINUTE)  # the old token's grace period is over

    assert s.call(old, "/api/logout", "POST").status_code == 200

    expect_error(s.call(new), 401, "session.invalid")


# ------------------------------------------------------------------ disabling, admin flag
def test_a_disabled_user_is_refused_by_session_and_by_jwt(service: Callable[..., Instance]) -> None:
    s = service()
    admin = s.login("root", role="ServerAdmin")
    session = s.login("alice")
    alice_id = s.call(session).get_json()["id"]

    patched = s.call(admin, f"/api/admin/users/{alice_id}", "PATCH", json={"disabled": True})

    assert patched.status_code == 200
    assert patched.get_json()["disabled"] is True
    body = expect_error(s.call(session), 401, "identity.disabled")
    assert "alice" in body["reason"]
    expect_error(s.call(session, "/api/auth/verify"), 401, "identity.disabled")
    expect_error(s.with_jwt(s.token("alice")), 401, "identity.disabled")
    expect_error(s.with_jwt(s.token("alice"), "/api/auth/verify"), 401, "identity.disabled")
    expect_error(s.with_jwt(s.token("alice"), "/api/login/jwt", "POST"), 401, "identity.disabled")
    login_url = s.client.get("/login", query_string={"auth_token": s.token("alice")})
    expect_error(login_url, 401, "identity.disabled")
    assert set_cookie(login_url) is None

    enabled = s.call(admin, f"/api/admin/users/{alice_id}", "PATCH", json={"disabled": False})
    assert enabled.status_code == 200
    assert s.call(session).status_code == 200  # disabling does not revoke; enabling restores


def test_a_re_enabled_user_keeps_the_session_a_refused_request_would_have_rotated(
    service: Callable[..., Instance],
) -> None:
    s = service()
    admin = s.login("root", role="ServerAdmin")
    session = s.login("alice")
    alice_id = s.call(session).get_json()["id"]
    s.call(admin, f"/api/admin/users/{alice_id}", "PATCH", json={"disabled": True})
    s.clock.advance(10 * MINUTE)  # rotation is due
    refused = s.call(session)
    expect_error(refused, 401, "identity.disabled")
    renewed = set_cookie(refused)
    current = str(renewed["value"]) if renewed is not None else session
    s.clock.advance(2 * MINUTE)
    admin = str((set_cookie(s.call(admin)) or {"value": admin})["value"])
    s.call(admin, f"/api/admin/users/{alice_id}", "PATCH", json={"disabled": False})

    assert s.call(current).status_code == 200


def test_removing_the_server_admin_flag_takes_effect_on_the_next_request(
    service: Callable[..., Instance],
) -> None:
    s = service()
    root = s.login("root", role="ServerAdmin")
    ops = s.login("ops", role="ServerAdmin")
    assert s.call(ops, "/api/admin/users").status_code == 200
    ops_id = s.call(ops).get_json()["id"]

    patched = s.call(root, f"/api/admin/users/{ops_id}", "PATCH", json={"isServerAdmin": False})

    assert patched.status_code == 200
    assert patched.get_json()["isServerAdmin"] is False
    expect_error(s.call(ops, "/api/admin/users"), 403, "auth.forbidden")
    expect_error(s.call(ops, "/api/admin/keys"), 403, "auth.forbidden")
    assert s.call(ops).get_json()["isServerAdmin"] is False


def test_a_token_granting_server_admin_wins_over_the_admin_api(
    service: Callable[..., Instance],
) -> None:
    """allow_assign_server_admin = true: as in Grafana, the token is the source of truth."""
    s = service()
    root = s.login("root", role="ServerAdmin")
    ops_token = s.token("ops", role="ServerAdmin")
    ops_id = s.with_jwt(ops_token).get_json()["id"]
    s.call(root, f"/api/admin/users/{ops_id}", "PATCH", json={"isServerAdmin": False})

    assert s.with_jwt(ops_token, "/api/admin/users").status_code == 200


# ------------------------------------------------------------------ URL login, redirects
LOCAL_TARGETS = [
    pytest.param("/d/abc?x=1#y", id="path-query-fragment"),
    pytest.param("/", id="root"),
    pytest.param("/d/abc", id="path"),
    pytest.param("/explore?left=%7B%22a%22%3A1%7D", id="encoded-query"),
]

FOREIGN_TARGETS = [
    pytest.param("https://evil.com", id="absolute-https"),
    pytest.param("http://evil.com/d/abc", id="absolute-http"),
    pytest.param("HTTPS://EVIL.COM", id="absolute-uppercase"),
    pytest.param("//evil.com", id="protocol-relative"),
    pytest.param("///evil.com", id="triple-slash"),
    pytest.param("/\\evil.com", id="slash-backslash"),
    pytest.param("\\\\evil.com", id="double-backslash"),
    pytest.param("\\/evil.com", id="backslash-slash"),
    pytest.param("/d/\\evil", id="backslash-inside"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("JaVaScRiPt:alert(1)", id="javascript-mixed-case"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data-url"),
    pytest.param("http:/evil.com", id="scheme-one-slash"),
    pytest.param("https:evil.com", id="scheme-no-slash"),
    pytest.param("evil.com", id="bare-host"),
    pytest.param("%2F%2Fevil.com", id="encoded-no-leading-slash"),
    pytest.param(
        "/%2F%2Fevil.com?",
        id="encoded-double-slash",
    ),
    pytest.param(
        "/%2f%2fevil.com",
        id="encoded-double-slash-lowercase",
    ),
    pytest.param(
        "/%5Cevil.com",
        id="encoded-backslash",
    ),
    pytest.param(" //evil.com", id="leading-space"),
    pytest.param("\t//evil.com", id="leading-tab"),
    pytest.param("/\t/evil.com", id="tab-between-slashes"),
    pytest.param("/\n/evil.com", id="newline-between-slashes"),
    pytest.param("/d/abc\r\nSet-Cookie: x=1", id="crlf-header-injection"),
    pytest.param("/d/abc\r\n\r\n<html>", id="crlf-body-injection"),
    pytest.param("/d/abc\x00", id="nul"),
    pytest.param("/d/ abc", id="space-inside"),
    pytest.param("/d/\u2028abc", id="unicode-line-separator"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("target", LOCAL_TARGETS)
def test_url_login_redirects_to_a_local_path(service: Callable[..., Instance], target: str) -> None:
    s = service()
    token = s.token("alice")

    response = s.client.get("/login", query_string={"auth_token": token, "redirect_to": target})

    assert response.status_code == 302
    assert response.headers["Location"] == target
    assert token not in response.headers["Location"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    cookie = set_cookie(response)
    assert cookie is not None
    assert s.call(str(cookie["value"])).get_json()["login"] == "alice"


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_url_login_never_redirects_off_site(service: Callable[..., Instance], target: str) -> None:
    s = service()
    token = s.token("alice")

    response = s.client.get("/login", query_string={"auth_token": token, "redirect_to": target})

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert set_cookie(response) is not None


def test_url_login_strips_the_token_from_the_redirect_target(
    service: Callable[..., Instance],
) -> None:
    s = service()
    token = s.token("alice")
    target = f"/d/abc?auth_token={token}&x=1"

    response = s.client.get("/login", query_string={"auth_token": token, "redirect_to": target})

    assert response.status_code == 302
    assert response.headers["Location"] == "/d/abc?x=1"


def test_url_login_without_redirect_to_goes_home(service: Callable[..., Instance]) -> None:
    s = service()
    response = s.client.get("/login", query_string={"auth_token": s.token("alice")})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_raw_encoded_double_slash_in_the_query_is_refused(
    service: Callable[..., Instance],
) -> None:
    """``redirect_to=%2F%2Fevil.com`` arrives decoded as ``//evil.com``."""
    s = service()
    token = s.token("alice")
    response = s.client.get(f"/login?auth_token={token}&redirect_to=%2F%2Fevil.com")
    assert response.headers["Location"] == "/"


def test_url_login_is_off_unless_configured(service: Callable[..., Instance]) -> None:
    s = service(**{"auth.jwt": {"url_login": "false"}})
    response = s.client.get("/login", query_string={"auth_token": s.token("alice")})
    expect_error(response, 401, "auth.unauthorized")
    assert set_cookie(response) is None


def test_the_token_never_reaches_the_redirect_body_or_log(
    service: Callable[..., Instance], caplog: pytest.LogCaptureFixture
) -> None:
    s = service()
    caplog.set_level(logging.DEBUG)  # after create_app, which sets the authsvc logger's level
    good = s.token("alice")
    expired = s.token("bob", ttl=-2 * HOUR, iat=int(s.clock.now) - 3 * HOUR)
    other_key = ECKey.generate_key("P-256", parameters={"kid": KID})
    forged = jwt.encode(
        {"alg": "ES256", "kid": KID},
        {"sub": "mallory", "iat": int(s.clock.now), "exp": int(s.clock.now) + 60},
        other_key,
    )

    ok = s.client.get("/login", query_string={"auth_token": good, "redirect_to": "/d/x"})
    refused = [
        s.client.get("/login", query_string={"auth_token": t, "redirect_to": "/d/x"})
        for t in (expired, forged)
    ]

    assert ok.status_code == 302
    assert [r.status_code for r in refused] == [401, 401]
    assert [r.get_json()["messageId"] for r in refused] == ["jwt.invalid", "jwt.invalid"]
    assert caplog.records, "expected login and refusal records"
    for token in (good, expired, forged):
        signature = token.rsplit(".", 1)[1]
        for response in (ok, *refused):
            assert token not in response.headers.get("Location", "")
            assert signature not in response.get_data(as_text=True)
            assert signature not in str(response.headers)
        for record in caplog.records:
            assert signature not in record.getMessage()
            assert signature not in repr(vars(record))


# --------------------------------------------------------------------------- CSRF
def _admin_and_victim(s: Instance) -> tuple[str, int, str]:
    admin = s.login("root", role="ServerAdmin")
    victim = s.login("alice")
    victim_id = s.call(victim).get_json()["id"]
    return admin, victim_id, victim


CROSS_ORIGIN = [
    pytest.param({"Origin": "https://evil.example"}, id="origin-other-site"),
    pytest.param({"Referer": "https://evil.example/page"}, id="referer-other-site"),
    pytest.param({"Origin": "http://auth.example.com"}, id="origin-other-scheme"),
    pytest.param({"Origin": "https://auth.example.com:8443"}, id="origin-other-port"),
    pytest.param({"Origin": "https://auth.example.com.evil.example"}, id="origin-suffix-host"),
    pytest.param({"Origin": "https://evil.example/auth.example.com"}, id="origin-path-trick"),
    pytest.param({"Origin": "null"}, id="origin-null"),
    pytest.param(
        {"Origin": "https://evil.example", "Referer": f"{ORIGIN}/x"},
        id="origin-wins-over-referer",
    ),
]
SAME_ORIGIN = [
    pytest.param({"Origin": ORIGIN}, id="origin"),
    pytest.param({"Referer": f"{ORIGIN}/admin/users?page=2"}, id="referer"),
    pytest.param({}, id="neither-header"),
]


@pytest.mark.parametrize("headers", CROSS_ORIGIN)
def test_cross_origin_state_changes_by_cookie_are_refused(
    service: Callable[..., Instance], headers: dict[str, str]
) -> None:
    s = service()
    admin, victim_id, victim = _admin_and_victim(s)

    attempts = [
        s.call(admin, f"/api/admin/users/{victim_id}", "PATCH", headers, json={"disabled": True}),
        s.call(admin, f"/api/admin/users/{victim_id}/sessions", "DELETE", headers),
        s.call(victim, "/api/logout", "POST", headers),
    ]

    for response in attempts:
        body = expect_error(response, 403, "auth.forbidden")
        assert "cross-origin" in body["reason"]
    assert s.call(victim).status_code == 200  # not disabled, not revoked, not logged out
    assert s.call(admin, f"/api/admin/users/{victim_id}").get_json()["disabled"] is False


@pytest.mark.parametrize("headers", SAME_ORIGIN)
def test_same_origin_state_changes_by_cookie_are_allowed(
    service: Callable[..., Instance], headers: dict[str, str]
) -> None:
    s = service()
    admin, victim_id, victim = _admin_and_victim(s)

    patched = s.call(
        admin, f"/api/admin/users/{victim_id}", "PATCH", headers, json={"role": "Editor"}
    )
    logout = s.call(victim, "/api/logout", "POST", headers)

    assert patched.status_code == 200
    assert patched.get_json()["role"] == "Editor"
    assert logout.status_code == 200
    expect_error(s.call(victim), 401, "session.invalid")


def test_requests_authenticated_by_jwt_are_not_subject_to_the_origin_check(
    service: Callable[..., Instance],
) -> None:
    s = service()
    admin_token = s.token("root", role="ServerAdmin")
    victim_id = s.with_jwt(s.token("alice")).get_json()["id"]
    evil = {"Origin": "https://evil.example", "Referer": "https://evil.example/x"}

    patched = s.with_jwt(
        admin_token,
        f"/api/admin/users/{victim_id}",
        "PATCH",
        headers=evil,
        json={"role": "Editor"},
    )
    revoked = s.with_jwt(
        admin_token, f"/api/admin/users/{victim_id}/sessions", "DELETE", headers=evil
    )

    assert patched.status_code == 200
    assert revoked.status_code == 200


def test_cross_origin_reads_by_cookie_are_allowed(service: Callable[..., Instance]) -> None:
    s = service()
    session = s.login("alice")
    response = s.call(session, "/api/user", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200


def test_a_refused_cross_origin_request_does_not_cost_the_user_the_session(
    service: Callable[..., Instance],
) -> None:
    s = service()
    admin, victim_id, _ = _admin_and_victim(s)
    s.clock.advance(10 * MINUTE)  # rotation is due

    refused = s.call(
        admin,
        f"/api/admin/users/{victim_id}",
        "PATCH",
        {"Origin": "https://evil.example"},
        json={"disabled": True},
    )
    assert refused.status_code == 403
    renewed = set_cookie(refused)
    current = str(renewed["value"]) if renewed is not None else admin
    s.clock.advance(2 * MINUTE)

    assert s.call(current).status_code == 200


# --------------------------------------------------------------------------- routing errors
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/nope", id="unknown-api"),
        pytest.param("GET", "/nope", id="unknown-page"),
        pytest.param("GET", "/api/admin/users/abc", id="non-numeric-id"),
        pytest.param("POST", "/api/admin/nope", id="unknown-admin"),
    ],
)
def test_an_unknown_route_is_404_api_not_found(
    service: Callable[..., Instance], method: str, path: str
) -> None:
    s = service()
    body = expect_error(s.client.open(path, method=method), 404, "api.not_found")
    assert path in body["reason"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/login/jwt", id="get-login"),
        pytest.param("DELETE", "/api/user", id="delete-user"),
        pytest.param("GET", "/api/logout", id="get-api-logout"),
        pytest.param("PUT", "/api/admin/users/1", id="put-admin-user"),
        pytest.param("POST", "/api/auth/verify", id="post-verify"),
    ],
)
def test_a_wrong_method_is_405_api_method_not_allowed(
    service: Callable[..., Instance], method: str, path: str
) -> None:
    s = service()
    body = expect_error(s.client.open(path, method=method), 405, "api.method_not_allowed")
    assert method in body["reason"]
