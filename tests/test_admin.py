"""The admin API and the ``users`` / ``sessions`` commands, against one SQLite database.

The API is driven over HTTP on an app from the factory; the commands run as
real subprocesses (``python -m authsvc ...``) with the same home path and
``cfg:`` arguments, and their effects are checked through the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
HOUR = 3600

PEOPLE = {
    # login: (email, name, role claim)
    "alice": ("alice@example.com", "Alice Liddell", "Viewer"),
    "bob": ("bob@builders.example", "Bob Builder", "Editor"),
    "carol": ("carol@example.com", "Carol Danvers", "Admin"),
}


# --------------------------------------------------------------------------- harness
def expect_error(response: TestResponse, status: int, message_id: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    return dict(body)


@dataclass
class Site:
    """An app with a server admin (``root``) and the PEOPLE, each logged in once."""

    app: Flask
    clock: FakeClock
    key: ECKey
    homepath: Path
    values: dict[str, dict[str, str]]
    sessions: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def svc(self) -> Service:
        svc: Service = self.app.extensions["authsvc"]
        return svc

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client(use_cookies=False)

    def token(self, sub: str, **extra: Any) -> str:
        now = int(self.clock.now)
        claims = {"sub": sub, "email": f"{sub}@example.com", "iat": now, "exp": now + HOUR}
        claims.update(extra)
        return jwt.encode({"alg": "ES256", "kid": KID}, claims, self.key)

    def login(self, sub: str, **claims: Any) -> str:
        response = self.client.post(
            "/api/login/jwt", headers={JWT_HEADER: self.token(sub, **claims)}
        )
        assert response.status_code == 200, response.get_json()
        self.ids[sub] = response.get_json()["id"]
        for header in response.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE:
                return rest.split(";", 1)[0]
        raise AssertionError("no session cookie")

    def call(self, session: str | None, path: str, method: str = "GET", **kw: Any) -> TestResponse:
        headers = {"Cookie": f"{COOKIE}={session}"} if session is not None else {}
        return self.client.open(path, method=method, headers=headers, **kw)

    def admin(self, path: str, method: str = "GET", **kw: Any) -> TestResponse:
        return self.call(self.sessions["root"], path, method, **kw)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m authsvc ARGS --homepath HOME cfg:...``: the same configuration as the app."""
        cfg = [f"cfg:{s}.{k}={v}" for s, kv in self.values.items() for k, v in kv.items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        return subprocess.run(
            [sys.executable, "-m", "authsvc", *args, "--homepath", str(self.homepath), *cfg],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def site(
    make_app: Callable[..., Flask], homepath: Path, signing_key: ECKey, jwks_file: Path
) -> Iterator[Site]:
    values = {
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
    # Real time, so that what the commands (on the real clock) see is live too.
    clock = FakeClock(time.time())
    s = Site(make_app(values, clock=clock), clock, signing_key, homepath, values)
    s.sessions["root"] = s.login("root", role="ServerAdmin", name="Root")
    for login, (email, name, role) in PEOPLE.items():
        s.sessions[login] = s.login(login, email=email, name=name, role=role)
    yield s
    s.svc.close()


# --------------------------------------------------------------------------- GET /api/admin/users
def test_list_users_pages_every_user_with_the_disabled_flag(site: Site) -> None:
    response = site.admin("/api/admin/users")

    assert response.status_code == 200
    body = response.get_json()
    assert body["totalCount"] == 4
    assert body["page"] == 1
    assert body["perPage"] == 100
    assert [u["login"] for u in body["users"]] == ["root", "alice", "bob", "carol"]
    bob = body["users"][2]
    assert bob == {
        "id": site.ids["bob"],
        "login": "bob",
        "email": "bob@builders.example",
        "name": "Bob Builder",
        "role": "Editor",
        "isServerAdmin": False,
        "groups": [],
        "authModule": "authjwt",
        "disabled": False,
    }
    assert body["users"][0]["isServerAdmin"] is True


@pytest.mark.parametrize(
    ("query", "logins"),
    [
        pytest.param("ali", ["alice"], id="login"),
        pytest.param("BUILDERS", ["bob"], id="email-any-case"),
        pytest.param("danvers", ["carol"], id="name"),
        pytest.param("example.com", ["root", "alice", "carol"], id="email-domain"),
        pytest.param("nobody", [], id="no-match"),
    ],
)
def test_list_users_query_matches_login_email_or_name(
    site: Site, query: str, logins: list[str]
) -> None:
    body = site.admin("/api/admin/users", query_string={"query": query}).get_json()

    assert [u["login"] for u in body["users"]] == logins
    assert body["totalCount"] == len(logins)


@pytest.mark.parametrize("query", ["%", "_", "a_ice", "\\", "%@%"])
def test_list_users_query_is_a_literal_substring_not_a_like_pattern(site: Site, query: str) -> None:
    body = site.admin("/api/admin/users", query_string={"query": query}).get_json()

    assert body["users"] == []
    assert body["totalCount"] == 0


def test_list_users_pages(site: Site) -> None:
    pages = [
        site.admin("/api/admin/users", query_string={"page": p, "perpage": 3}).get_json()
        for p in (1, 2, 3)
    ]

    assert [[u["login"] for u in p["users"]] for p in pages] == [
        ["root", "alice", "bob"],
        ["carol"],
        [],
    ]
    assert {p["totalCount"] for p in pages} == {4}
    assert [(p["page"], p["perPage"]) for p in pages] == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"page": "0"}, id="page-0"),
        pytest.param({"page": "-1"}, id="page-negative"),
        pytest.param({"page": "two"}, id="page-word"),
        pytest.param({"perpage": "0"}, id="perpage-0"),
        pytest.param({"perpage": "1001"}, id="perpage-too-big"),
        pytest.param({"perpage": "1.5"}, id="perpage-fraction"),
    ],
)
def test_list_users_refuses_bad_paging(site: Site, args: dict[str, str]) -> None:
    expect_error(site.admin("/api/admin/users", query_string=args), 400, "api.bad_request")


