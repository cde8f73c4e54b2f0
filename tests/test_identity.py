"""From verified claims to an identity, over HTTP with real signed tokens.

A port of Grafana's JWT authn client cases (``pkg/services/authn/clients/jwt_test.go``:
TestAuthenticateJWT, TestJWTClaimConfig, TestJWTTest, TestJWTStripParam,
TestJWTSubClaimsConfig) plus the rules CONTRACT.md adds: string-only claim
results, JMESPath failures as no value (§6), strict roles, the server-admin
flag synced both ways, ``skip_role_sync``, groups, URL login, Bearer handling
and the forward-auth headers and gates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey
from tokens import FakeClock, claims, jwks, public_jwk, sign

from authsvc.config import ConfigError
from authsvc.logs import JsonFormatter, TextFormatter
from authsvc.models import User
from authsvc.users import find_user, update_user

HEADER = "X-JWT-Assertion"
KID = "identity-test"
# Grafana's test claims configuration: login and email from named claims.
NAMED_CLAIMS = {"username_claim": "preferred_username", "email_claim": "email"}
ROLE_PATH = {"role_attribute_path": "roles"}


@dataclass(frozen=True)
class Signer:
    """One EC key of this test session and the JWKS file publishing it."""

    key: ECKey
    jwks_file: Path

    def token(self, **extra: Any) -> str:
        """A valid ES256 token at tokens.NOW (``sub`` foo-subj unless given)."""
        return sign(self.key, "ES256", claims(**extra), kid=KID)


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    key = ECKey.generate_key("P-256")
    path = tmp_path_factory.mktemp("identity-keys") / "jwks.json"
    path.write_text(json.dumps(jwks(public_jwk(key, KID))))
    return Signer(key, path)


BuildApp = Callable[..., Flask]


@pytest.fixture
def build(make_app: Callable[..., Flask], signer: Signer) -> BuildApp:
    """``build(jwt={...}, users={...})``: an app verifying ``signer``'s tokens, with sign-up on."""

    def make(jwt: dict[str, str] | None = None, **sections: dict[str, str]) -> Flask:
        values = {
            "auth.jwt": {
                "enabled": "true",
                "header_name": HEADER,
                "jwk_set_file": str(signer.jwks_file),
                "auto_sign_up": "true",
                **(jwt or {}),
            },
            **sections,
        }
        return make_app(values, clock=FakeClock())

    return make


def login(client: FlaskClient, token: str) -> Any:
    return client.post("/api/login/jwt", headers={HEADER: token})


def verify(client: FlaskClient, token: str, query: str = "") -> Any:
    return client.get(f"/api/auth/verify{query}", headers={HEADER: token})


