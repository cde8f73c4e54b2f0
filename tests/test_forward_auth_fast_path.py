"""The forward-auth fast path (``ForwardAuthFastPath``) answers exactly as the Flask view.

A repeated JWT on ``GET /api/auth/verify`` skips Flask's dispatch; these tests
hold the two paths to the same answer and show that nothing the slow path
would refuse slips through the fast one.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from werkzeug.test import EnvironBuilder

from authsvc.users import find_user, update_user
from authsvc.views.forward_auth import ForwardAuthFastPath

HEADER = "X-JWT-Assertion"


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "fast"})


@pytest.fixture
def app(make_app, key: ECKey, tmp_path: Path) -> Flask:  # type: ignore[no-untyped-def]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return make_app(  # type: ignore[no-any-return]
        {
            "auth.jwt": {
                "enabled": "true",
                "header_name": HEADER,
                "jwk_set_file": str(jwks),
                "auto_sign_up": "true",
                "username_claim": "sub",
                "email_claim": "email",
                "role_attribute_path": "role",
            }
        }
    )


def token(key: ECKey, **claims: object) -> str:
    now = int(time.time())
    payload = {"sub": "fast", "email": "fast@example.com", "iat": now, "exp": now + 600, **claims}
    return jwt.encode({"alg": "ES256", "kid": "fast"}, payload, key, algorithms=["ES256"])


def answer(app: Flask, tok: str) -> tuple[int, dict[str, str], bytes]:
    response = app.test_client().get("/api/auth/verify", headers={HEADER: tok})
    headers = {k: v for k, v in response.headers.items() if k != "X-Request-Id"}
    return response.status_code, headers, response.data


def test_the_fast_path_is_installed(app: Flask) -> None:
    assert isinstance(app.wsgi_app, ForwardAuthFastPath)


def test_fast_answer_equals_the_flask_view(app: Flask, key: ECKey) -> None:
    tok = token(key, role="Editor")
    first = answer(app, tok)  # verified, provisioned: the Flask view answers
    second = answer(app, tok)  # cached: the fast path answers

    assert first[0] == second[0] == 200
    assert first == second
    assert second[1]["X-Auth-Role"] == "Editor"


def test_a_disabled_user_is_refused_on_the_next_request(app: Flask, key: ECKey) -> None:
    tok = token(key)
    assert answer(app, tok)[0] == 200
    assert answer(app, tok)[0] == 200
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        update_user(db, find_user(db, "fast"), clock=svc.clock, disabled=True)

    status, _headers, body = answer(app, tok)

    assert status == 401
    assert json.loads(body)["messageId"] == "identity.disabled"


def test_an_admin_role_change_is_seen_at_once(app: Flask, key: ECKey) -> None:
    tok = token(key)  # no role claim: the stored role is what the answer carries
    assert answer(app, tok)[1]["X-Auth-Role"] == "Viewer"
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        update_user(db, find_user(db, "fast"), clock=svc.clock, role="Admin")

    assert answer(app, tok)[1]["X-Auth-Role"] == "Admin"


@pytest.mark.parametrize(
    "query",
    ["?role=Admin", "?group=ops"],
    ids=["role-gate", "group-gate"],
)
def test_gates_take_the_long_way(app: Flask, key: ECKey, query: str) -> None:
    tok = token(key)
    client = app.test_client()
    assert client.get("/api/auth/verify", headers={HEADER: tok}).status_code == 200

    response = client.get(f"/api/auth/verify{query}", headers={HEADER: tok})

    assert response.status_code == 403
    assert response.get_json()["messageId"] == "auth.forbidden"


def test_an_expired_cached_token_is_not_answered_fast(app: Flask, key: ECKey) -> None:
    svc = app.extensions["authsvc"]
    tok = token(key)
    assert answer(app, tok)[0] == 200
    later = time.time() + 3600
    svc.issuers.get("jwt").verifier.clock = lambda: later

    status, _headers, body = answer(app, tok)

    assert status == 401
    assert json.loads(body)["messageId"] == "jwt.invalid"


def test_fast_answers_are_counted_in_metrics(app: Flask, key: ECKey) -> None:
    tok = token(key)
    for _ in range(3):
        assert answer(app, tok)[0] == 200
    text = app.test_client().get("/metrics").get_data(as_text=True)

    assert 'authsvc_http_requests_total{route="/api/auth/verify",status="200"} 3.0' in text


# ------------------------------------------------------------------ one answer, both entries
SECRET = "p" * 48
PARTNER = "https://partner.example.com/"


@pytest.fixture
def two_issuer_app(make_app, key: ECKey, tmp_path: Path) -> Flask:  # type: ignore[no-untyped-def]
    """``[auth.jwt]`` (ES256 JWKS file) and ``[auth.jwt.partner]`` (HS256, its own iss, scopes)
    on one header."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    common = {
        "header_name": HEADER,
        "auto_sign_up": "true",
        "username_claim": "sub",
        "email_claim": "email",
        "role_attribute_path": "role",
        "groups_attribute_path": "groups",
    }
    return make_app(  # type: ignore[no-any-return]
        {
            "auth.jwt": {"enabled": "true", "jwk_set_file": str(jwks), **common},
            "auth.jwt.partner": {
                "hmac_secret": SECRET,
                "issuer": PARTNER,
                "scope_claim": "scope",
                **common,
            },
        }
    )


