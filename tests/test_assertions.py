"""Signed assertions (CONTRACT §5): the upstream one on /api/auth/verify, the outbound ones.

Every assertion is checked the way its receiver checks it: verified with
joserfc against the JWKS authsvc publishes (or, for an assertion with a key of
its own, against that key's public half), then its claims compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import ECKey
from signing_material import (
    TRADITIONAL,
    certificate,
    chain_pem,
    one_key_jwks,
    private_pem,
    thumbprint,
    verify,
    write,
)
from tokens import SIGNING_KID, FakeClock, Keys, sign, signing_keys
from werkzeug.test import EnvironBuilder

from authsvc.cli import main as call_cli
from authsvc.signing.assertions import CACHE_ENTRIES, UpstreamAssertions
from authsvc.users import find_user, update_user
from authsvc.views.forward_auth import HEADER_BUDGET, ForwardAuthFastPath

HEADER = "X-JWT-Assertion"
ROOT = "http://127.0.0.1:8080/"
AppFactory = Callable[..., Flask]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


@pytest.fixture
def key_file(keys: Keys, tmp_path: Path) -> Path:
    """[signing] key_file: a P-256 key in SEC1 form."""
    return write(tmp_path, "signing.pem", private_pem(keys.ec256.private_key, TRADITIONAL))


def issuer_cfg(jwks_file: Path, **extra: str) -> dict[str, str]:
    return {
        "enabled": "true",
        "header_name": HEADER,
        "jwk_set_file": str(jwks_file),
        "auto_sign_up": "true",
        "username_claim": "sub",
        "email_claim": "email",
        "groups_attribute_path": "groups",
        **extra,
    }


def token(key: ECKey, sub: str = "alice", ttl: int = 3600, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "email": f"{sub}@example.com", "iat": now, "exp": now + ttl}
    return sign(key, "ES256", {**payload, **claims}, kid=SIGNING_KID)


@pytest.fixture
def build(make_app: AppFactory, jwks_file: Path, key_file: Path) -> Callable[..., Flask]:
    """An app with [signing], [upstream_assertion] on, and the ``jwt`` issuer; sections
    given as keyword arguments (``assertion_x={...}`` for ``[assertion.x]``) are merged."""

    def make(clock: Callable[[], float] | None = None, **sections: dict[str, str]) -> Flask:
        values: dict[str, dict[str, str]] = {
            "auth.jwt": issuer_cfg(jwks_file),
            "signing": {"key_file": str(key_file)},
            "upstream_assertion": {"enabled": "true"},
        }
        for arg, section in sections.items():
            name = _section(arg)
            values[name] = {**values.get(name, {}), **section}
        return make_app(values, **({"clock": clock} if clock is not None else {}))

    return make


def _section(arg: str) -> str:
    """``auth_jwt`` → ``auth.jwt``, ``auth_jwt_corp`` → ``auth.jwt.corp``,
    ``assertion_x`` → ``assertion.x``; any other name as it is."""
    for prefix in ("auth_jwt", "assertion"):
        if arg == prefix or arg.startswith(prefix + "_"):
            return prefix.replace("_", ".") + arg[len(prefix) :].replace("_", ".", 1)
    return arg


def jwks_of(app: Flask) -> dict[str, Any]:
    document: dict[str, Any] = app.test_client().get("/.well-known/jwks.json").get_json()
    return document


def verify_response(client: FlaskClient, tok: str | None = None, **headers: str) -> Any:
    sent = {**headers, **({HEADER: tok} if tok is not None else {})}
    response = client.get("/api/auth/verify", headers=sent)
    assert response.status_code == 200, response.data
    return response


# --------------------------------------------------------------------------- upstream
def test_every_200_of_verify_carries_an_assertion_naming_the_caller(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build()
    response = verify_response(
        app.test_client(), token(signing_key, name="Alice A", groups=["ops", "dev"])
    )
    started = int(time.time())
    verified = verify(response.headers["X-Auth-Assertion"], jwks_of(app), iss=ROOT, aud=ROOT)
    claims = dict(verified.claims)
    assert claims.pop("jti")
    iat, exp = claims.pop("iat"), claims.pop("exp")
    assert started - 2 <= iat <= started
    assert exp - iat == 300  # [upstream_assertion] lifetime = 5m
    assert claims == {
        "iss": ROOT,
        "aud": ROOT,
        "sub": "jwt/alice",
        "login": "alice",
        "email": "alice@example.com",
        "name": "Alice A",
        "role": "Viewer",
        "groups": ["ops", "dev"],
        "idp": "jwt",
    }
    assert verified.header["typ"] == "JWT"


def test_header_name_audience_lifetime_and_issuer_are_configurable(
    build: Callable[..., Flask], signing_key: ECKey, key_file: Path
) -> None:
    app = build(
        signing={"key_file": str(key_file), "issuer": "https://auth.example.com"},
        upstream_assertion={
            "header_name": "X-Signed-Identity",
            "audience": "https://app.example.com/",
            "lifetime": "2m",
        },
    )
    response = verify_response(app.test_client(), token(signing_key))
    assert "X-Auth-Assertion" not in response.headers
    verified = verify(
        response.headers["X-Signed-Identity"],
        jwks_of(app),
        iss="https://auth.example.com",
        aud="https://app.example.com/",
    )
    assert verified.claims["exp"] - verified.claims["iat"] == 120


def test_the_assertion_never_outlives_the_inbound_token(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build()
    inbound_exp = int(time.time()) + 90
    tok = sign(signing_key, "ES256", {"sub": "short", "exp": inbound_exp}, kid=SIGNING_KID)
    response = verify_response(app.test_client(), tok)
    verified = verify(response.headers["X-Auth-Assertion"], jwks_of(app))
    assert verified.claims["exp"] == inbound_exp  # not iat + 300


def test_the_assertion_never_outlives_the_session(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build(auth={"login_maximum_lifetime_duration": "2m"})
    client = app.test_client()
    assert client.post("/api/login/jwt", headers={HEADER: token(signing_key)}).status_code == 200
    (session,) = app.extensions["authsvc"].sessions.store.list()

    response = verify_response(client)  # the cookie alone
    verified = verify(response.headers["X-Auth-Assertion"], jwks_of(app))
    assert verified.claims["exp"] == int(session.expires_at)
    assert verified.claims["sub"] == "jwt/alice"  # the sub of the token that made the session
    assert verified.claims["exp"] - verified.claims["iat"] <= 120


def test_scope_is_carried_only_when_the_token_is_scoped(
    build: Callable[..., Flask], signing_key: ECKey, jwks_file: Path
) -> None:
    app = build(auth_jwt={"scope_claim": "scope"})
    client = app.test_client()
    scoped = verify_response(client, token(signing_key, "sc", scope="read write"))
    unscoped = verify_response(client, token(signing_key, "sc"))
    jwks = jwks_of(app)
    assert verify(scoped.headers["X-Auth-Assertion"], jwks).claims["scope"] == ["read", "write"]
    assert "scope" not in verify(unscoped.headers["X-Auth-Assertion"], jwks).claims


def test_sub_and_idp_name_the_issuer_that_authenticated(
    build: Callable[..., Flask], signing_key: ECKey, jwks_file: Path
) -> None:
    corp = issuer_cfg(jwks_file, header_name="X-Corp-Token", username_claim="login")
    app = build(auth_jwt_corp=corp)
    client = app.test_client()
    jwks = jwks_of(app)
    by_jwt = verify_response(client, token(signing_key, "same"))
    # The same sub from another issuer is another subject (another account here).
    corp_token = token(signing_key, "same", login="corp-same", email="corp-same@example.com")
    by_corp = verify_response(client, **{"X-Corp-Token": corp_token})
    claims_jwt = verify(by_jwt.headers["X-Auth-Assertion"], jwks).claims
    claims_corp = verify(by_corp.headers["X-Auth-Assertion"], jwks).claims
    assert (claims_jwt["sub"], claims_jwt["idp"]) == ("jwt/same", "jwt")
    assert (claims_corp["sub"], claims_corp["idp"]) == ("corp/same", "corp")


def test_the_same_caller_gets_the_same_assertion_until_80_percent_of_its_lifetime(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    clock = FakeClock(int(time.time()))
    app = build(clock=clock)
    client = app.test_client()
    tok = token(signing_key, "cached")
    first = verify_response(client, tok).headers["X-Auth-Assertion"]
    assert verify_response(client, tok).headers["X-Auth-Assertion"] == first

    clock.advance(0.79 * 300)
    assert verify_response(client, tok).headers["X-Auth-Assertion"] == first
    clock.advance(0.01 * 300)
    fresh = verify_response(client, tok).headers["X-Auth-Assertion"]
    assert fresh != first
    jwks = jwks_of(app)
    old_claims = verify(first, jwks, now=clock.now).claims
    new_claims = verify(fresh, jwks, now=clock.now).claims
    assert new_claims["jti"] != old_claims["jti"]
    assert new_claims["iat"] == int(clock.now)
    assert verify_response(client, tok).headers["X-Auth-Assertion"] == fresh


def test_another_caller_gets_another_assertion(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    client = build().test_client()
    a = verify_response(client, token(signing_key, "one")).headers["X-Auth-Assertion"]
    b = verify_response(client, token(signing_key, "two")).headers["X-Auth-Assertion"]
    # Another token of the same subject is another credential: its own assertion.
    c = verify_response(client, token(signing_key, "one", ttl=1800)).headers["X-Auth-Assertion"]
    assert len({a, b, c}) == 3


def test_a_changed_user_changes_the_assertion_at_once(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build()
    client = app.test_client()
    tok = token(signing_key, "promoted")  # no role claim: the stored role is the answer
    before = verify_response(client, tok).headers["X-Auth-Assertion"]
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        update_user(db, find_user(db, "promoted"), clock=svc.clock, role="Editor")

    response = verify_response(client, tok)
    after = response.headers["X-Auth-Assertion"]
    assert after != before
    assert response.headers["X-Auth-Role"] == "Editor"
    assert verify(after, jwks_of(app)).claims["role"] == "Editor"


def test_the_fast_path_and_the_flask_view_carry_the_same_assertion(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build()
    fast = app.wsgi_app
    assert isinstance(fast, ForwardAuthFastPath)
    tok = token(signing_key, "fast")

    def call(wsgi: Any) -> dict[str, str]:
        answered: list[tuple[str, list[tuple[str, str]]]] = []
        environ = EnvironBuilder("/api/auth/verify", headers={"X-JWT-Assertion": tok}).get_environ()
        b"".join(wsgi(environ, lambda status, headers: answered.append((status, headers))))
        ((status, headers),) = answered
        assert status == "200 OK"
        return dict(headers)

    from_fast = call(fast)["X-Auth-Assertion"]
    from_view = call(fast.next)["X-Auth-Assertion"]  # Flask's dispatch, the view itself
    assert from_fast == from_view  # one caller, one cached assertion
    verify(from_view, jwks_of(app), iss=ROOT, aud=ROOT)


def test_the_cache_is_a_bounded_lru_on_each_service(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    one, two = build(), build()
    upstream_one = one.extensions["authsvc"].upstream_assertions
    upstream_two = two.extensions["authsvc"].upstream_assertions
    assert isinstance(upstream_one, UpstreamAssertions)
    assert upstream_one._cache is not upstream_two._cache
    assert upstream_one._cache.max_entries == CACHE_ENTRIES
    assert upstream_one._cache.max_bytes is not None
    tok = token(signing_key, "bounded")
    verify_response(one.test_client(), tok)
    assert len(upstream_one._cache) == 1
    assert len(upstream_two._cache) == 0


def test_the_assertion_counts_towards_the_header_budget_and_keeps_every_group(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    groups = [f"group-with-a-long-name-{n:03}" for n in range(60)]
    app = build()
    response = verify_response(app.test_client(), token(signing_key, "many", groups=groups))
    auth_headers = [(k, v) for k, v in response.headers.items() if k.startswith("X-Auth-")]
    assert sum(len(k) + len(v.encode()) + 4 for k, v in auth_headers) <= HEADER_BUDGET
    assert response.headers["X-Auth-Groups-Truncated"] == "true"
    verified = verify(response.headers["X-Auth-Assertion"], jwks_of(app))
    assert verified.claims["groups"] == groups


def test_without_upstream_assertion_verify_carries_none(
    make_app: AppFactory, jwks_file: Path, key_file: Path, signing_key: ECKey
) -> None:
    app = make_app({"auth.jwt": issuer_cfg(jwks_file), "signing": {"key_file": str(key_file)}})
    response = verify_response(app.test_client(), token(signing_key))
    assert "X-Auth-Assertion" not in response.headers


# --------------------------------------------------------------------------- outbound
AISERA = {
    "audience": "https://login.example.com/tenant/oauth2/v2.0/token",
    "claims": '{"tenant": "acme", "ver": 2}',
}


def post(client: FlaskClient, name: str, tok: str | None = None, **headers: str) -> Any:
    sent = {**headers, **({HEADER: tok} if tok is not None else {})}
    return client.post(f"/api/auth/assertion/{name}", headers=sent)


def test_an_outbound_assertion_for_a_jwt_caller(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build(assertion_aisera=AISERA)
    response = post(app.test_client(), "aisera", token(signing_key, "bob"))
    assert response.status_code == 200, response.data
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    verified = verify(body["assertion"], jwks_of(app), iss=ROOT, aud=AISERA["audience"])
    claims = dict(verified.claims)
    assert claims.pop("exp") - claims.pop("iat") == 300
    assert claims.pop("jti")
    assert claims == {
        "iss": ROOT,
        "sub": "bob",
        "aud": AISERA["audience"],
        "upn": "bob@example.com",
        "tenant": "acme",
        "ver": 2,
    }
    assert "x5t" not in verified.header  # no certificate


def test_each_outbound_assertion_is_fresh(build: Callable[..., Flask], signing_key: ECKey) -> None:
    clock = FakeClock(int(time.time()))
    app = build(clock=clock, assertion_aisera=AISERA)
    client = app.test_client()
    tok = token(signing_key, "bob")
    first = post(client, "aisera", tok).get_json()["assertion"]
    clock.advance(1)
    second = post(client, "aisera", tok).get_json()["assertion"]
    jwks = jwks_of(app)
    a, b = verify(first, jwks, now=clock.now).claims, verify(second, jwks, now=clock.now).claims
    assert a["jti"] != b["jti"]
    assert (b["iat"] - a["iat"], b["exp"] - a["exp"]) == (1, 1)


def test_subject_issuer_upn_claim_and_lifetime_come_from_the_section(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build(
        assertion_svc={
            "audience": "urn:svc",
            "issuer": "client-123",
            "subject": "client-123",
            "upn_claim": "preferred_username",
            "lifetime": "90s",
        },
        assertion_bare={"audience": "urn:bare", "upn_claim": "-"},
    )
    client = app.test_client()
    jwks = jwks_of(app)
    body = post(client, "svc", token(signing_key, "carol")).get_json()
    assert body["expires_in"] == 90
    claims = verify(body["assertion"], jwks, iss="client-123", aud="urn:svc").claims
    assert (claims["sub"], claims["preferred_username"]) == ("client-123", "carol@example.com")
    assert "upn" not in claims

    bare = verify(post(client, "bare", token(signing_key, "carol")).get_json()["assertion"], jwks)
    assert set(bare.claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}


def test_the_upn_falls_back_to_the_login_without_an_email(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build(assertion_aisera=AISERA)
    now = int(time.time())
    tok = sign(signing_key, "ES256", {"sub": "noemail", "exp": now + 600}, kid=SIGNING_KID)
    body = post(app.test_client(), "aisera", tok).get_json()
    assert verify(body["assertion"], jwks_of(app)).claims["upn"] == "noemail"


@pytest.mark.parametrize(
    ("gate", "claims", "allowed"),
    [
        ({"min_role": "Editor"}, {"role": "Viewer"}, False),
        ({"min_role": "Editor"}, {"role": "Admin"}, True),
        ({"groups": "support ops"}, {"groups": ["dev"]}, False),
        ({"groups": "support ops"}, {"groups": ["dev", "ops"]}, True),
        ({"min_role": "Editor", "groups": "ops"}, {"role": "Editor", "groups": []}, False),
    ],
    ids=["role-below", "role-above", "no-group", "one-group", "role-without-group"],
)
def test_min_role_and_groups_gate_who_may_obtain_it(
    build: Callable[..., Flask],
    signing_key: ECKey,
    jwks_file: Path,
    gate: dict[str, str],
    claims: dict[str, Any],
    allowed: bool,
) -> None:
    app = build(
        auth_jwt={"role_attribute_path": "role"}, assertion_gated={"audience": "urn:g", **gate}
    )
    response = post(app.test_client(), "gated", token(signing_key, "gated", **claims))
    if allowed:
        assert response.status_code == 200, response.data
        verify(response.get_json()["assertion"], jwks_of(app), aud="urn:g")
    else:
        assert response.status_code == 403
        assert response.get_json()["messageId"] == "auth.forbidden"


def test_unknown_names_unauthenticated_callers_and_signing_off(
    build: Callable[..., Flask], make_app: AppFactory, jwks_file: Path, signing_key: ECKey
) -> None:
    client = build(assertion_aisera=AISERA).test_client()
    unknown = post(client, "nope", token(signing_key))
    assert unknown.status_code == 404
    assert unknown.get_json()["messageId"] == "api.not_found"
    anonymous = post(client, "aisera")
    assert anonymous.status_code == 401
    assert (
        client.get("/api/auth/assertion/aisera", headers={HEADER: token(signing_key)}).status_code
        == 405
    )

    off = make_app({"auth.jwt": issuer_cfg(jwks_file)}).test_client()
    assert post(off, "aisera", token(signing_key)).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"Origin": "http://127.0.0.1:8080"}, 200),
        ({"Origin": "https://evil.example"}, 403),
        ({"Referer": "https://evil.example/page"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
    ],
    ids=["no-origin", "same-origin", "cross-origin", "cross-referer", "sec-fetch-cross-site"],
)
def test_a_cookie_caller_is_held_to_the_csrf_rule(
    build: Callable[..., Flask], signing_key: ECKey, headers: dict[str, str], status: int
) -> None:
    app = build(assertion_aisera=AISERA)
    client = app.test_client()
    assert (
        client.post("/api/login/jwt", headers={HEADER: token(signing_key, "dan")}).status_code
        == 200
    )
    response = post(client, "aisera", **headers)
    assert response.status_code == status, response.data
    if status == 200:
        assert verify(response.get_json()["assertion"], jwks_of(app)).claims["sub"] == "dan"
    else:
        assert response.get_json()["messageId"] == "auth.forbidden"


def test_a_jwt_caller_is_not_held_to_the_csrf_rule(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    client = build(assertion_aisera=AISERA).test_client()
    response = post(client, "aisera", token(signing_key), Origin="https://elsewhere.example")
    assert response.status_code == 200


def test_an_assertion_with_its_own_key_and_certificate(
    build: Callable[..., Flask], signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    own = keys.rsa3.private_key
    cert = certificate(own, "aisera integration")
    app = build(
        assertion_aisera={
            **AISERA,
            "key_file": str(write(tmp_path, "own.pem", private_pem(own, TRADITIONAL))),
            "certificate_file": str(write(tmp_path, "own.crt", chain_pem(cert))),
            "algorithm": "PS256",
        }
    )
    body = post(app.test_client(), "aisera", token(signing_key)).get_json()
    published = jwks_of(app)
    # Its key is the integration's, not [signing]'s: not in the JWKS...
    with pytest.raises(InvalidKeyIdError):
        verify(body["assertion"], published)
    # ...but it verifies against the public half of the key the certificate holds.
    from joserfc.jwk import RSAKey

    public = RSAKey.import_key(chain_pem(cert)).as_dict(kid=thumbprint(own))
    verified = verify(body["assertion"], one_key_jwks(public), aud=AISERA["audience"])
    assert verified.header["alg"] == "PS256"
    assert verified.header["x5t"]
    assert verified.header["kid"] == thumbprint(own)


def test_an_assertion_overriding_only_the_algorithm_signs_with_the_signing_key(
    make_app: AppFactory, jwks_file: Path, signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    rsa = keys.rsa.private_key
    cert = certificate(rsa, "authsvc")
    app = make_app(
        {
            "auth.jwt": issuer_cfg(jwks_file),
            "signing": {
                "key_file": str(write(tmp_path, "k.pem", private_pem(rsa))),
                "certificate_file": str(write(tmp_path, "k.crt", chain_pem(cert))),
            },
            "assertion.entra": {"audience": "urn:entra", "algorithm": "PS384"},
        }
    )
    body = post(app.test_client(), "entra", token(signing_key)).get_json()
    jwk = {k: v for k, v in jwks_of(app)["keys"][0].items() if k != "alg"}
    verified = verify(body["assertion"], one_key_jwks(jwk), aud="urn:entra")
    assert verified.header["alg"] == "PS384"
    assert verified.header["kid"] == thumbprint(rsa)
    assert verified.header["x5t"] == jwk["x5t"]  # the inherited certificate


def test_a_tampered_assertion_fails_verification(
    build: Callable[..., Flask], signing_key: ECKey
) -> None:
    app = build(assertion_aisera=AISERA)
    body = post(app.test_client(), "aisera", token(signing_key)).get_json()
    head, payload, signature = body["assertion"].split(".")
    forged = f"{head}.{payload[:-2]}AA.{signature}"
    with pytest.raises(BadSignatureError):
        verify(forged, jwks_of(app))


# --------------------------------------------------------------------------- assertion mint
def mint(capsys: pytest.CaptureFixture[str], homepath: Path, *args: str) -> tuple[int, str, str]:
    code = call_cli(["assertion", "mint", *args, "--homepath", str(homepath)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mint_home(homepath: Path, keys: Keys) -> Path:
    """A home path whose custom.ini has [signing] with a certificate and one assertion."""
    key = keys.ec256.private_key
    k = write(homepath, "k.pem", private_pem(key))
    c = write(homepath, "k.crt", chain_pem(certificate(key, "authsvc")))
    (homepath / "conf" / "custom.ini").write_text(
        f"[signing]\nkey_file = {k}\ncertificate_file = {c}\n"
        "[assertion.entra]\nissuer = 11111111-2222-3333-4444-555555555555\n"
        "audience = https://login.example.com/tenant/oauth2/v2.0/token\n"
        'claims = {"fixed": true}\nlifetime = 10m\n'
    )
    return homepath


def _jwks_of_home(make_settings: Any) -> dict[str, Any]:
    from authsvc.signing import SigningService

    signing = SigningService.build(make_settings(), watch=False)
    assert signing.ring is not None
    return {"keys": [dict(k) for k in signing.ring.published]}


def test_mint_prints_a_client_assertion_alone_on_one_line(
    mint_home: Path, make_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = mint(capsys, mint_home, "entra")
    assert code == 0, err
    assert out.count("\n") == 1 and out.endswith("\n") and out.count(".") == 2
    client_id = "11111111-2222-3333-4444-555555555555"
    verified = verify(
        out.strip(),
        _jwks_of_home(make_settings),
        iss=client_id,
        aud="https://login.example.com/tenant/oauth2/v2.0/token",
    )
    assert verified.claims["sub"] == client_id  # iss = sub = the client id
    assert verified.claims["exp"] - verified.claims["iat"] == 600
    assert verified.claims["fixed"] is True
    assert verified.header["x5t"] and verified.header["x5t#S256"]


def test_mint_takes_subject_claims_and_ttl(
    mint_home: Path, make_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = mint(
        capsys, mint_home, "entra", "--subject", "svc-7", "--claim", "n=3", "--ttl", "30s"
    )
    assert code == 0, err
    claims = verify(out.strip(), _jwks_of_home(make_settings)).claims
    assert (claims["sub"], claims["n"], claims["exp"] - claims["iat"]) == ("svc-7", 3, 30)

    again = mint(capsys, mint_home, "entra")[1]
    assert verify(again.strip(), _jwks_of_home(make_settings)).claims["jti"] != claims["jti"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no [assertion.nope] section (configured: entra)"),
        (["entra", "--claim", "sub=x"], "--claim cannot set sub"),
        (["entra", "--ttl", "0"], "--ttl must be above 0"),
    ],
    ids=["unknown-name", "registered-claim", "zero-ttl"],
)
def test_mint_refuses_with_a_reason(
    mint_home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = mint(capsys, mint_home, *args)
    assert code == 1
    assert out == ""
    assert message in err