def assert_error(response: Any, status: int, message_id: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id
    assert body["statusCode"] == status
    return body


def set_user(app: Flask, login_name: str, **changes: Any) -> None:
    """An administrator's change, through the same helper the admin API uses."""
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        user = find_user(db, login_name)
        assert user is not None
        update_user(db, user, clock=svc.clock, **changes)


def stored_user(app: Flask, login_name: str) -> User:
    with app.extensions["authsvc"].db() as db:
        user = find_user(db, login_name)
        assert user is not None
        return user


# -------------------------------------------------------------------- Grafana: TestAuthenticateJWT
GRAFANA_CLAIMS = {
    "sub": "1234567890",
    "email": "eai.doe@cor.po",
    "preferred_username": "eai-doe",
    "name": "Eai Doe",
    "roles": "Admin",
    "groups": ["foo", "bar"],
}


@pytest.mark.parametrize(
    ("groups_path", "groups"),
    [("groups[]", ["foo", "bar"]), ("", [])],
    ids=["with-group-path", "without-group-path"],
)
def test_grafana_authenticate(
    build: BuildApp, signer: Signer, groups_path: str, groups: list[str]
) -> None:
    app = build(
        {
            **NAMED_CLAIMS,
            "allow_assign_server_admin": "true",
            "role_attribute_strict": "true",
            "role_attribute_path": "roles",
            "groups_attribute_path": groups_path,
        }
    )
    response = login(app.test_client(), signer.token(**GRAFANA_CLAIMS))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body == {
        "id": body["id"],
        "login": "eai-doe",
        "email": "eai.doe@cor.po",
        "name": "Eai Doe",
        "role": "Admin",
        "isServerAdmin": False,
        "groups": groups,
        "authModule": "authjwt",
    }


# --------------------------------------------------------------------- Grafana: TestJWTClaimConfig
@pytest.mark.parametrize(
    ("config", "expected_login"),
    [
        (NAMED_CLAIMS, "eai-doe"),
        ({"email_claim": "email"}, "eai.doe@cor.po"),
        ({"username_claim": "preferred_username"}, "eai-doe"),
    ],
    ids=["email-and-username-claims", "email-claim-only", "username-claim-only"],
)
def test_claim_config(
    build: BuildApp, signer: Signer, config: dict[str, str], expected_login: str
) -> None:
    response = login(build(config).test_client(), signer.token(**GRAFANA_CLAIMS))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["login"] == expected_login


def test_claim_config_without_email_or_username_claims(build: BuildApp, signer: Signer) -> None:
    response = login(build().test_client(), signer.token(**GRAFANA_CLAIMS))
    body = assert_error(response, 401, "jwt.missing_claim")
    assert "no username_claim or email_claim is set" in body["reason"]


# ----------------------------------------------------------------- Grafana: TestJWTSubClaimsConfig
def test_sub_claims_config_attribute_paths(build: BuildApp, signer: Signer) -> None:
    app = build({"email_attribute_path": "emails[2]", "username_attribute_path": "name"})
    token = signer.token(
        sub="9b898908-1aec-4475-9c48-7851d265ddb1",
        name="name_of_the_user",
        given_name="UserName",
        emails=[
            "mainemail+extraemail04@gmail.com",
            "mainemail+extraemail03@gmail.com",
            "mainemail+extraemail02@gmail.com",
            "mainemail+extraemail01@gmail.com",
            "mainemail@gmail.com",
        ],
    )
    body = login(app.test_client(), token).get_json()
    assert body["email"] == "mainemail+extraemail02@gmail.com"
    assert body["login"] == "name_of_the_user"
    assert body["name"] == "name_of_the_user"


# --------------------------------------------------------------------------------- login and email
@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        pytest.param(
            {"username_attribute_path": "profile.account.login", "email_claim": "email"},
            {"profile": {"account": {"login": "deep"}}, "email": "d@x.io"},
            ("deep", "d@x.io"),
            id="nested-username-path",
        ),
        pytest.param(
            {"username_claim": "preferred_username", "email_attribute_path": "contact.emails[0]"},
            {"preferred_username": "u", "contact": {"emails": ["first@x.io", "second@x.io"]}},
            ("u", "first@x.io"),
            id="nested-email-path",
        ),
        pytest.param(
            {"username_attribute_path": "join('.', [given, family])", "email_claim": "email"},
            {"given": "ada", "family": "lovelace", "email": "a@x.io"},
            ("ada.lovelace", "a@x.io"),
            id="path-with-function",
        ),
        pytest.param(
            {"username_claim": "preferred_username", "username_attribute_path": "other"},
            {"preferred_username": "from-claim", "other": "from-path"},
            ("from-claim", ""),
            id="claim-wins-over-path",
        ),
        pytest.param(
            {"email_claim": "email", "email_attribute_path": "other"},
            {"email": "claim@x.io", "other": "path@x.io"},
            ("claim@x.io", "claim@x.io"),
            id="email-claim-wins-over-path",
        ),
        pytest.param(
            {"username_claim": "upn", "email_claim": "email"},
            {"email": "fallback@x.io"},
            ("fallback@x.io", "fallback@x.io"),
            id="login-falls-back-to-email",
        ),
    ],
)
def test_login_and_email(
    build: BuildApp,
    signer: Signer,
    config: dict[str, str],
    extra: dict[str, Any],
    expected: tuple[str, str],
) -> None:
    response = login(build(config).test_client(), signer.token(**extra))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["login"], body["email"]) == expected


NON_STRINGS = [
    pytest.param(42, id="number"),
    pytest.param(True, id="bool"),
    pytest.param(["a@x.io"], id="list"),
    pytest.param({"v": "a@x.io"}, id="object"),
    pytest.param("", id="empty-string"),
]