def partner_token(**claims: object) -> str:
    now = int(time.time())
    payload = {
        "sub": "pat",
        "iss": PARTNER,
        "iat": now,
        "exp": now + 600,
        "jti": secrets.token_hex(8),
    }
    payload.update(claims)
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()), ["HS256"])


def through(wsgi: object, path: str, headers: dict[str, str], method: str = "GET") -> tuple:  # type: ignore[type-arg]
    """Status, headers (without the request id) and body of one request to a WSGI callable."""
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    environ = EnvironBuilder(path, method=method, headers=headers).get_environ()
    body = b"".join(wsgi(environ, lambda status, hs: answered.append((status, hs))))  # type: ignore[operator]
    ((status, raw),) = answered
    kept = sorted((k, v) for k, v in raw if k != "X-Request-Id")
    return status, kept, body


CASES = {
    # name: (path, token maker, extra headers)
    "fresh token": ("/api/auth/verify", lambda k: token(k, role="Editor"), {}),
    "fresh token, groups": ("/api/auth/verify", lambda k: token(k, groups=["dev", "a,b"]), {}),
    "role gate passes": ("/api/auth/verify?role=Viewer", lambda k: token(k), {}),
    "role gate refuses": ("/api/auth/verify?role=Admin", lambda k: token(k), {}),
    "group gate refuses": ("/api/auth/verify?group=ops", lambda k: token(k), {}),
    "bad gate": ("/api/auth/verify?role=Emperor", lambda k: token(k), {}),
    "issuer gate": ("/api/auth/verify?issuer=partner", lambda k: token(k), {}),
    "second issuer": ("/api/auth/verify", lambda k: partner_token(scope="read write"), {}),
    "second issuer, scope gate": (
        "/api/auth/verify?scope=admin",
        lambda k: partner_token(scope="read"),
        {},
    ),
    "second issuer, issuer gate": (
        "/api/auth/verify?issuer=partner&scope=read",
        lambda k: partner_token(scope="read"),
        {},
    ),
    "Envoy path": ("/api/auth/verify//upstream/x?y=1", lambda k: token(k), {}),
    "expired": ("/api/auth/verify", lambda k: token(k, exp=int(time.time()) - 3600), {}),
    "forged": ("/api/auth/verify", lambda k: token(k)[:-4] + "AAAA", {}),
    "untrusted iss": ("/api/auth/verify", lambda k: partner_token(iss="https://evil/"), {}),
    "garbage": ("/api/auth/verify", lambda k: "not.a.jwt", {}),
    "no credentials": ("/api/auth/verify", lambda k: "", {}),
    "bad cookie": ("/api/auth/verify", lambda k: "", {"Cookie": "authsvc_session=nope"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_entries_give_one_answer(two_issuer_app: Flask, key: ECKey, case: str) -> None:
    """Each case twice from scratch (a new token each time, so neither entry meets the
    other's cache), first through the WSGI entry, then through Flask's dispatch; then
    the repeated token through both. Every answer must be the same."""
    path, make, extra = CASES[case]
    fast = two_issuer_app.wsgi_app
    assert isinstance(fast, ForwardAuthFastPath)

    def headers(tok: str) -> dict[str, str]:
        return {**extra, **({HEADER: tok} if tok else {})}

    first_token, second_token = make(key), make(key)
    if case not in ("garbage", "no credentials", "bad cookie"):
        assert first_token != second_token
    fresh_fast = through(fast, path, headers(first_token))
    fresh_view = through(fast.next, path, headers(second_token))
    repeated_fast = through(fast, path, headers(second_token))
    repeated_view = through(fast.next, path, headers(first_token))
    assert fresh_fast == fresh_view == repeated_fast == repeated_view
    head = through(fast, path, headers(second_token), method="HEAD")
    assert head == (fresh_fast[0], fresh_fast[1], b"")


def test_both_entries_give_one_answer_for_a_session_cookie(
    two_issuer_app: Flask, key: ECKey
) -> None:
    client = two_issuer_app.test_client(use_cookies=False)
    login = client.post("/api/login/jwt", headers={HEADER: partner_token(scope="read")})
    assert login.status_code == 200
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    fast = two_issuer_app.wsgi_app
    assert isinstance(fast, ForwardAuthFastPath)
    for path in (
        "/api/auth/verify",
        "/api/auth/verify?scope=read",
        "/api/auth/verify?scope=x",
        "/api/auth/verify?issuer=jwt",
        "/api/auth/verify/any/path",
    ):
        by_fast = through(fast, path, cookie)
        by_view = through(fast.next, path, cookie)
        assert by_fast == by_view, path
        assert by_fast[0] in ("200 OK", "401 UNAUTHORIZED", "403 FORBIDDEN"), (path, by_fast)
    assert through(fast, "/api/auth/verify", cookie)[0] == "200 OK"
