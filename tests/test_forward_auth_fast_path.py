"""The forward-auth fast path (``ForwardAuthFastPath``) answers exactly as the Flask view.

A repeated JWT on ``GET /api/auth/verify`` skips Flask's dispatch; these tests
hold the two paths to the same answer and show that nothing the slow path
would refuse slips through the fast one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey

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