@pytest.mark.parametrize("value", NON_STRINGS)
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"username_claim": "u"}, id="username_claim"),
        pytest.param({"username_attribute_path": "nested.u"}, id="username_attribute_path"),
    ],
)
def test_non_string_login_counts_as_absent(
    build: BuildApp, signer: Signer, config: dict[str, str], value: Any
) -> None:
    app = build({**config, "email_claim": "email"})
    token = signer.token(u=value, nested={"u": value}, email="e@x.io")
    body = login(app.test_client(), token).get_json()
    assert body["login"] == "e@x.io"


@pytest.mark.parametrize("value", NON_STRINGS)
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"email_claim": "mail"}, id="email_claim"),
        pytest.param({"email_attribute_path": "nested.mail"}, id="email_attribute_path"),
    ],
)
def test_non_string_email_counts_as_absent(
    build: BuildApp, signer: Signer, config: dict[str, str], value: Any
) -> None:
    app = build({**config, "username_claim": "preferred_username"})
    token = signer.token(mail=value, nested={"mail": value}, preferred_username="u1")
    body = login(app.test_client(), token).get_json()
    assert (body["login"], body["email"]) == ("u1", "")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (NAMED_CLAIMS, ["claim 'preferred_username'", "claim 'email'"]),
        (
            {"username_attribute_path": "a.login", "email_attribute_path": "a.mail"},
            ["username_attribute_path 'a.login'", "email_attribute_path 'a.mail'"],
        ),
    ],
    ids=["claims", "paths"],
)
def test_neither_login_nor_email_is_missing_claim(
    build: BuildApp, signer: Signer, config: dict[str, str], named: list[str]
) -> None:
    client = build(config).test_client()
    token = signer.token(preferred_username=7, a={"login": ["x"]})
    response = login(client, token)
    body = assert_error(response, 401, "jwt.missing_claim")
    for what in named:
        assert what in body["reason"]
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert_error(verify(client, token), 401, "jwt.missing_claim")


@pytest.mark.parametrize(
    "claims_",
    [{"sub": None}, {"sub": ""}, {"sub": 12345}],
    ids=["without-sub", "empty-sub", "numeric-sub"],
)
def test_token_without_usable_sub_is_missing_claim(
    build: BuildApp, signer: Signer, claims_: dict[str, Any]
) -> None:
    """Grafana's TestJWTTest "token without a sub claim" / "token with an empty sub claim"."""
    token = signer.token(email="e@x.io", **claims_)
    assert_error(login(build(NAMED_CLAIMS).test_client(), token), 401, "jwt.missing_claim")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Eai Doe", "Eai Doe"), (42, ""), (["Eai"], ""), (None, "")],
    ids=["string", "number", "list", "absent"],
)
def test_name_claim(build: BuildApp, signer: Signer, value: Any, expected: str) -> None:
    token = signer.token(preferred_username="n1", name=value)
    assert login(build(NAMED_CLAIMS).test_client(), token).get_json()["name"] == expected


# ------------------------------------------------------------------------------------------- roles
GRAFANA_ROLE_PATH = (
    "contains(groups[*], 'admins') && 'Admin' || contains(groups[*], 'editors') && 'Editor'"
    " || contains(groups[*], 'nobody') && 'None' || 'Viewer'"
)


@pytest.mark.parametrize("role", ["None", "Viewer", "Editor", "Admin"])
def test_role_from_claim(build: BuildApp, signer: Signer, role: str) -> None:
    app = build({**NAMED_CLAIMS, **ROLE_PATH, "role_attribute_strict": "true"})
    body = login(app.test_client(), signer.token(preferred_username="r", roles=role)).get_json()
    assert (body["role"], body["isServerAdmin"]) == (role, False)


@pytest.mark.parametrize(
    ("groups", "role"),
    [
        (["admins", "x"], "Admin"),
        (["editors"], "Editor"),
        (["nobody"], "None"),
        (["x"], "Viewer"),
        ([], "Viewer"),
    ],
    ids=["admin", "editor", "none", "viewer", "no-groups"],
)
def test_role_from_jmespath_expression(
    build: BuildApp, signer: Signer, groups: list[str], role: str
) -> None:
    app = build({**NAMED_CLAIMS, "role_attribute_path": GRAFANA_ROLE_PATH})
    token = signer.token(preferred_username="r", groups=groups)
    assert login(app.test_client(), token).get_json()["role"] == role