# --------------------------------------------------------------------------- GET/PATCH one user
def test_get_user_by_id(site: Site) -> None:
    response = site.admin(f"/api/admin/users/{site.ids['carol']}")

    assert response.status_code == 200
    assert response.get_json()["login"] == "carol"
    assert response.get_json()["role"] == "Admin"
    assert response.get_json()["disabled"] is False


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", "/sessions")],
    ids=["get", "patch", "delete-sessions"],
)
def test_an_unknown_user_id_is_404(site: Site, method: str, suffix: str) -> None:
    response = site.admin(f"/api/admin/users/999999{suffix}", method, json={"role": "Editor"})
    body = expect_error(response, 404, "api.not_found")
    assert "999999" in body["reason"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"role": "Editor"}, {"role": "Editor"}, id="role"),
        pytest.param({"role": "None"}, {"role": "None"}, id="role-none"),
        pytest.param({"disabled": True}, {"disabled": True}, id="disabled"),
        pytest.param({"isServerAdmin": True}, {"isServerAdmin": True}, id="server-admin"),
        pytest.param(
            {"role": "Admin", "isServerAdmin": True, "disabled": False},
            {"role": "Admin", "isServerAdmin": True},
            id="all-three",
        ),
        pytest.param({}, {}, id="nothing"),
    ],
)
def test_patch_changes_only_the_given_fields(
    site: Site, change: dict[str, Any], expected: dict[str, Any]
) -> None:
    url = f"/api/admin/users/{site.ids['alice']}"
    before = site.admin(url).get_json()

    response = site.admin(url, "PATCH", json=change)

    assert response.status_code == 200
    assert response.get_json() == {**before, **expected}
    assert site.admin(url).get_json() == {**before, **expected}


def test_a_role_change_shows_on_the_users_next_session_request(site: Site) -> None:
    site.admin(f"/api/admin/users/{site.ids['alice']}", "PATCH", json={"role": "Editor"})

    me = site.call(site.sessions["alice"], "/api/user").get_json()
    verify = site.call(site.sessions["alice"], "/api/auth/verify")

    assert me["role"] == "Editor"
    assert verify.headers["X-Auth-Role"] == "Editor"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"disabled": "yes"}, id="disabled-string"),
        pytest.param({"disabled": 1}, id="disabled-int"),
        pytest.param({"disabled": None}, id="disabled-null"),
        pytest.param({"isServerAdmin": "true"}, id="server-admin-string"),
        pytest.param({"role": "Owner"}, id="role-unknown"),
        pytest.param({"role": "ServerAdmin"}, id="role-server-admin"),
        pytest.param({"role": "editor"}, id="role-lower-case"),
        pytest.param({"role": 3}, id="role-int"),
        pytest.param({"login": "mallory"}, id="unknown-field"),
        pytest.param({"disabled": True, "role": "Owner"}, id="one-bad-of-two"),
        pytest.param([{"disabled": True}], id="array"),
        pytest.param("disabled", id="string"),
    ],
)
def test_patch_refuses_bad_values_and_changes_nothing(site: Site, body: Any) -> None:
    url = f"/api/admin/users/{site.ids['alice']}"
    before = site.admin(url).get_json()

    expect_error(site.admin(url, "PATCH", json=body), 400, "api.bad_request")

    assert site.admin(url).get_json() == before


