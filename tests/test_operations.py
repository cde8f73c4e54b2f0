"""Operations (CONTRACT §1, §3, §6): pre-created users, admin commands, audit, busy ports.

The commands run in-process through ``authsvc.cli.main`` with the test's home
path, whose ``conf/custom.ini`` the apps built here read as well, so the
commands and the app share one configuration and one database. The servers
are real: a JWKS server on 127.0.0.1 that counts its connections, and
``authsvc serve`` processes (``@pytest.mark.slow``).
"""

from __future__ import annotations

import datetime
import getpass
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey
from servers import authsvc_env, make_homepath, start_authsvc
from sqlalchemy import func, select
from tokens import SIGNING_KID, jwks, public_jwk, public_pem, sign
from werkzeug.test import TestResponse

from authsvc.cli import main as cli
from authsvc.models import AuthLink, Session, User
from authsvc.verifier import fingerprint

HEADER = "X-JWT-Assertion"
COOKIE = "authsvc_session"
USER_JSON_KEYS = {"id", "login", "email", "name", "role", "isServerAdmin", "groups", "authModule"}
AUDIT_MEMBERS = {"audit", "event", "user", "issuer", "request_id", "time"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

Sections = dict[str, dict[str, str]]
AppFactory = Callable[..., Flask]


# --------------------------------------------------------------------------- harness
def write_config(homepath: Path, sections: Sections) -> None:
    """``conf/custom.ini`` from ``sections``: read by the commands and the apps alike."""
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections.items()
    )
    (homepath / "conf" / "custom.ini").write_text(text)


def jwt_sections(jwks_file: Path, **jwt: str) -> Sections:
    """The ``jwt`` issuer on the session's ES256 key; logins come from ``preferred_username``."""
    return {
        "auth.jwt": {
            "enabled": "true",
            "header_name": HEADER,
            "jwk_set_file": str(jwks_file),
            "username_claim": "preferred_username",
            "email_claim": "email",
            **jwt,
        }
    }