INVALID_ROLES = [
    pytest.param("Superuser", id="unknown-name"),
    pytest.param("admin", id="wrong-case"),
    pytest.param("", id="empty"),
    pytest.param(3, id="number"),
    pytest.param(["Admin"], id="list"),
    pytest.param(None, id="missing"),
]


@pytest.mark.parametrize("value", INVALID_ROLES)
def test_invalid_or_missing_role_gets_auto_assign_role(
    build: BuildApp, signer: Signer, value: Any
) -> None:
    app = build({**NAMED_CLAIMS, **ROLE_PATH}, users={"auto_assign_role": "Editor"})
    body = login(app.test_client(), signer.token(preferred_username="r", roles=value)).get_json()
    assert (body["role"], body["isServerAdmin"]) == ("Editor", False)


@pytest.mark.parametrize("value", INVALID_ROLES)
def test_strict_role_refuses_invalid_or_missing_role(
    build: BuildApp, signer: Signer, value: Any
) -> None:
    app = build({**NAMED_CLAIMS, **ROLE_PATH, "role_attribute_strict": "true"})
    client = app.test_client()
    token = signer.token(preferred_username="r", roles=value)
    body = assert_error(login(client, token), 403, "jwt.invalid_role")
    assert "role_attribute_path 'roles'" in body["reason"]
    assert_error(verify(client, token), 403, "jwt.invalid_role")
    with app.extensions["authsvc"].db() as db:
        assert db.query(User).count() == 0


def test_existing_user_keeps_role_when_token_has_none(build: BuildApp, signer: Signer) -> None:
    """Grafana only syncs a valid role; an absent one leaves the user's role alone."""
    client = build({**NAMED_CLAIMS, **ROLE_PATH}).test_client()
    assert login(client, signer.token(preferred_username="r", roles="Editor")).status_code == 200
    body = login(client, signer.token(preferred_username="r")).get_json()
    assert body["role"] == "Editor"


@pytest.mark.parametrize("value", ["ServerAdmin", "GrafanaAdmin"])
def test_server_admin_role_synced_both_ways(build: BuildApp, signer: Signer, value: str) -> None:
    client = build({**NAMED_CLAIMS, **ROLE_PATH, "allow_assign_server_admin": "true"}).test_client()

    def roles(**extra: Any) -> tuple[str, bool]:
        body = login(client, signer.token(preferred_username="sa", **extra)).get_json()
        return body["role"], body["isServerAdmin"]

    assert roles(roles=value) == ("Admin", True)
    assert roles(roles="Editor") == ("Editor", False)  # a later token without it revokes
    assert roles(roles=value) == ("Admin", True)
    assert roles() == ("Admin", False)  # no role at all: role kept, flag revoked


@pytest.mark.parametrize("value", ["ServerAdmin", "GrafanaAdmin"])
def test_server_admin_role_without_allow_assign(
    build: BuildApp, signer: Signer, value: str
) -> None:
    app = build({**NAMED_CLAIMS, **ROLE_PATH})
    client = app.test_client()
    body = login(client, signer.token(preferred_username="sa", roles=value)).get_json()
    assert (body["role"], body["isServerAdmin"]) == ("Admin", False)
    # A flag an administrator gave is none of the token's business either.
    set_user(app, "sa", is_server_admin=True)
    body = login(client, signer.token(preferred_username="sa", roles="Viewer")).get_json()
    assert (body["role"], body["isServerAdmin"]) == ("Viewer", True)


def test_allow_assign_grafana_admin_alias(build: BuildApp, signer: Signer) -> None:
    app = build({**NAMED_CLAIMS, **ROLE_PATH, "allow_assign_grafana_admin": "true"})
    body = login(app.test_client(), signer.token(preferred_username="g", roles="GrafanaAdmin"))
    assert body.get_json()["isServerAdmin"] is True