def test_patch_refuses_a_body_that_is_not_json(site: Site) -> None:
    response = site.admin(
        f"/api/admin/users/{site.ids['alice']}",
        "PATCH",
        data="disabled=true",
        content_type="application/x-www-form-urlencoded",
    )
    expect_error(response, 400, "api.bad_request")


# --------------------------------------------------------------------------- sessions and keys
def test_delete_sessions_revokes_every_session_of_the_user(site: Site) -> None:
    second = site.login("alice", email="alice@example.com", name="Alice Liddell", role="Viewer")

    response = site.admin(f"/api/admin/users/{site.ids['alice']}/sessions", "DELETE")

    assert response.status_code == 200
    assert response.get_json() == {"message": "Sessions revoked", "count": 2}
    for session in (site.sessions["alice"], second):
        expect_error(site.call(session, "/api/user"), 401, "session.invalid")
    assert site.call(site.sessions["bob"], "/api/user").status_code == 200
    again = site.admin(f"/api/admin/users/{site.ids['alice']}/sessions", "DELETE")
    assert again.get_json()["count"] == 0


def test_keys_lists_each_source_with_kind_key_ids_and_algorithms(site: Site) -> None:
    response = site.admin("/api/admin/keys")

    assert response.status_code == 200
    body = response.get_json()
    assert body["enabled"] is True
    [source] = body["sources"]
    assert source["kind"] == "jwk_set_file"
    assert source["health"] == "ok"
    assert source["keys"] == [{"kid": KID, "kty": "EC", "algorithms": ["ES256"]}]


