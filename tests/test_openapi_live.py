"""schemathesis against a live ``authsvc serve``: every response matches /api/openapi.json.

One ``python -m authsvc serve`` for the module — JWT auth with an HMAC secret,
auto sign-up, URL login, a server-admin role from the token, signing on with
upstream assertions and two ``[assertion.NAME]`` sections — and the schema
loaded from its own ``GET /api/openapi.json``. Each operation of the document
runs three ways: with whatever credentials schemathesis generates from the
security schemes (none, or junk), with a server admin's JWT, and with that
admin's session cookie (a new session per case), so that the 200 paths run too.

Checks: no 5xx (``not_a_server_error``), and status code, content type,
headers and body as documented (the ``*_conformance`` checks), run by
``Case.call_and_validate``. Generation: schemathesis's Hypothesis strategies
(``APIOperation.as_strategy``), positive and negative data, ``MAX_EXAMPLES``
cases per operation and way, derandomized and without an example database,
so every run sends the same requests. The module takes about 35 s.

(schemathesis's own pytest integration, ``schemathesis.pytest.from_fixture``,
does not run under pytest 9: it sets ``Node._nodeid``, which pytest 9 removed;
the strategies and ``call_and_validate`` are its public Python API.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey
from schemathesis import Case, GenerationMode
from servers import Process, make_homepath, start_authsvc

from authsvc.openapi import build_document

pytestmark = pytest.mark.slow

SECRET = "schemathesis-" * 5  # 65 printable bytes: enough for HS512 too
ADMIN_SUB = "schemathesis-admin"
MAX_EXAMPLES = 40
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
CONFIG: dict[str, Any] = {
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
}
# [assertion.NAME] sections: the admin may obtain "partner", not "vip" (403).
ASSERTIONS = {
    "partner": {"audience": "https://partner.example/token", "min_role": "Editor"},
    "vip": {"audience": "https://vip.example/token", "groups": "vip"},
}
# The operations of the document, by label ("GET /api/health"), for readable test ids.
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in build_document()["paths"].items()
    for method in item
]


def admin_token() -> str:
    now = int(time.time())
    claims = {
        "sub": ADMIN_SUB,
        "login": "admin",
        "email": "admin@example.com",
        "name": "Schemathesis Admin",
        "role": "ServerAdmin",
        "groups": ["ops", "dev"],
        "scope": "api read",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(SECRET.encode()))


class Live:
    """The server, and the server admin that the authenticated runs act as."""

    def __init__(self, server: Process) -> None:
        self.server = server
        self.base_url = server.url("/").rstrip("/")
        self.token = admin_token()
        self.bearer = {"Authorization": f"Bearer {self.token}"}
        me = requests.get(server.url("/api/user"), headers=self.bearer, timeout=10)
        assert me.status_code == 200, me.text
        self.admin_id: int = me.json()["id"]
        self._made = 0
        self.target_id = self.new_user()

    def new_user(self) -> int:
        """A new user for the admin to change or delete, in place of itself."""
        self._made += 1
        login = f"target-{self._made}"
        response = requests.post(
            self.server.url("/api/admin/users"),
            headers=self.bearer,
            json={"login": login, "email": f"{login}@example.com", "role": "Editor"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        user_id: int = response.json()["id"]
        return user_id

    def session_cookie(self) -> str:
        """A new session of the admin (a case may log out or revoke the previous one)."""
        response = requests.post(self.server.url("/api/login/jwt"), headers=self.bearer, timeout=10)
        assert response.status_code == 200, response.text
        return response.cookies["authsvc_session"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = make_homepath(tmp_path_factory.mktemp("openapi-live"))
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = home / "signing-key.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    server = start_authsvc(
        home,
        f"cfg:signing.key_file={key_file}",
        "cfg:upstream_assertion.enabled=true",
        *(
            f"cfg:assertion.{name}.{k}={v}"
            for name, kv in ASSERTIONS.items()
            for k, v in kv.items()
        ),
        "cfg:server.workers=2",
        "cfg:auth.jwt.enabled=true",
        "cfg:auth.jwt.header_name=Authorization",
        f"cfg:auth.jwt.hmac_secret={SECRET}",
        "cfg:auth.jwt.auto_sign_up=true",
        "cfg:auth.jwt.url_login=true",
        "cfg:auth.jwt.username_claim=login",
        "cfg:auth.jwt.email_claim=email",
        "cfg:auth.jwt.scope_claim=scope",
        "cfg:auth.jwt.role_attribute_path=role",
        "cfg:auth.jwt.groups_attribute_path=groups",
        "cfg:auth.jwt.allow_assign_server_admin=true",
        log=Path(tmp_path_factory.mktemp("openapi-live-log")) / "serve.log",
    )
    try:
        yield Live(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    """The document as the live server serves it."""
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_url(live.server.url("/api/openapi.json"), config=config)


def test_live_document_is_the_package_document(api_schema: Any) -> None:
    assert api_schema.raw_schema == build_document()


def _run(
    api_schema: Any,
    live: Live,
    label: str,
    fixed: dict[str, Any] | None = None,
    prepare: Callable[[Case], None] | None = None,
) -> None:
    """``MAX_EXAMPLES`` positive and negative cases of one operation, each validated.

    ``fixed``: values every case carries (``headers``, ``cookies``, ``query``), which
    schemathesis then neither generates nor negates; ``prepare`` adjusts a case first.
    """
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, **(fixed or {})),
        operation.as_strategy(GenerationMode.NEGATIVE, **(fixed or {})),
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Case) -> None:
        if prepare is not None:
            prepare(case)
        case.call_and_validate(base_url=live.base_url)

    check()


def _as_admin(case: Case, live: Live) -> None:
    """Aim half of the valid user ids and assertion names at real ones, so that 200s happen
    too; the admin never disables, deletes or demotes itself (the run needs it)."""
    if case.operation.path != "/login" and case.query:
        case.query.pop("auth_token", None)  # a second token would be refused
    params = case.path_parameters or {}
    user_id = params.get("user_id")
    if isinstance(user_id, int):
        aimed = user_id % 2 == 0 or (user_id == live.admin_id and case.method != "GET")
        if aimed:
            params["user_id"] = live.new_user() if case.method == "DELETE" else live.target_id
    name = params.get("name")
    if isinstance(name, str) and len(name) % 2 == 0:
        params["name"] = sorted(ASSERTIONS)[ord(name[:1] or "a") % len(ASSERTIONS)]


@pytest.mark.parametrize("label", OPERATIONS)
def test_generated_credentials(api_schema: Any, live: Live, label: str) -> None:
    """Credentials as generated from the security schemes: none, or junk."""
    _run(api_schema, live, label)


@pytest.mark.parametrize("label", OPERATIONS)
def test_admin_jwt(api_schema: Any, live: Live, label: str) -> None:
    fixed: dict[str, Any] = {"headers": live.bearer}
    if label == "GET /login":
        fixed["query"] = {"auth_token": live.token}
    _run(api_schema, live, label, fixed, lambda case: _as_admin(case, live))


@pytest.mark.parametrize("label", OPERATIONS)
def test_admin_session(api_schema: Any, live: Live, label: str) -> None:
    def prepare(case: Case) -> None:
        for name in list(case.headers or {}):
            if name.lower() == "authorization":  # a JWT would win over the cookie
                del case.headers[name]
        case.cookies = {**(case.cookies or {}), "authsvc_session": live.session_cookie()}
        _as_admin(case, live)

    _run(api_schema, live, label, {"cookies": {"authsvc_session": "set per case"}}, prepare)