def test_skip_role_sync_leaves_role_to_admin_api(build: BuildApp, signer: Signer) -> None:
    app = build(
        {
            **NAMED_CLAIMS,
            **ROLE_PATH,
            "skip_role_sync": "true",
            "allow_assign_server_admin": "true",
        }
    )
    client = app.test_client()
    user = login(client, signer.token(preferred_username="keep")).get_json()
    assert user["role"] == "Viewer"

    # The role comes from the admin API, called by a server admin with a JWT of its own.
    assert login(client, signer.token(sub="root", preferred_username="root")).status_code == 200
    set_user(app, "root", is_server_admin=True)
    admin = {HEADER: signer.token(sub="root", preferred_username="root")}
    patched = client.patch(
        f"/api/admin/users/{user['id']}",
        json={"role": "Editor", "isServerAdmin": True},
        headers=admin,
    )
    assert patched.status_code == 200, patched.get_json()

    for role in ("Admin", "Viewer", "ServerAdmin", None):
        body = login(client, signer.token(preferred_username="keep", roles=role)).get_json()
        assert (body["role"], body["isServerAdmin"]) == ("Editor", True), role
    forwarded = verify(client, signer.token(preferred_username="keep", roles="Admin"))
    assert forwarded.headers["X-Auth-Role"] == "Editor"


def test_skip_role_sync_new_user_gets_auto_assign_role(build: BuildApp, signer: Signer) -> None:
    app = build(
        {
            **NAMED_CLAIMS,
            **ROLE_PATH,
            "skip_role_sync": "true",
            "allow_assign_server_admin": "true",
        }
    )
    body = login(app.test_client(), signer.token(preferred_username="n", roles="ServerAdmin"))
    assert (body.get_json()["role"], body.get_json()["isServerAdmin"]) == ("Viewer", False)


def test_skip_role_sync_skips_strict_role_check(build: BuildApp, signer: Signer) -> None:
    app = build(
        {**NAMED_CLAIMS, **ROLE_PATH, "skip_role_sync": "true", "role_attribute_strict": "true"}
    )
    assert login(app.test_client(), signer.token(preferred_username="n")).status_code == 200


# ------------------------------------------------------------------------------------------ groups
@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("groups", ["foo", "bar"], ["foo", "bar"]),
        ("groups[]", ["foo", "bar"], ["foo", "bar"]),
        ("groups", "solo", ["solo"]),
        ("groups", ["a", 1, None, "b", {"c": 1}, ["d"]], ["a", "b"]),
        ("groups", None, []),
        ("groups", {"a": "b"}, []),
        ("groups", 42, []),
        ("groups[*].name", [{"name": "x"}, {"name": "y"}, {"id": 3}], ["x", "y"]),
    ],
    ids=[
        "array",
        "flattened",
        "string-is-one-group",
        "non-strings-dropped",
        "missing",
        "object",
        "number",
        "projection",
    ],
)
def test_groups_attribute_path(
    build: BuildApp, signer: Signer, path: str, value: Any, expected: list[str]
) -> None:
    app = build({**NAMED_CLAIMS, "groups_attribute_path": path})
    body = login(app.test_client(), signer.token(preferred_username="g", groups=value)).get_json()
    assert body["groups"] == expected


# ------------------------------------------------------------------------------- JMESPath failures
PATH_KEYS = (
    "username_attribute_path",
    "email_attribute_path",
    "role_attribute_path",
    "groups_attribute_path",
)
FAILING_EXPRESSION = "contains(roles, 'x')"


@pytest.mark.parametrize(
    "roles", [None, 5, {"a": 1}], ids=["roles-missing", "roles-number", "roles-object"]
)
@pytest.mark.parametrize("key", PATH_KEYS)
def test_jmespath_failing_on_a_token_yields_no_value(
    build: BuildApp, signer: Signer, key: str, roles: Any
) -> None:
    """CONTRACT §6 (Grafana's rule): the failing path gives nothing, the login goes on."""
    config = {"username_claim": "preferred_username", "email_claim": "email", key: ""}
    if key == "username_attribute_path":
        config["username_claim"] = ""
    if key == "email_attribute_path":
        config["email_claim"] = ""
    client = build({**config, key: FAILING_EXPRESSION}).test_client()
    token = signer.token(preferred_username="j", email="j@x.io", roles=roles)
    for response in (login(client, token), verify(client, token)):
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        if key == "username_attribute_path":
            assert body["login"] == "j@x.io"  # the login falls back to the email
        if key == "email_attribute_path":
            assert (body["login"], body["email"]) == ("j", "")
        if key == "role_attribute_path":
            assert body["role"] == "Viewer"  # [users] auto_assign_role
        if key == "groups_attribute_path":
            assert body["groups"] == []