def call_cli(argv: list[str]) -> int:
    """``authsvc.cli.main(argv)``, closing the services the command built once it returns.

    A command process exits and so frees its database pool; in-process, the pool (and
    PostgreSQL's connections) would outlive the test's database.
    """
    import authsvc.app

    built: list[Flask] = []
    real = authsvc.app.create_app

    def tracked(*args: Any, **kwargs: Any) -> Flask:
        built.append(real(*args, **kwargs))
        return built[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(authsvc.app, "create_app", tracked)
        try:
            return cli(argv)
        finally:
            for app in built:
                app.extensions["authsvc"].close()


def run(capsys: pytest.CaptureFixture[str], homepath: Path, *args: str) -> tuple[int, str, str]:
    """``authsvc ARGS --homepath HOME`` in-process: (exit status, stdout, stderr)."""
    code = call_cli([*args, "--homepath", str(homepath)])
    out, err = capsys.readouterr()
    return code, out, err


def run_ok(capsys: pytest.CaptureFixture[str], homepath: Path, *args: str) -> str:
    code, out, err = run(capsys, homepath, *args)
    assert code == 0, err
    return out


def token(key: ECKey, sub: str, login: str | None = None, **claims: Any) -> str:
    """A valid ES256 token for ``sub`` whose login claim is ``login`` (default: ``sub``)."""
    now = int(time.time())
    payload = {"sub": sub, "preferred_username": login or sub, "iat": now, "exp": now + 3600}
    return sign(key, "ES256", {**payload, **claims}, kid=SIGNING_KID)


def login(client: FlaskClient, jwt: str) -> TestResponse:
    return client.post("/api/login/jwt", headers={HEADER: jwt})


def session_cookie(response: TestResponse) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {response.headers}")


def with_session(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookie}"}


def expect_error(response: TestResponse, status: int, message_id: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    return dict(body)


def rows_of(app: Flask, user_id: int) -> tuple[int, int, int]:
    """(users, links, sessions) of ``user_id`` in the app's database."""
    with app.extensions["authsvc"].db() as db:
        return (
            db.scalar(select(func.count()).select_from(User).where(User.id == user_id)),
            db.scalar(
                select(func.count()).select_from(AuthLink).where(AuthLink.user_id == user_id)
            ),
            db.scalar(select(func.count()).select_from(Session).where(Session.user_id == user_id)),
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Sections:
    """Sections selecting the database: the home path's SQLite file, or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return {}
    return {"database": {"url": request.getfixturevalue("pg_url")}}


@pytest.fixture
def admin_home(
    homepath: Path, jwks_file: Path, database: Sections, capsys: pytest.CaptureFixture[str]
) -> Path:
    """Default provisioning (lookup_only) and a server admin ``root`` made with the command."""
    write_config(homepath, {**jwt_sections(jwks_file), **database})
    run_ok(capsys, homepath, "users", "create", "root", "--server-admin", "--issuer", "jwt",
           "--subject", "root")  # fmt: skip
    return homepath


# --------------------------------------------------------------------------- 1. pre-created users
ALICE = {
    "login": "alice",
    "email": "alice@example.com",
    "name": "Alice Liddell",
    "role": "Editor",
    "isServerAdmin": False,
    "links": [{"issuer": "jwt", "subject": "alice-sub"}],
}


def test_api_creates_a_user_that_signs_in_under_lookup_only_and_deletes_it(
    admin_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app()
    assert app.extensions["authsvc"].settings.jwt.user_provisioner == "lookup_only"
    client = app.test_client(use_cookies=False)
    root = {HEADER: token(signing_key, "root")}

    created = client.post("/api/admin/users", json=ALICE, headers=root)

    assert created.status_code == 200, created.get_json()
    user = created.get_json()
    assert set(user) == USER_JSON_KEYS | {"disabled"}
    assert {k: user[k] for k in ("login", "email", "name", "role", "isServerAdmin")} == {
        k: ALICE[k] for k in ("login", "email", "name", "role", "isServerAdmin")
    }
    assert user["disabled"] is False
    assert client.get(f"/api/admin/users/{user['id']}", headers=root).get_json() == user

    signed_in = login(client, token(signing_key, "alice-sub", "alice"))
    assert signed_in.status_code == 200, signed_in.get_json()
    assert signed_in.get_json()["id"] == user["id"]
    assert signed_in.get_json()["role"] == "Editor"
    cookie = session_cookie(signed_in)
    assert client.get("/api/user", headers=with_session(cookie)).status_code == 200
    assert rows_of(app, user["id"]) == (1, 1, 1)

    # `sessions list` names the session's user by login, in both formats.
    listed = json.loads(run_ok(capsys, admin_home, "sessions", "list", "--json"))
    assert [s["login"] for s in listed] == ["alice"]
    table = run_ok(capsys, admin_home, "sessions", "list", "--user", "alice")
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["alice"]

    deleted = client.delete(f"/api/admin/users/{user['id']}", headers=root)

    assert deleted.status_code == 200, deleted.get_json()
    assert rows_of(app, user["id"]) == (0, 0, 0)
    expect_error(client.get(f"/api/admin/users/{user['id']}", headers=root), 404, "api.not_found")
    expect_error(
        client.delete(f"/api/admin/users/{user['id']}", headers=root), 404, "api.not_found"
    )
    assert client.get("/api/user", headers=with_session(cookie)).status_code == 401
    expect_error(
        login(client, token(signing_key, "alice-sub", "alice")), 401, "user.sync.signup-disabled"
    )
    assert json.loads(run_ok(capsys, admin_home, "sessions", "list", "--json")) == []


@pytest.mark.parametrize(
    "body",
    [
        {"login": "ALICE"},
        {"login": "Alice", "email": "someone@example.com"},
        {"login": "bob", "email": "ALICE@Example.COM"},
        {"login": "bob", "links": [{"issuer": "jwt", "subject": "alice-sub"}]},
        {"login": "bob", "links": [{"issuer": "jwt", "subject": "root"}]},
    ],
    ids=["login-other-case", "login-mixed-case", "email-other-case", "link-taken", "root-link"],
)
def test_api_create_conflicts_are_409_and_create_nothing(
    admin_home: Path, make_app: AppFactory, signing_key: ECKey, body: dict[str, Any]
) -> None:
    app = make_app()
    client = app.test_client(use_cookies=False)
    root = {HEADER: token(signing_key, "root")}
    assert client.post("/api/admin/users", json=ALICE, headers=root).status_code == 200

    conflict = client.post("/api/admin/users", json=body, headers=root)

    expect_error(conflict, 409, "user.sync.conflict")
    users = client.get("/api/admin/users", headers=root).get_json()
    assert sorted(u["login"] for u in users["users"]) == ["alice", "root"]
    with app.extensions["authsvc"].db() as db:
        assert db.scalar(select(func.count()).select_from(AuthLink)) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"login": "bob", "password": "x"},
        {"login": 7},
        {"login": "bob", "email": 7},
        {"login": "bob", "isServerAdmin": "true"},
        {"login": "bob", "role": "Owner"},
        {"login": "bob", "role": "ServerAdmin"},
        {"login": "bo\x07b"},
        {"login": "bob\x7f"},
        {"login": "bo\u200bb"},
        {"login": " bob"},
        {"login": "bob "},
        {"login": ""},
        {"email": "bob@example.com"},
        {"login": "bob", "email": "bob@example.com\n"},
        {"login": "bob", "links": {"issuer": "jwt", "subject": "b"}},
        {"login": "bob", "links": [{"issuer": "jwt"}]},
        {"login": "bob", "links": [{"issuer": "jwt", "subject": 1}]},
        {"login": "bob", "links": [{"issuer": "Not An Issuer", "subject": "b"}]},
        {"login": "bob", "links": [{"issuer": "jwt", "subject": " b"}]},
        ["bob"],
    ],
    ids=[
        "unknown-field",
        "login-not-string",
        "email-not-string",
        "admin-flag-not-bool",
        "unknown-role",
        "server-admin-is-no-role",
        "login-bell",
        "login-del",
        "login-zero-width",
        "login-leading-space",
        "login-trailing-space",
        "login-empty",
        "login-missing",
        "email-newline",
        "links-not-list",
        "link-without-subject",
        "link-subject-not-string",
        "link-bad-issuer-name",
        "link-subject-space",
        "not-an-object",
    ],
)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_api_create_refuses_a_bad_body(
    admin_home: Path, make_app: AppFactory, signing_key: ECKey, body: Any
) -> None:
    app = make_app()
    client = app.test_client(use_cookies=False)
    root = {HEADER: token(signing_key, "root")}

    expect_error(client.post("/api/admin/users", json=body, headers=root), 400, "api.bad_request")

    users = client.get("/api/admin/users", headers=root).get_json()
    assert [u["login"] for u in users["users"]] == ["root"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_unlinked_precreated_user_is_a_conflict_and_a_stranger_is_refused(
    admin_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """lookup_only without a link: the token's login held by an account is 409, else 401."""
    run_ok(capsys, admin_home, "users", "create", "carol", "--email", "carol@example.com")
    client = make_app().test_client(use_cookies=False)

    by_login = login(client, token(signing_key, "carol-sub", "carol"))
    by_email = login(client, token(signing_key, "c2", "c2", email="CAROL@example.com"))
    stranger = login(client, token(signing_key, "dave-sub", "dave"))

    expect_error(by_login, 409, "user.sync.conflict")
    expect_error(by_email, 409, "user.sync.conflict")
    expect_error(stranger, 401, "user.sync.signup-disabled")
    for response in (by_login, by_email, stranger):
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_cli_create_link_and_delete(
    admin_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_ok(
        capsys, admin_home, "users", "create", "alice", "--email", "alice@example.com",
        "--name", "Alice Liddell", "--role", "Editor", "--issuer", "jwt", "--subject", "alice-sub",
    )  # fmt: skip
    created = json.loads(out)
    assert {k: created[k] for k in ("login", "email", "name", "role", "isServerAdmin")} == {
        "login": "alice",
        "email": "alice@example.com",
        "name": "Alice Liddell",
        "role": "Editor",
        "isServerAdmin": False,
    }
    assert created["disabled"] is False
    assert json.loads(run_ok(capsys, admin_home, "users", "show", "alice")) == created
    root = json.loads(run_ok(capsys, admin_home, "users", "show", "root"))
    assert root["isServerAdmin"] is True

    run_ok(capsys, admin_home, "users", "link", "alice", "--issuer", "jwt", "--subject", "a2")
    app = make_app()
    client = app.test_client(use_cookies=False)
    for sub in ("alice-sub", "a2"):
        response = login(client, token(signing_key, sub, "alice"))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["id"] == created["id"]
    assert rows_of(app, created["id"]) == (1, 2, 2)

    out = run_ok(capsys, admin_home, "users", "delete", "alice")

    assert "alice" in out
    assert rows_of(app, created["id"]) == (0, 0, 0)
    assert run(capsys, admin_home, "users", "show", "alice")[0] == 1
    for sub in ("alice-sub", "a2"):
        expect_error(
            login(client, token(signing_key, sub, "alice")), 401, "user.sync.signup-disabled"
        )
    code, out, err = run(capsys, admin_home, "users", "delete", "alice")
    assert (code, out) == (1, "")
    assert "alice" in err


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "args",
    [
        ("users", "create", "ALICE"),
        ("users", "create", "bob", "--email", "Alice@EXAMPLE.com"),
        ("users", "create", "bob", "--issuer", "jwt", "--subject", "alice-sub"),
        ("users", "create", "bob", "--issuer", "jwt"),
        ("users", "create", "bob", "--subject", "bob-sub"),
        ("users", "create", "bo\x01b"),
        ("users", "create", " bob"),
        ("users", "create", "bob", "--issuer", "No Such Name", "--subject", "b"),
        ("users", "link", "bob", "--issuer", "jwt", "--subject", "b"),
        ("users", "link", "root", "--issuer", "jwt", "--subject", "alice-sub"),
        ("users", "link", "root", "--issuer", "jwt", "--subject", "root"),
        ("users", "delete", "bob"),
    ],
    ids=[
        "login-taken-other-case",
        "email-taken-other-case",
        "link-taken",
        "issuer-without-subject",
        "subject-without-issuer",
        "login-control-char",
        "login-leading-space",
        "bad-issuer-name",
        "link-unknown-login",
        "link-taken",
        "link-already-there",
        "delete-unknown-login",
    ],
)
def test_cli_refusals_exit_1_with_one_line_and_change_nothing(
    admin_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    run_ok(capsys, admin_home, "users", "create", "alice", "--email", "alice@example.com",
           "--issuer", "jwt", "--subject", "alice-sub")  # fmt: skip
    before = run_ok(capsys, admin_home, "users", "list", "--json")

    code, out, err = run(capsys, admin_home, *args)

    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert run_ok(capsys, admin_home, "users", "list", "--json") == before


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_non_admin_is_told_how_to_become_a_server_admin(
    admin_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_ok(capsys, admin_home, "users", "create", "bob", "--issuer", "jwt", "--subject", "bob")
    client = make_app().test_client(use_cookies=False)

    for method, path in (("GET", "/api/admin/users"), ("POST", "/api/admin/users")):
        response = client.open(
            path, method=method, json={"login": "x"}, headers={HEADER: token(signing_key, "bob")}
        )
        body = expect_error(response, 403, "auth.forbidden")
        assert "users set-server-admin" in body["reason"], body


# --------------------------------------------------------------------------- 2. no IdP contact
class _CountingJwks(ThreadingHTTPServer):
    """A JWKS server on 127.0.0.1 that counts every connection it accepts."""

    daemon_threads = True

    def __init__(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True


@pytest.fixture
def counting_jwks(signing_key: ECKey) -> Iterator[_CountingJwks]:
    server = _CountingJwks(jwks(public_jwk(signing_key, SIGNING_KID)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def blackhole() -> Iterator[socket.socket]:
    """A port that takes connections into its backlog and never answers: a hung IdP."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        listener.setblocking(False)
        yield listener


def _accepted_nothing(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


ADMIN_COMMANDS = [
    ("users", "create", "alice", "--email", "alice@example.com", "--issuer", "jwt",
     "--subject", "alice-sub"),
    ("users", "list"),
    ("users", "list", "--json"),
    ("users", "show", "alice"),
    ("users", "link", "alice", "--issuer", "jwt", "--subject", "alice-2"),
    ("users", "set-role", "alice", "Editor"),
    ("users", "set-server-admin", "alice", "true"),
    ("users", "disable", "alice"),
    ("users", "enable", "alice"),
    ("sessions", "list"),
    ("sessions", "list", "--json"),
    ("sessions", "list", "--user", "alice"),
    ("sessions", "revoke", "--user", "alice"),
    ("users", "delete", "alice"),
]  # fmt: skip


@pytest.mark.parametrize("idp", ["counting-server", "hung-server"])
def test_admin_commands_never_contact_the_identity_provider(
    homepath: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, idp: str
) -> None:
    if idp == "counting-server":
        server: _CountingJwks = request.getfixturevalue("counting_jwks")
        port = server.server_address[1]
        contacted: Callable[[], bool] = lambda: server.connections > 0  # noqa: E731
    else:
        listener: socket.socket = request.getfixturevalue("blackhole")
        port = listener.getsockname()[1]
        contacted = lambda: not _accepted_nothing(listener)  # noqa: E731
    url = f"http://127.0.0.1:{port}/jwks"
    write_config(
        homepath,
        {
            "auth.jwt": {
                "enabled": "true",
                "header_name": "X",
                "jwk_set_url": url,
                "audience": "x",
                "jwk_set_timeout": "30s",
            }
        },
    )

    for args in ADMIN_COMMANDS:
        started = time.monotonic()
        code, _, err = run(capsys, homepath, *args)
        took = time.monotonic() - started

        assert code == 0, (args, err)
        assert took < 5.0, (args, took)
        assert not contacted(), args
        for word in ("fetch", "jwks", str(port), "unavailable", "error"):
            assert word not in err.lower(), (args, err)


# --------------------------------------------------------------------------- 4. audit log
def audit_lines(text: str) -> list[dict[str, Any]]:
    """The audit lines of captured output (JSON objects with ``"audit": true``)."""
    found = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("audit") is True:
            found.append(value)
    return found


def check_audit(
    line: dict[str, Any],
    event: str,
    user: str,
    *,
    issuer: str | None = None,
    request_id: str | None = None,
    token_text: str | None = None,
    actor: str | None = None,
) -> None:
    assert set(line) >= AUDIT_MEMBERS, line
    assert (line["event"], line["user"]) == (event, user), line
    if issuer is not None:
        assert line["issuer"] == issuer, line
    if request_id is not None:
        assert line["request_id"] == request_id, line
    if token_text is not None:
        assert line["token"] == fingerprint(token_text), line
        assert line["token"].startswith("sha256:")
    if event == "admin_change":
        assert line["actor"] == actor, line
        assert isinstance(line["changes"], dict) and line["changes"], line
    assert RFC3339.match(line["time"]), line
    when = datetime.datetime.fromisoformat(line["time"])
    assert when.tzinfo is not None
    assert abs(when.timestamp() - time.time()) < 60, line


class _Captured:
    """Everything the test's capsys has seen, and the audit lines not yet taken."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.everything = ""

    def take(self) -> list[dict[str, Any]]:
        out, err = self.capsys.readouterr()
        self.everything += out + err
        return audit_lines(out + err)


@pytest.fixture
def audit_home(homepath: Path, jwks_file: Path) -> Path:
    sections = jwt_sections(jwks_file, auto_sign_up="true")
    write_config(homepath, {**sections, "log": {"audit": "true"}})
    return homepath


def test_audit_lines_for_every_event(
    audit_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    captured = _Captured(capsys)
    cli_actor = f"cli:{getpass.getuser()}"
    tokens: list[str] = []

    def mint(sub: str) -> str:
        tokens.append(token(signing_key, sub, email=f"{sub}@example.com"))
        return tokens[-1]

    def cli_step(*args: str) -> list[dict[str, Any]]:
        code = call_cli([*args, "--homepath", str(audit_home)])
        lines = captured.take()
        assert code == 0, captured.everything
        return lines

    [line] = cli_step("users", "create", "root", "--server-admin", "--issuer", "jwt",
                      "--subject", "root")  # fmt: skip
    check_audit(line, "admin_change", "root", actor=cli_actor)

    app = make_app()
    client = app.test_client(use_cookies=False)
    captured.take()  # start-up lines

    # login of an existing user: one line
    root_token = mint("root")
    response = login(client, root_token)
    assert response.status_code == 200
    root_session = with_session(session_cookie(response))
    [line] = captured.take()
    check_audit(line, "login", "root", issuer="jwt", token_text=root_token,
                request_id=response.headers["X-Request-Id"])  # fmt: skip

    # first login under auto_sign_up: sign-up, then login
    alice_token = mint("alice")
    response = login(client, alice_token)
    assert response.status_code == 200
    alice_id = response.get_json()["id"]
    rid = response.headers["X-Request-Id"]
    signup, line = captured.take()
    check_audit(signup, "signup", "alice", issuer="jwt", token_text=alice_token, request_id=rid)
    check_audit(line, "login", "alice", issuer="jwt", token_text=alice_token, request_id=rid)

    # admin changes through the API (root's session)
    for method, path, body, user, mentioned in (
        ("PATCH", f"/api/admin/users/{alice_id}", {"role": "Editor"}, "alice", "Editor"),
        ("POST", "/api/admin/users", {"login": "bob", "links": [{"issuer": "jwt", "subject": "b"}]},
         "bob", "bob"),
    ):  # fmt: skip
        response = client.open(path, method=method, json=body, headers=root_session)
        assert response.status_code == 200, response.get_json()
        [line] = captured.take()
        check_audit(line, "admin_change", user, actor="root",
                    request_id=response.headers["X-Request-Id"])  # fmt: skip
        assert mentioned in json.dumps(line["changes"]), line

    # session revocation through the API
    response = client.delete(f"/api/admin/users/{alice_id}/sessions", headers=root_session)
    assert response.status_code == 200
    [line] = captured.take()
    check_audit(line, "session_revoked", "alice", request_id=response.headers["X-Request-Id"])

    # logout: POST /api/logout and GET /logout
    for method, path in (("POST", "/api/logout"), ("GET", "/logout")):
        again = mint("alice")
        cookie = session_cookie(login(client, again))
        [line] = captured.take()
        check_audit(line, "login", "alice", issuer="jwt", token_text=again)
        response = client.open(path, method=method, headers=with_session(cookie))
        assert response.status_code in (200, 302)
        [line] = captured.take()
        check_audit(line, "logout", "alice", issuer="jwt",
                    request_id=response.headers["X-Request-Id"])  # fmt: skip

    # deleting a user through the API
    bob = client.get("/api/admin/users?query=bob", headers=root_session).get_json()["users"][0]
    response = client.delete(f"/api/admin/users/{bob['id']}", headers=root_session)
    assert response.status_code == 200
    [line] = captured.take()
    check_audit(line, "admin_change", "bob", actor="root",
                request_id=response.headers["X-Request-Id"])  # fmt: skip

    # the commands: admin changes and revocations, each by cli:USER
    login(client, mint("alice"))
    captured.take()
    for args, event in (
        (("users", "set-role", "alice", "Admin"), "admin_change"),
        (("users", "set-server-admin", "alice", "true"), "admin_change"),
        (("users", "disable", "alice"), "admin_change"),
        (("users", "enable", "alice"), "admin_change"),
        (("users", "create", "carol"), "admin_change"),
        (("users", "link", "carol", "--issuer", "jwt", "--subject", "c"), "admin_change"),
        (("sessions", "revoke", "--user", "alice"), "session_revoked"),
        (("users", "delete", "carol"), "admin_change"),
    ):
        [line] = cli_step(*args)
        check_audit(line, event, args[2] if args[0] == "users" else "alice",
                    actor=cli_actor if event == "admin_change" else None)  # fmt: skip
        if event == "session_revoked":
            assert line.get("actor") == cli_actor, line

    # reading changes nothing and records nothing
    assert cli_step("users", "list") == []
    assert cli_step("sessions", "list") == []
    assert client.get("/api/user", headers=root_session).status_code == 200
    assert captured.take() == []

    for text in tokens:
        assert text not in captured.everything
        assert text.rsplit(".", 1)[1] not in captured.everything


def test_an_admin_change_by_a_jwt_names_that_token(
    audit_home: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A change made by a bearer token involves that token: the line carries its fingerprint."""
    run_ok(capsys, audit_home, "users", "create", "root", "--server-admin", "--issuer", "jwt",
           "--subject", "root")  # fmt: skip
    client = make_app().test_client(use_cookies=False)
    capsys.readouterr()
    root_token = token(signing_key, "root")

    response = client.post("/api/admin/users", json={"login": "bob"}, headers={HEADER: root_token})

    assert response.status_code == 200, response.get_json()
    out, err = capsys.readouterr()
    [line] = audit_lines(out + err)
    check_audit(line, "admin_change", "bob", actor="root", token_text=root_token,
                request_id=response.headers["X-Request-Id"])  # fmt: skip
    assert root_token not in out + err


def test_no_audit_lines_by_default(
    homepath: Path,
    jwks_file: Path,
    make_app: AppFactory,
    signing_key: ECKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(homepath, jwt_sections(jwks_file, auto_sign_up="true"))
    run_ok(capsys, homepath, "users", "create", "root", "--server-admin", "--issuer", "jwt",
           "--subject", "root")  # fmt: skip
    app = make_app()
    assert app.extensions["authsvc"].settings.log.audit is False
    client = app.test_client(use_cookies=False)

    root = with_session(session_cookie(login(client, token(signing_key, "root"))))
    alice = login(client, token(signing_key, "alice")).get_json()["id"]
    assert (
        client.patch(f"/api/admin/users/{alice}", json={"role": "Admin"}, headers=root).status_code
        == 200
    )
    assert client.delete(f"/api/admin/users/{alice}/sessions", headers=root).status_code == 200
    assert client.post("/api/logout", headers=root).status_code == 200
    run_ok(capsys, homepath, "users", "set-role", "alice", "Editor")
    run_ok(capsys, homepath, "sessions", "revoke", "--user", "alice")
    run_ok(capsys, homepath, "users", "delete", "alice")

    out, err = capsys.readouterr()
    assert audit_lines(out + err) == []
    assert '"audit"' not in out + err


# --------------------------------------------------------------------------- 5. busy port
def _serve_once(homepath: Path, port: int, *cfg: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authsvc", "serve", "--homepath", str(homepath),
         f"cfg:server.http_port={port}", "cfg:server.workers=1", *cfg],
        capture_output=True,
        text=True,
        timeout=60,
        env=authsvc_env(),
        check=False,
    )  # fmt: skip


def _assert_refused_busy(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "already in use" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "serving" not in done.stderr + done.stdout


@pytest.mark.slow
def test_a_second_serve_on_a_busy_port_exits_1_and_never_shares_it(
    homepath: Path, tmp_path: Path, jwks_file: Path
) -> None:
    first = start_authsvc(homepath, "cfg:server.workers=1", log=tmp_path / "first.log")
    try:
        # The second instance would answer /api/health with keys "ok", the first says "disabled".
        second_home = make_homepath(tmp_path / "second")
        answers: list[tuple[int, str]] = []
        stop = threading.Event()

        def ask() -> None:
            with requests.Session() as http:
                while not stop.is_set() or len(answers) < 20:
                    response = http.get(first.url("/api/health"), timeout=5)
                    answers.append((response.status_code, response.json()["keys"]))

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            done = _serve_once(
                second_home,
                first.port,
                "cfg:auth.jwt.enabled=true",
                "cfg:auth.jwt.header_name=X",
                f"cfg:auth.jwt.jwk_set_file={jwks_file}",
            )
        finally:
            stop.set()
            asker.join(timeout=30)

        _assert_refused_busy(done, first.port)
        assert len(answers) >= 20
        assert set(answers) == {(200, "disabled")}
        for _ in range(20):
            response = requests.get(first.url("/api/health"), timeout=5)
            assert (response.status_code, response.json()["keys"]) == (200, "disabled")
        assert first.proc.poll() is None
    finally:
        first.stop()


@pytest.mark.slow
@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so-reuseport"])
def test_serve_on_a_port_another_program_listens_on_exits_1(
    homepath: Path, reuse_port: bool
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]

        done = _serve_once(homepath, port)

        _assert_refused_busy(done, port)


# --------------------------------------------------------------------------- 6. newcomers
QUICKSTART = """\
[auth.jwt]
enabled = true
header_name = Authorization
jwk_set_file = data/dev/jwks.json
username_claim = sub
"""


def test_dev_token_with_a_negative_ttl_is_expired_that_long_and_the_doctor_says_so(
    homepath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's flow: ``dev keys``, ``dev token``, then the doctor on the quickstart config."""
    quickstart = homepath / "conf" / "quickstart.ini"
    quickstart.write_text(QUICKSTART)
    run_ok(capsys, homepath, "dev", "keys")

    minted = run_ok(capsys, homepath, "dev", "token", "--sub", "a", "--ttl=-5m").strip()
    code, out, _ = run(capsys, homepath, "token", "inspect", minted, "--config", str(quickstart))

    exp = json.loads(_segment(minted, 1))["exp"]
    assert abs(exp - (time.time() - 300)) < 10
    assert code != 0
    verdict = [line for line in out.splitlines() if line.startswith("verdict:")]
    assert len(verdict) == 1, out
    assert "REJECTED" in verdict[0]
    assert re.search(r"token expired 5m(\d+s)? ago", verdict[0]), verdict[0]

    fresh = run_ok(capsys, homepath, "dev", "token", "--sub", "a").strip()
    code, out, _ = run(capsys, homepath, "token", "inspect", fresh, "--config", str(quickstart))
    assert code == 0, out
    assert "verdict: VALID" in out


def _segment(jwt: str, index: int) -> bytes:
    import base64

    part = jwt.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("source", ["key_file", "jwk_set_file"])
def test_token_inspect_shows_a_missing_kid_as_none_in_words(
    homepath: Path, signing_key: ECKey, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    if source == "key_file":
        (homepath / "key.pem").write_bytes(public_pem(signing_key))
        key_source = {"key_file": str(homepath / "key.pem")}
    else:
        (homepath / "jwks.json").write_text(json.dumps(jwks(public_jwk(signing_key, "k1"))))
        key_source = {"jwk_set_file": str(homepath / "jwks.json")}
    jwt = {"enabled": "true", "header_name": "X", "username_claim": "sub", **key_source}
    write_config(homepath, {"auth.jwt": jwt})
    now = int(time.time())
    without_kid = sign(signing_key, "ES256", {"sub": "a", "iat": now, "exp": now + 600})
    assert "kid" not in json.loads(_segment(without_kid, 0))

    code, out, _ = run(capsys, homepath, "token", "inspect", without_kid)

    assert "(none)" in out, out
    assert not re.search(r"kid\W{0,2}None", out), out
    assert (code == 0) == (source == "key_file"), out


def test_serve_help_mentions_cfg_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(["serve", "--help"])

    assert exited.value.code == 0
    assert "cfg:SECTION.KEY=VALUE" in capsys.readouterr().out
