"""CONTRACT §4: several issuers at once, each with its own keys and rules.

Config sections, routing (header → iss → alg family), users per (issuer,
subject), the forward-auth additions and sessions that remember their
issuer. Tokens are real (ES256 keys in JWKS files, an HS256 shared secret);
apps come from the factory on SQLite and, where users are involved, on
PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from tokens import jwks, public_jwk

from authsvc.cli import main as cli
from authsvc.config import ConfigError, load_settings
from authsvc.plugins import StartupError

A_HEADER = "X-A-Token"
SHARED = "Authorization"
SECRET = "s" * 48
A_ISS = "https://a.example.com/"
B_ISS = "https://b.example.com/"


@pytest.fixture(scope="module")
def key_a() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "a1"})


@pytest.fixture(scope="module")
def key_b() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "b1"})


@pytest.fixture(scope="module")
def files(key_a: ECKey, key_b: ECKey, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("issuers")
    out = {}
    for name, key in (("a", key_a), ("b", key_b)):
        path = d / f"{name}.json"
        path.write_text(json.dumps(jwks(public_jwk(key, str(key.kid)))))
        out[name] = str(path)
    return out


def sign(key: ECKey | OctKey, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 600, **claims}
    if isinstance(key, OctKey):
        return jwt.encode({"alg": "HS256"}, payload, key, algorithms=["HS256"])
    return jwt.encode({"alg": "ES256", "kid": key.kid}, payload, key, algorithms=["ES256"])


def hmac_key() -> OctKey:
    return OctKey.import_key(SECRET.encode())


COMMON = {"auto_sign_up": "true", "username_claim": "login", "email_claim": "email"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> dict[str, dict[str, str]]:
    if request.param == "sqlite":
        return {}
    return {"database": {"url": request.getfixturevalue("pg_url")}}


BuildApp = Callable[..., Flask]


@pytest.fixture
def two_issuers(make_app: BuildApp, files: dict[str, str]) -> BuildApp:
    """``[auth.jwt]`` off; ``a`` (ES256, iss A) and ``b`` (ES256, iss B) share one header,
    ``hs`` (HS256, no issuer list) shares it too; ``own`` has a header of its own."""

    def build(**sections: dict[str, str]) -> Flask:
        values: dict[str, dict[str, str]] = {
            "auth.jwt": {"enabled": "false"},
            "auth.jwt.a": {
                **COMMON,
                "header_name": SHARED,
                "jwk_set_file": files["a"],
                "issuer": A_ISS,
            },
            "auth.jwt.b": {
                **COMMON,
                "header_name": SHARED,
                "jwk_set_file": files["b"],
                "issuer": B_ISS,
                "scope_claim": "scope",
            },
            "auth.jwt.hs": {**COMMON, "header_name": SHARED, "hmac_secret": SECRET},
        }
        for section, kv in sections.items():
            values.setdefault(section, {}).update(kv)
        return make_app(values)

    return build


def get(app: Flask, path: str = "/api/auth/verify", **headers: str) -> Any:
    return app.test_client(use_cookies=False).get(path, headers=headers)


def error(response: Any, status: int, message_id: str) -> str:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    reason: str = body["reason"]
    return reason


# ------------------------------------------------------------------------------------ config
def write(home: Path, text: str) -> None:
    (home / "conf" / "custom.ini").write_text(text)


def test_a_named_issuer_takes_defaults_from_defaults_ini_not_from_auth_jwt(
    homepath: Path, files: dict[str, str]
) -> None:
    write(
        homepath,
        "[auth.jwt]\nenabled = true\nheader_name = X-Main\nusername_claim = sub\n"
        f"jwk_set_file = {files['a']}\nleeway = 5s\nauto_sign_up = true\n"
        f"[auth.jwt.corp]\nheader_name = X-Corp\njwk_set_file = {files['b']}\n",
    )
    settings = load_settings(homepath, environ={})
    corp = settings.issuers["corp"]
    assert list(settings.issuers) == ["jwt", "corp"]
    assert corp.enabled is True  # a named issuer is enabled unless it says otherwise
    assert (corp.name, corp.section) == ("corp", "auth.jwt.corp")
    assert corp.username_claim == "" and corp.leeway == 60.0 and corp.auto_sign_up is False
    assert settings.jwt.username_claim == "sub" and settings.jwt.leeway == 5.0


def test_a_named_issuer_may_be_disabled(homepath: Path, files: dict[str, str]) -> None:
    write(homepath, "[auth.jwt.corp]\nenabled = false\n")
    settings = load_settings(homepath, environ={})
    assert settings.issuers["corp"].enabled is False  # no header or key needed then


def test_environment_reaches_a_named_issuer_once_its_section_is_in_a_file(
    homepath: Path, files: dict[str, str]
) -> None:
    env = {
        "AUTHSVC_AUTH_JWT_CORP_HEADER_NAME": "X-From-Env",
        "AUTHSVC_AUTH_JWT_CORP_JWK_SET_FILE": files["a"],
        "AUTHSVC_AUTH_JWT_OTHER_HEADER_NAME": "X-Nowhere",
    }
    write(homepath, "[auth.jwt.corp]\nusername_claim = sub\n")
    settings = load_settings(homepath, environ=env)
    assert settings.issuers["corp"].header_name == "X-From-Env"
    assert "other" not in settings.issuers


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ("[auth.jwt.Corp]\nenabled = false\n", "[auth.jwt.Corp]: an issuer name is"),
        ("[auth.jwt.a.b]\nenabled = false\n", "[auth.jwt.a.b]: an issuer name is"),
        (
            "[auth.jwt.a-b]\nenabled = false\n[auth.jwt.a_b]\nenabled = false\n",
            "environment variable AUTHSVC_AUTH_JWT_A_B_ENABLED is also [auth.jwt.a-b] enabled's",
        ),
        ("[auth.jwt.corp]\nusername_claim = sub\n", "[auth.jwt.corp] header_name: required"),
        ("[auth.jwt.corp]\nheader_name = X-C\n", "[auth.jwt.corp] enabled: enabled = true needs"),
    ],
    ids=["upper-case", "dotted", "env-collision", "no-header", "no-key-source"],
)
def test_bad_issuer_sections_are_startup_errors(
    homepath: Path, sections: str, expected: str
) -> None:
    write(homepath, sections)
    with pytest.raises(ConfigError) as info:
        load_settings(homepath, environ={})
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_a_named_issuer_with_remote_keys_needs_an_audience(homepath: Path) -> None:
    write(
        homepath,
        "[auth.jwt.corp]\nheader_name = X-C\njwk_set_url = http://127.0.0.1:9/jwks\n"
        "[auth.jwt]\nenabled = true\nheader_name = X-J\njwk_set_url = http://127.0.0.1:9/j\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(homepath, environ={})
    [problem] = [p for p in info.value.problems if "audience" in p]
    assert problem.startswith("conf/custom.ini [auth.jwt.corp] audience: keys from a JWKS URL")
    # [auth.jwt] only warns (Grafana compatibility).
    assert any("[auth.jwt] audience:" in w for w in info.value.warnings)
    write(
        homepath,
        "[auth.jwt.corp]\nheader_name = X-C\njwk_set_url = http://127.0.0.1:9/jwks\n"
        "audience = api\n",
    )
    assert load_settings(homepath, environ={}).issuers["corp"].audience == ("api",)


def test_oidc_discovery_needs_one_issuer_url_and_no_jwk_set_url(homepath: Path) -> None:
    write(
        homepath,
        "[auth.jwt.corp]\nheader_name = X-C\noidc_discovery = true\naudience = a\n"
        "issuer = https://a https://b\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(homepath, environ={})
    assert any(
        "[auth.jwt.corp] issuer: oidc_discovery = true needs exactly one" in p
        for p in info.value.problems
    )
    write(
        homepath,
        "[auth.jwt.corp]\nheader_name = X-C\noidc_discovery = true\naudience = a\n"
        "issuer = https://idp\njwk_set_url = https://idp/jwks\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(homepath, environ={})
    assert any("only one key source may be set" in p for p in info.value.problems)


def test_unknown_keys_in_a_named_issuer_warn(homepath: Path) -> None:
    write(homepath, "[auth.jwt.corp]\nenabled = false\ncache_tll = 1m\n")
    settings = load_settings(homepath, environ={})
    assert "conf/custom.ini [auth.jwt.corp] cache_tll: unknown key, ignored" in settings.warnings


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ({}, {}, "neither sets issuer and both have asymmetric keys"),
        ({"issuer": "https://x https://y"}, {"issuer": "https://y"}, "both accept issuer"),
    ],
    ids=["both-without-issuer", "overlapping-issuers"],
)
def test_indistinguishable_issuers_on_one_header_stop_startup(
    make_app: BuildApp, files: dict[str, str], a: dict[str, str], b: dict[str, str], why: str
) -> None:
    with pytest.raises(StartupError) as info:
        make_app(
            {
                "auth.jwt.one": {"header_name": SHARED, "jwk_set_file": files["a"], **a},
                "auth.jwt.two": {"header_name": SHARED, "jwk_set_file": files["b"], **b},
            }
        )
    message = str(info.value)
    assert "'one'" in message and "'two'" in message and why in message


def test_hmac_and_asymmetric_issuers_may_share_a_header_without_issuer_lists(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey
) -> None:
    app = make_app(
        {
            "auth.jwt.one": {**COMMON, "header_name": SHARED, "jwk_set_file": files["a"]},
            "auth.jwt.two": {**COMMON, "header_name": SHARED, "hmac_secret": SECRET},
        }
    )
    assert get(app, Authorization=sign(key_a, login="es")).headers["X-Auth-Issuer"] == "one"
    assert get(app, Authorization=sign(hmac_key(), login="hs")).headers["X-Auth-Issuer"] == "two"


# ------------------------------------------------------------------------------------ routing
def test_tokens_route_by_iss_then_by_alg_family(
    two_issuers: BuildApp, key_a: ECKey, key_b: ECKey
) -> None:
    app = two_issuers()
    for key, iss, expected in (
        (key_a, A_ISS, "a"),
        (key_b, B_ISS, "b"),
        (hmac_key(), None, "hs"),
    ):
        claims = {"login": f"user-{expected}", **({"iss": iss} if iss else {})}
        response = get(app, Authorization=f"Bearer {sign(key, **claims)}")
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Auth-Issuer"] == expected
        assert response.get_json()["authModule"] == f"authjwt.{expected}"


def test_a_token_is_verified_only_with_the_chosen_issuers_keys(
    two_issuers: BuildApp, key_a: ECKey
) -> None:
    app = two_issuers()
    forged = sign(key_a, iss=B_ISS, login="mallory")  # A's key, B's iss: B's keys decide
    reason = error(get(app, Authorization=forged), 401, "jwt.invalid")
    assert "kid 'a1' not in key set" in reason


def test_an_untrusted_iss_names_the_issuers_of_the_header(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey
) -> None:
    app = make_app(
        {
            "auth.jwt.a": {"header_name": SHARED, "jwk_set_file": files["a"], "issuer": A_ISS},
            "auth.jwt.b": {"header_name": SHARED, "jwk_set_file": files["b"], "issuer": B_ISS},
        }
    )
    reason = error(
        get(app, Authorization=sign(key_a, iss="https://x", login="x")), 401, "jwt.invalid"
    )
    assert reason == "issuer 'https://x' is not trusted here (issuers: a, b)"


def test_an_issuer_list_also_refuses_on_its_own(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey
) -> None:
    app = make_app(
        {
            "auth.jwt.a": {
                **COMMON,
                "header_name": A_HEADER,
                "jwk_set_file": files["a"],
                "issuer": A_ISS,
            }
        }
    )
    assert get(app, **{A_HEADER: sign(key_a, iss=A_ISS, login="x")}).status_code == 200
    reason = error(get(app, **{A_HEADER: sign(key_a, login="x")}), 401, "jwt.invalid")
    assert reason == "issuer (none) is not trusted here (issuers: a)"


def test_issuers_with_their_own_headers_and_two_tokens(
    two_issuers: BuildApp, files: dict[str, str], key_a: ECKey, key_b: ECKey
) -> None:
    own_issuer = {**COMMON, "header_name": A_HEADER, "jwk_set_file": files["a"]}
    app = two_issuers(**{"auth.jwt.own": own_issuer})
    own = get(app, **{A_HEADER: sign(key_a, login="own")})
    assert own.headers["X-Auth-Issuer"] == "own"
    both = get(
        app, **{A_HEADER: sign(key_a, login="own"), SHARED: sign(key_b, iss=B_ISS, login="b")}
    )
    assert "two different tokens" in error(both, 401, "jwt.invalid")


def test_the_jwt_issuer_may_be_off_while_named_ones_work(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey
) -> None:
    app = make_app(
        {
            "auth.jwt": {"enabled": "false"},
            "auth.jwt.corp": {**COMMON, "header_name": SHARED, "jwk_set_file": files["a"]},
        }
    )
    assert get(app, Authorization=sign(key_a, login="c")).status_code == 200
    health = get(app, "/api/health").get_json()
    assert health["keys"] == "ok" and health["issuers"] == {"corp": "ok"}


# ------------------------------------------------------------------------------------ claims
def test_audience_any_of_and_star(make_app: BuildApp, files: dict[str, str], key_a: ECKey) -> None:
    app = make_app(
        {
            "auth.jwt.a": {
                **COMMON,
                "header_name": A_HEADER,
                "jwk_set_file": files["a"],
                "audience": "api web",
            }
        }
    )
    assert get(app, **{A_HEADER: sign(key_a, login="x", aud=["other", "web"])}).status_code == 200
    reason = error(get(app, **{A_HEADER: sign(key_a, login="x", aud="other")}), 401, "jwt.invalid")
    assert reason == "claim 'aud' mismatch: expected any of [api, web], got [other]"
    error(get(app, **{A_HEADER: sign(key_a, login="x")}), 401, "jwt.invalid")
    star = make_app(
        {
            "auth.jwt.s": {
                **COMMON,
                "header_name": A_HEADER,
                "jwk_set_file": files["a"],
                "audience": "*",
            }
        }
    )
    assert get(star, **{A_HEADER: sign(key_a, login="y", aud="any")}).status_code == 200
    assert get(star, **{A_HEADER: sign(key_a, login="y")}).status_code == 200


NAMESPACE = "https://my.app.io/jwt/claims"


@pytest.mark.parametrize("as_text", [False, True], ids=["object", "json-string"])
def test_claims_namespace_is_merged_before_mapping(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey, as_text: bool
) -> None:
    app = make_app(
        {
            "auth.jwt.d": {
                "header_name": A_HEADER,
                "jwk_set_file": files["a"],
                "auto_sign_up": "true",
                "claims_namespace": NAMESPACE,
                "username_claim": "USER",
                "groups_attribute_path": "ROLES",
                "forward_claims": "TENANT",
                "scope_claim": "graph",
            }
        }
    )
    inner = {
        "USER": "dgraph-user",
        "ROLES": ["a", "b"],
        "TENANT": "t1",
        "graph": "g1 g2",
        "sub": "evil",
    }
    token = sign(key_a, sub="real", **{NAMESPACE: json.dumps(inner) if as_text else inner})
    response = get(app, **{A_HEADER: token})
    assert response.status_code == 200, response.get_json()
    headers = response.headers
    assert headers["X-Auth-User"] == "dgraph-user"
    assert headers["X-Auth-Groups"] == "a,b"
    assert headers["X-Auth-Subject"] == "real"  # registered claims never come from it
    assert headers["X-Auth-Claim-TENANT"] == "t1"
    assert headers["X-Auth-Scope"] == "g1,g2"


def test_forward_claims_name_their_headers_and_encode_values(
    make_app: BuildApp, files: dict[str, str], key_a: ECKey
) -> None:
    app = make_app(
        {
            "auth.jwt.f": {
                **COMMON,
                "header_name": A_HEADER,
                "jwk_set_file": files["a"],
                "forward_claims": "https://x.io/tenant, plan, limits, absent, flag, multi_line",
            }
        }
    )
    token = sign(
        key_a,
        login="f",
        **{
            "https://x.io/tenant": "acme",
            "plan": "gold",
            "limits": {"rps": 5, "tags": ["a"]},
            "flag": True,
            "multi_line": "a\nb",
        },
    )
    headers = get(app, **{A_HEADER: token}).headers
    assert headers["X-Auth-Claim-https-x-io-tenant"] == "acme"
    assert headers["X-Auth-Claim-plan"] == "gold"
    assert headers["X-Auth-Claim-limits"] == '{"rps":5,"tags":["a"]}'
    assert headers["X-Auth-Claim-flag"] == "true"
    assert headers["X-Auth-Claim-multi-line"] == '"a\\nb"'
    assert "X-Auth-Claim-absent" not in headers


@pytest.mark.parametrize(
    ("value", "header"),
    [("read write", "read,write"), (["read", "write"], "read,write"), ("a,b c", "a%2Cb,c")],
    ids=["space-string", "list", "comma-inside"],
)
def test_scope_claim_string_or_list(
    two_issuers: BuildApp, key_b: ECKey, value: Any, header: str
) -> None:
    response = get(two_issuers(), Authorization=sign(key_b, iss=B_ISS, login="s", scope=value))
    assert response.headers["X-Auth-Scope"] == header


def test_scope_gate_refuses_other_scopes_and_passes_unscoped(
    two_issuers: BuildApp, key_a: ECKey, key_b: ECKey
) -> None:
    app = two_issuers()
    scoped = sign(key_b, iss=B_ISS, login="s", scope="g1 g2")
    assert get(app, "/api/auth/verify?scope=g2", Authorization=scoped).status_code == 200
    reason = error(
        get(app, "/api/auth/verify?scope=g3", Authorization=scoped), 403, "auth.forbidden"
    )
    assert "g3" in reason
    unscoped = sign(key_a, iss=A_ISS, login="u")
    response = get(app, "/api/auth/verify?scope=g3", Authorization=unscoped)
    assert response.status_code == 200
    assert "X-Auth-Scope" not in response.headers


def test_issuer_gate_for_jwts(two_issuers: BuildApp, key_a: ECKey, key_b: ECKey) -> None:
    app = two_issuers()
    token_b = sign(key_b, iss=B_ISS, login="b")
    assert get(app, "/api/auth/verify?issuer=a&issuer=b", Authorization=token_b).status_code == 200
    reason = error(get(app, "/api/auth/verify?issuer=a", Authorization=token_b), 401, "jwt.invalid")
    assert reason == "issuer 'b' is not allowed here (allowed: a)"


def test_verify_under_any_path_answers_the_same(two_issuers: BuildApp, key_a: ECKey) -> None:
    app = two_issuers()
    token = sign(key_a, iss=A_ISS, login="p")
    plain = get(app, Authorization=token)
    envoy = get(app, "/api/auth/verify/some/original/path?x=1", Authorization=token)
    assert envoy.status_code == plain.status_code == 200
    assert envoy.get_json() == plain.get_json()
    error(get(app, "/api/auth/verify/deep/path"), 401, "auth.unauthorized")


# ------------------------------------------------------------------------------------ sessions
def test_sessions_remember_issuer_and_scope(
    two_issuers: BuildApp, key_b: ECKey, database: dict[str, dict[str, str]]
) -> None:
    app = two_issuers(**database)
    client = app.test_client(use_cookies=False)
    login = client.post(
        "/api/login/jwt", headers={SHARED: sign(key_b, iss=B_ISS, login="sb", scope="g1")}
    )
    assert login.status_code == 200, login.get_json()
    assert login.get_json()["authModule"] == "authjwt.b"
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    response = client.get("/api/auth/verify", headers=cookie)
    assert response.headers["X-Auth-Issuer"] == "b"
    assert response.headers["X-Auth-Scope"] == "g1"
    assert response.get_json()["authModule"] == "authjwt.b"
    assert client.get("/api/user", headers=cookie).get_json()["authModule"] == "authjwt.b"
    assert client.get("/api/auth/verify?scope=g2", headers=cookie).status_code == 403
    reason = error(client.get("/api/auth/verify?issuer=a", headers=cookie), 401, "jwt.invalid")
    assert reason == "issuer 'b' is not allowed here (allowed: a)"
    assert client.get("/api/auth/verify?issuer=b&scope=g1", headers=cookie).status_code == 200


@pytest.mark.redis
def test_redis_sessions_remember_issuer_and_scope(
    two_issuers: BuildApp, key_b: ECKey, redis_db: int
) -> None:
    app = two_issuers(
        auth={"session_store": "redis"},
        remote_cache={"connstr": f"addr=127.0.0.1:6379,db={redis_db}"},
    )
    client = app.test_client(use_cookies=False)
    login = client.post(
        "/api/login/jwt", headers={SHARED: sign(key_b, iss=B_ISS, login="rb", scope="g1 g2")}
    )
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    response = client.get("/api/auth/verify", headers=cookie)
    assert (response.headers["X-Auth-Issuer"], response.headers["X-Auth-Scope"]) == ("b", "g1,g2")


def test_a_session_of_an_issuer_since_disabled_is_over(
    make_app: BuildApp, homepath: Path, files: dict[str, str], key_a: ECKey
) -> None:
    on = {"auth.jwt.a": {**COMMON, "header_name": A_HEADER, "jwk_set_file": files["a"]}}
    app = make_app(on)
    login = app.test_client().post("/api/login/jwt", headers={A_HEADER: sign(key_a, login="a")})
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    off = make_app({"auth.jwt.a": {**on["auth.jwt.a"], "enabled": "false"}})
    reason = error(get(off, "/api/user", **cookie), 401, "session.invalid")
    assert "issuer 'a'" in reason


# ------------------------------------------------------------------------------------ users
def test_the_same_sub_from_two_issuers_is_two_users(
    two_issuers: BuildApp, key_a: ECKey, key_b: ECKey, database: dict[str, dict[str, str]]
) -> None:
    app = two_issuers(**database)
    one = get(app, Authorization=sign(key_a, iss=A_ISS, sub="same", login="from-a"))
    two = get(app, Authorization=sign(key_b, iss=B_ISS, sub="same", login="from-b"))
    assert one.status_code == two.status_code == 200
    assert one.get_json()["id"] != two.get_json()["id"]
    # A login taken across issuers is a conflict like any other.
    clash = get(app, Authorization=sign(key_b, iss=B_ISS, sub="other", login="FROM-A"))
    error(clash, 409, "user.sync.conflict")


def test_link_existing_users_joins_a_second_issuers_subject_but_never_steals(
    two_issuers: BuildApp, key_a: ECKey, key_b: ECKey, database: dict[str, dict[str, str]]
) -> None:
    app = two_issuers(**database, **{"auth.jwt.b": {"link_existing_users": "true"}})
    first = get(app, Authorization=sign(key_a, iss=A_ISS, sub="a-alice", login="alice"))
    joined = get(app, Authorization=sign(key_b, iss=B_ISS, sub="b-alice", login="alice"))
    assert joined.status_code == 200, joined.get_json()
    assert joined.get_json()["id"] == first.get_json()["id"]
    # A second subject of issuer b may not adopt the account b already links to b-alice.
    stolen = get(app, Authorization=sign(key_b, iss=B_ISS, sub="b-mallory", login="alice"))
    assert "linked to another subject" in error(stolen, 409, "user.sync.conflict")


# ------------------------------------------------------------------------------------ operations
def test_admin_keys_and_health_cover_every_issuer(two_issuers: BuildApp, key_a: ECKey) -> None:
    app = two_issuers()
    health = get(app, "/api/health").get_json()
    assert health["keys"] == "ok"
    assert health["issuers"] == {"a": "ok", "b": "ok", "hs": "ok"}


def test_health_is_degraded_while_one_issuer_has_no_key(
    make_app: BuildApp, files: dict[str, str]
) -> None:
    app = make_app(
        {
            "auth.jwt.good": {"header_name": A_HEADER, "jwk_set_file": files["a"]},
            "auth.jwt.down": {
                "header_name": SHARED,
                "jwk_set_url": "http://127.0.0.1:9/jwks",
                "audience": "x",
                "jwk_set_timeout": "1s",
            },
        }
    )
    response = get(app, "/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["keys"] == "degraded"
    assert body["issuers"] == {"good": "ok", "down": "failing"}
    only_down = make_app(
        {
            "auth.jwt.down": {
                "header_name": SHARED,
                "jwk_set_url": "http://127.0.0.1:9/jwks",
                "audience": "x",
                "jwk_set_timeout": "1s",
            }
        }
    )
    failing = get(only_down, "/api/health")
    assert failing.status_code == 503 and failing.get_json()["keys"] == "failing"


def test_token_inspect_routes_by_iss_and_can_be_forced(
    homepath: Path,
    files: dict[str, str],
    key_a: ECKey,
    key_b: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(
        homepath,
        f"[auth.jwt.a]\nheader_name = {SHARED}\njwk_set_file = {files['a']}\nissuer = {A_ISS}\n"
        "username_claim = login\n"
        f"[auth.jwt.b]\nheader_name = {SHARED}\njwk_set_file = {files['b']}\nissuer = {B_ISS}\n"
        "username_claim = login\n",
    )
    token = sign(key_b, iss=B_ISS, login="bob")
    assert cli(["token", "inspect", token, "--homepath", str(homepath)]) == 0
    out = capsys.readouterr().out
    assert f"issuer: b (its issuer list holds the token's iss '{B_ISS}')" in out
    assert "key: jwk_set_file kid='b1' type=EC algorithms=ES256" in out
    assert "verdict: VALID" in out
    assert cli(["token", "inspect", token, "--issuer", "a", "--homepath", str(homepath)]) == 2
    out = capsys.readouterr().out
    assert "issuer: a (forced with --issuer)" in out
    assert "key: none of the jwk_set_file keys has kid 'b1' (keys: 'a1')" in out
    assert "verdict: REJECTED 401 jwt.invalid" in out
    no_kid = jwt.encode({"alg": "ES256"}, {"sub": "x", "iss": A_ISS}, key_a)
    assert cli(["token", "inspect", no_kid, "--homepath", str(homepath)]) == 2
    assert "has kid (none)" in capsys.readouterr().out


def test_raw_pem_in_key_value(make_app: BuildApp, homepath: Path) -> None:
    key = RSAKey.generate_key(2048)
    pem = key.as_pem(private=False).decode().strip()
    write(
        homepath,
        f"[auth.jwt.p]\nheader_name = {A_HEADER}\nusername_claim = login\nauto_sign_up = true\n"
        f'key_value = """{pem}"""\n',
    )
    app = make_app()
    token = jwt.encode(
        {"alg": "RS256"}, {"sub": "p", "login": "p", "exp": int(time.time()) + 60}, key
    )
    assert get(app, **{A_HEADER: token}).status_code == 200