def test_grafana_operators_usual_role_path_gives_viewer_without_roles(
    build: BuildApp, signer: Signer
) -> None:
    path = "contains(roles[*], 'admin') && 'Admin' || 'Viewer'"
    client = build({**NAMED_CLAIMS, "role_attribute_path": path}).test_client()
    no_roles = login(client, signer.token(sub="a", preferred_username="a"))
    assert no_roles.status_code == 200 and no_roles.get_json()["role"] == "Viewer"
    admin = login(client, signer.token(sub="b", preferred_username="b", roles=["admin"]))
    assert admin.get_json()["role"] == "Admin"


def test_a_failing_role_path_under_role_attribute_strict_is_invalid_role(
    build: BuildApp, signer: Signer
) -> None:
    config = {**NAMED_CLAIMS, "role_attribute_path": "abs(roles)", "role_attribute_strict": "true"}
    response = login(build(config).test_client(), signer.token(preferred_username="s", roles="x"))
    assert_error(response, 403, "jwt.invalid_role")


def test_a_failing_path_on_a_claim_with_a_newline_injects_nothing(
    build: BuildApp, signer: Signer
) -> None:
    client = build({**NAMED_CLAIMS, "role_attribute_path": "abs(roles)"}).test_client()
    token = signer.token(preferred_username="j", roles="x\r\nSet-Cookie: injected=1")
    response = verify(client, token)
    assert response.status_code == 200
    assert "injected" not in response.headers.get("Set-Cookie", "")
    assert all("\n" not in v and "\r" not in v for v in response.headers.values())


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("expression", ["roles[?", "contains(roles,", "a.b.", "&&"])
def test_jmespath_syntax_error_is_config_error(
    make_settings: Callable[..., Any], signer: Signer, key: str, expression: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        make_settings(
            {
                "auth.jwt": {
                    "enabled": "true",
                    "header_name": HEADER,
                    "jwk_set_file": str(signer.jwks_file),
                    key: expression,
                }
            }
        )
    (problem,) = excinfo.value.problems
    assert f"[auth.jwt] {key}:" in problem
    assert "JMESPath" in problem


# --------------------------------------------------------------------------------- token transport
@pytest.mark.parametrize(
    "prefix", ["", "Bearer ", "bearer ", "BEARER ", "BeArEr ", "Bearer   "], ids=repr
)
def test_bearer_prefix_is_case_insensitive(build: BuildApp, signer: Signer, prefix: str) -> None:
    client = build(NAMED_CLAIMS).test_client()
    response = verify(client, prefix + signer.token(preferred_username="b"))
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Auth-User"] == "b"


@pytest.mark.parametrize("value", ["Bearer", "bearer", "Bearer ", "BEARER   ", None], ids=repr)
@pytest.mark.parametrize("method_path", [("GET", "/api/auth/verify"), ("POST", "/api/login/jwt")])
def test_empty_bearer_is_no_credentials(
    build: BuildApp, value: str | None, method_path: tuple[str, str]
) -> None:
    method, path = method_path
    headers = {} if value is None else {HEADER: value}
    response = build(NAMED_CLAIMS).test_client().open(path, method=method, headers=headers)
    assert_error(response, 401, "auth.unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_token_in_another_header_is_no_credentials(build: BuildApp, signer: Signer) -> None:
    """Grafana's TestJWTTest "not in the right header"."""
    client = build(NAMED_CLAIMS).test_client()
    response = client.get(
        "/api/auth/verify", headers={"X-Other": signer.token(preferred_username="o")}
    )
    assert_error(response, 401, "auth.unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("token", "valid"), [("good", True), ("sampletokeninvalid", False)], ids=["valid", "invalid"]
)
def test_token_in_authorization_header(
    build: BuildApp, signer: Signer, token: str, valid: bool
) -> None:
    """Grafana's TestJWTTest "valid/invalid format in Authorization"."""
    client = build({**NAMED_CLAIMS, "header_name": "Authorization"}).test_client()
    value = signer.token(preferred_username="a") if valid else token
    response = client.get("/api/auth/verify", headers={"Authorization": f"Bearer {value}"})
    if valid:
        assert response.status_code == 200
    else:
        assert_error(response, 401, "jwt.invalid")


def _other_key_token() -> str:
    return sign(ECKey.generate_key("P-256"), "ES256", claims(preferred_username="x"), kid=KID)


@pytest.mark.parametrize(
    ("make_token", "reason_part"),
    [
        (lambda s: "not-a-jwt", "malformed"),
        (lambda s: _other_key_token(), "signature"),
        (lambda s: s.token(preferred_username="x", exp=1_000_000), "expired"),
        (lambda s: s.token(preferred_username="x")[:-4] + "AAAA", "does not verify"),
        (lambda s: s.token(preferred_username="x") + "x", "not canonical base64url"),
    ],
    ids=["garbage", "wrong-key", "expired", "tampered-signature", "non-canonical-signature"],
)
def test_bad_token_carries_invalid_token_challenge(
    build: BuildApp, signer: Signer, make_token: Callable[[Signer], str], reason_part: str
) -> None:
    response = verify(build(NAMED_CLAIMS).test_client(), make_token(signer))
    body = assert_error(response, 401, "jwt.invalid")
    assert reason_part in body["reason"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert challenge.endswith('"')
    assert reason_part in challenge


# --------------------------------------------------------------------------------------- URL login
@pytest.fixture
def url_app(build: BuildApp) -> Flask:
    return build({**NAMED_CLAIMS, **ROLE_PATH, "url_login": "true"})


def _log_lines(records: list[logging.LogRecord]) -> list[str]:
    """Every record as both formatters would print it, extras included."""
    return [
        f(record) for record in records for f in (JsonFormatter().format, TextFormatter().format)
    ]


@pytest.mark.parametrize(
    ("redirect_to", "location"),
    [
        ("/x", "/x"),
        ("/d/abc?other_param=other_value", "/d/abc?other_param=other_value"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        (None, "/"),
    ],
    ids=["local", "local-with-query", "absolute-url", "scheme-relative", "none"],
)
def test_url_login_redirects_without_the_token(
    url_app: Flask,
    signer: Signer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    redirect_to: str | None,
    location: str,
) -> None:
    """Grafana's TestJWTStripParam: the auth_token parameter never travels further."""
    caplog.set_level(logging.DEBUG, logger="authsvc")
    client = url_app.test_client()
    token = signer.token(preferred_username="url", roles="Editor")
    query = f"auth_token={token}" + (
        f"&redirect_to={quote(redirect_to, safe='')}" if redirect_to is not None else ""
    )
    response = client.get(f"/login?{query}")
    assert response.status_code == 302, response.get_json()
    assert response.headers["Location"] == location
    assert token not in response.headers["Location"]
    assert "authsvc_session=" in response.headers["Set-Cookie"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"

    # The cookie is a working session.
    user = client.get("/api/user")
    assert user.status_code == 200
    assert (user.get_json()["login"], user.get_json()["role"]) == ("url", "Editor")

    assert caplog.records, "the login should have been logged"
    for line in _log_lines(caplog.records):
        assert token not in line
    assert token not in capsys.readouterr().err


def test_url_login_failure_does_not_log_the_token(
    url_app: Flask, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="authsvc")
    token = signer.token(preferred_username="late", exp=1_000_000)
    response = url_app.test_client().get(f"/login?auth_token={token}&redirect_to=/x")
    assert_error(response, 401, "jwt.invalid")
    assert "Location" not in response.headers
    assert caplog.records
    for line in _log_lines(caplog.records):
        assert token not in line


def test_url_login_strips_token_from_redirect_target(url_app: Flask, signer: Signer) -> None:
    token = signer.token(preferred_username="url")
    target = quote(f"/d/abc?auth_token={token}&orgId=1", safe="")
    response = url_app.test_client().get(f"/login?auth_token={token}&redirect_to={target}")
    assert response.status_code == 302
    assert token not in response.headers["Location"]


def test_url_login_disabled(build: BuildApp, signer: Signer) -> None:
    """Grafana's TestJWTTest "url login" with url_login = false: the query is not read."""
    client = build(NAMED_CLAIMS).test_client()
    token = signer.token(preferred_username="q")
    assert_error(client.get(f"/login?auth_token={token}"), 401, "auth.unauthorized")
    assert_error(client.get(f"/api/auth/verify?auth_token={token}"), 401, "auth.unauthorized")


def test_url_login_token_in_query_authenticates_verify(url_app: Flask, signer: Signer) -> None:
    """Grafana's TestJWTTest "url login enabled": the token may come in the query alone."""
    token = signer.token(preferred_username="q")
    response = url_app.test_client().get(f"/api/auth/verify?auth_token={token}")
    assert response.status_code == 200
    assert response.headers["X-Auth-User"] == "q"


@pytest.mark.parametrize(
    "path", ["/login?redirect_to=/x&auth_token=", "/api/auth/verify?auth_token="]
)
def test_header_and_query_with_different_tokens(url_app: Flask, signer: Signer, path: str) -> None:
    client = url_app.test_client()
    in_header = signer.token(preferred_username="h")
    in_query = signer.token(preferred_username="q")
    response = client.get(path + in_query, headers={HEADER: in_header})
    body = assert_error(response, 401, "jwt.invalid")
    assert "two different tokens" in body["reason"]
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert "Set-Cookie" not in response.headers


def test_header_and_query_with_the_same_token(url_app: Flask, signer: Signer) -> None:
    token = signer.token(preferred_username="same")
    response = url_app.test_client().get(
        f"/login?auth_token={token}&redirect_to=/x", headers={HEADER: f"Bearer {token}"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/x"


# ------------------------------------------------------------------------------------ forward auth
@pytest.fixture
def forward_client(build: BuildApp) -> Iterator[FlaskClient]:
    app = build({**NAMED_CLAIMS, **ROLE_PATH, "groups_attribute_path": "groups"})
    yield app.test_client()


def test_verify_headers(forward_client: FlaskClient, signer: Signer) -> None:
    token = signer.token(
        sub="subject-1",
        preferred_username="fwd",
        email="fwd@x.io",
        name="Fwd User",
        roles="Editor",
        groups=["ops", "dev"],
    )
    response = verify(forward_client, token)
    assert response.status_code == 200, response.get_json()
    assert {k: v for k, v in response.headers.items() if k.startswith("X-Auth-")} == {
        "X-Auth-User": "fwd",
        "X-Auth-Email": "fwd@x.io",
        "X-Auth-Name": "Fwd User",
        "X-Auth-Role": "Editor",
        "X-Auth-Groups": "ops,dev",
        "X-Auth-Subject": "subject-1",
        "X-Auth-Issuer": "jwt",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def test_verify_headers_from_session(forward_client: FlaskClient, signer: Signer) -> None:
    token = signer.token(sub="subject-2", preferred_username="ses", roles="Admin", groups=["g"])
    assert login(forward_client, token).status_code == 200
    response = forward_client.get("/api/auth/verify?role=Admin&group=g")
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Auth-Subject"] == "subject-2"
    assert response.headers["X-Auth-User"] == "ses"


@pytest.mark.parametrize(
    ("role", "minimum", "allowed"),
    [
        ("Viewer", "Editor", False),
        ("Editor", "Editor", True),
        ("Admin", "Editor", True),
        ("None", "Viewer", False),
        ("None", "None", True),
        ("Editor", "Admin", False),
    ],
)
def test_verify_role_gate(
    forward_client: FlaskClient, signer: Signer, role: str, minimum: str, allowed: bool
) -> None:
    token = signer.token(preferred_username=f"r-{role}", sub=f"s-{role}", roles=role)
    response = verify(forward_client, token, f"?role={minimum}")
    if allowed:
        assert response.status_code == 200
    else:
        body = assert_error(response, 403, "auth.forbidden")
        assert minimum in body["reason"]


def test_verify_unknown_role_gate_is_bad_request(
    forward_client: FlaskClient, signer: Signer
) -> None:
    response = verify(forward_client, signer.token(preferred_username="x"), "?role=Owner")
    assert_error(response, 400, "api.bad_request")


@pytest.mark.parametrize(
    ("groups", "query", "allowed"),
    [
        (["ops", "dev"], "?group=dev", True),
        (["ops"], "?group=dev&group=ops", True),
        (["ops"], "?group=dev&group=qa", False),
        ([], "?group=dev", False),
        (["ops"], "?group=ops&role=Admin", False),
        (["ops"], "?group=ops&role=Viewer", True),
    ],
    ids=["member", "any-of", "none-of", "no-groups", "group-ok-role-not", "group-and-role"],
)
def test_verify_group_gate(
    forward_client: FlaskClient, signer: Signer, groups: list[str], query: str, allowed: bool
) -> None:
    token = signer.token(preferred_username="grp", roles="Viewer", groups=groups)
    response = verify(forward_client, token, query)
    if allowed:
        assert response.status_code == 200
    else:
        assert_error(response, 403, "auth.forbidden")