# --------------------------------------------------------------------------- who may call
ADMIN_CALLS = [
    pytest.param("GET", "/api/admin/users", id="list"),
    pytest.param("GET", "/api/admin/users/{id}", id="get"),
    pytest.param("PATCH", "/api/admin/users/{id}", id="patch"),
    pytest.param("DELETE", "/api/admin/users/{id}/sessions", id="delete-sessions"),
    pytest.param("GET", "/api/admin/keys", id="keys"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_a_non_admin_is_forbidden(site: Site, method: str, path: str) -> None:
    url = path.format(id=site.ids["carol"])  # carol has the Admin role, not the server-admin flag
    by_session = site.call(site.sessions["carol"], url, method, json={"isServerAdmin": True})
    by_jwt = site.client.open(
        url,
        method=method,
        headers={JWT_HEADER: site.token("carol", email="carol@example.com", role="Admin")},
        json={"isServerAdmin": True},
    )

    for response in (by_session, by_jwt):
        body = expect_error(response, 403, "auth.forbidden")
        assert "carol" in body["reason"]
    assert site.admin(f"/api/admin/users/{site.ids['carol']}").get_json()["isServerAdmin"] is False


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_no_credentials_is_401(site: Site, method: str, path: str) -> None:
    response = site.call(None, path.format(id=site.ids["carol"]), method, json={})
    expect_error(response, 401, "auth.unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_a_server_admins_jwt_is_enough(site: Site, method: str, path: str) -> None:
    response = site.client.open(
        path.format(id=site.ids["carol"]),
        method=method,
        headers={JWT_HEADER: site.token("root", role="ServerAdmin", name="Root")},
        json={},
    )
    assert response.status_code == 200, response.get_json()


# --------------------------------------------------------------------------- the commands
def test_cli_users_list_matches_the_api(site: Site) -> None:
    listed = site.cli_json("users", "list", "--json")

    assert listed == site.admin("/api/admin/users").get_json()["users"]

    text = site.cli("users", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["ID", "LOGIN", "EMAIL", "ROLE", "ADMIN", "DISABLED"]
    assert [line.split()[1] for line in lines[1:]] == ["root", "alice", "bob", "carol"]


def test_cli_users_show(site: Site) -> None:
    shown = site.cli_json("users", "show", "BOB")  # logins match case-insensitively

    assert shown == site.admin(f"/api/admin/users/{site.ids['bob']}").get_json()


def test_cli_disable_takes_effect_on_the_next_request_and_enable_undoes_it(site: Site) -> None:
    disabled = site.cli_json("users", "disable", "alice")

    assert disabled["disabled"] is True
    expect_error(site.call(site.sessions["alice"], "/api/user"), 401, "identity.disabled")
    by_jwt = site.client.get("/api/user", headers={JWT_HEADER: site.token("alice")})
    expect_error(by_jwt, 401, "identity.disabled")

    assert site.cli_json("users", "enable", "alice")["disabled"] is False
    assert site.call(site.sessions["alice"], "/api/user").status_code == 200


def test_cli_set_role(site: Site) -> None:
    changed = site.cli_json("users", "set-role", "alice", "Editor")

    assert changed["role"] == "Editor"
    assert site.call(site.sessions["alice"], "/api/user").get_json()["role"] == "Editor"

    bad = site.cli("users", "set-role", "alice", "Owner")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


def test_cli_set_server_admin(site: Site) -> None:
    assert site.cli_json("users", "set-server-admin", "bob", "true")["isServerAdmin"] is True
    assert site.call(site.sessions["bob"], "/api/admin/users").status_code == 200

    assert site.cli_json("users", "set-server-admin", "bob", "false")["isServerAdmin"] is False
    expect_error(site.call(site.sessions["bob"], "/api/admin/users"), 403, "auth.forbidden")


def test_cli_sessions_list(site: Site) -> None:
    second = site.login("alice", email="alice@example.com", name="Alice Liddell", role="Viewer")
    assert second

    everyone = site.cli_json("sessions", "list", "--json")
    alice = site.cli_json("sessions", "list", "--user", "alice", "--json")

    assert len(everyone) == 5
    assert len(alice) == 2
    assert {s["userId"] for s in alice} == {site.ids["alice"]}
    assert {s["subject"] for s in alice} == {"alice"}
    assert all(s["expiresAt"] > site.clock.now for s in alice)
    assert all(COOKIE not in json.dumps(s) and "hash" not in json.dumps(s) for s in everyone)
    text = site.cli("sessions", "list", "--user", "alice")
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == 3


def test_cli_sessions_revoke_by_id_ends_that_session_only(site: Site) -> None:
    second = site.login("alice", email="alice@example.com", name="Alice Liddell", role="Viewer")
    first_id = site.cli_json("sessions", "list", "--user", "alice", "--json")[0]["id"]

    done = site.cli("sessions", "revoke", "--id", str(first_id))

    assert done.returncode == 0, done.stderr
    assert f"revoked session {first_id}" in done.stdout
    expect_error(site.call(site.sessions["alice"], "/api/user"), 401, "session.invalid")
    assert site.call(second, "/api/user").status_code == 200


def test_cli_sessions_revoke_by_user_ends_all_of_theirs(site: Site) -> None:
    second = site.login("alice", email="alice@example.com", name="Alice Liddell", role="Viewer")

    done = site.cli("sessions", "revoke", "--user", "alice")

    assert done.returncode == 0, done.stderr
    assert "revoked 2 session(s) of alice" in done.stdout
    for session in (site.sessions["alice"], second):
        expect_error(site.call(session, "/api/user"), 401, "session.invalid")
    assert site.call(site.sessions["bob"], "/api/user").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("users", "show", "nobody"), id="show"),
        pytest.param(("users", "disable", "nobody"), id="disable"),
        pytest.param(("users", "set-server-admin", "nobody", "true"), id="set-server-admin"),
        pytest.param(("sessions", "list", "--user", "nobody"), id="sessions-list"),
        pytest.param(("sessions", "revoke", "--user", "nobody"), id="sessions-revoke"),
    ],
)
def test_cli_an_unknown_login_exits_1_naming_it(site: Site, args: tuple[str, ...]) -> None:
    done = site.cli(*args)

    assert done.returncode == 1
    assert "no user with login 'nobody'" in done.stderr
    assert done.stdout == ""


def test_cli_an_unknown_session_id_exits_1(site: Site) -> None:
    done = site.cli("sessions", "revoke", "--id", "999999")

    assert done.returncode == 1
    assert "no session with id '999999'" in done.stderr
