"""User provisioning over HTTP with real signed tokens: lookup_only, auto_sign_up, a third party.

Covers finding users by their (jwt, sub) link, sign-up, syncing changed
claims, linking pre-existing accounts (``link_existing_users``), disabled
users, forward-auth writing nothing when nothing changed, atomicity of
user + link + session, and concurrent first logins on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey
from sqlalchemy import event, func, select
from tokens import NOW, FakeClock, claims, jwks, public_jwk, sign

from authsvc.config import ConfigError
from authsvc.errors import ServiceUnavailable
from authsvc.identity import Identity
from authsvc.models import AuthLink, Session, User
from authsvc.users import JWT_PROVIDER, SyncPolicy, UserStore, find_user, update_user

HEADER = "X-JWT-Assertion"
KID = "provisioning-test"
JWT = {
    "username_claim": "preferred_username",
    "email_claim": "email",
    "role_attribute_path": "roles",
    "groups_attribute_path": "groups",
}
SIGN_UP = {**JWT, "auto_sign_up": "true"}
USER_JSON_KEYS = {"id", "login", "email", "name", "role", "isServerAdmin", "groups", "authModule"}


@dataclass(frozen=True)
class Signer:
    key: ECKey
    jwks_file: Path

    def token(self, **extra: Any) -> str:
        return sign(self.key, "ES256", claims(**extra), kid=KID)


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    key = ECKey.generate_key("P-256")
    path = tmp_path_factory.mktemp("provisioning-keys") / "jwks.json"
    path.write_text(json.dumps(jwks(public_jwk(key, KID))))
    return Signer(key, path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> dict[str, dict[str, str]]:
    """Sections selecting the database: the home path's SQLite file, or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return {}
    return {"database": {"url": request.getfixturevalue("pg_url")}}


BuildApp = Callable[..., Flask]


@pytest.fixture
def build(make_app: Callable[..., Flask], signer: Signer) -> BuildApp:
    """``build(jwt_values, database={...})``; apps built in one test share one database."""

    def make(jwt: dict[str, str] | None = None, **sections: dict[str, str]) -> Flask:
        values = {
            "auth.jwt": {
                "enabled": "true",
                "header_name": HEADER,
                "jwk_set_file": str(signer.jwks_file),
                **(jwt if jwt is not None else SIGN_UP),
            },
            **sections,
        }
        return make_app(values, clock=FakeClock())

    return make


def login(client: FlaskClient, token: str) -> Any:
    return client.post("/api/login/jwt", headers={HEADER: token})


def verify(client: FlaskClient, token: str) -> Any:
    return client.get("/api/auth/verify", headers={HEADER: token})


def assert_error(response: Any, status: int, message_id: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id
    return body


def counts(app: Flask) -> tuple[int, int, int]:
    """(users, links, sessions) in the app's database."""
    with app.extensions["authsvc"].db() as db:
        return tuple(
            db.scalar(select(func.count()).select_from(model))
            for model in (User, AuthLink, Session)
        )


def links(app: Flask) -> list[tuple[str, str, int]]:
    with app.extensions["authsvc"].db() as db:
        rows = db.scalars(select(AuthLink).order_by(AuthLink.id)).all()
        return [(r.provider, r.subject, r.user_id) for r in rows]


def stored(app: Flask, ref: str | int) -> User:
    with app.extensions["authsvc"].db() as db:
        user = find_user(db, ref)
        assert user is not None
        return user


def insert_unlinked(app: Flask, login_name: str, email: str | None, name: str = "") -> int:
    """An account that exists before any token: made by an admin, another module, an import."""
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        user = User(
            login=login_name,
            email=email,
            name=name,
            role="Viewer",
            is_server_admin=False,
            groups=[],
            disabled=False,
            auth_module="",
            created_at=svc.clock(),
            updated_at=svc.clock(),
        )
        db.add(user)
        db.flush()
        return user.id


def make_server_admin(app: Flask, client: FlaskClient, signer: Signer) -> dict[str, str]:
    """Sign up ``root``, make it a server admin; headers that authenticate as it."""
    headers = {HEADER: signer.token(sub="root", preferred_username="root")}
    assert client.post("/api/login/jwt", headers=headers).status_code == 200
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        root = find_user(db, "root")
        assert root is not None
        update_user(db, root, clock=svc.clock, is_server_admin=True)
    return headers


@contextlib.contextmanager
def sql_writes(app: Flask) -> Iterator[list[str]]:
    """Every INSERT, UPDATE or DELETE the app's engine sends while the block runs."""
    engine = app.extensions["authsvc"].engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# ------------------------------------------------------------------------------------- lookup_only
def test_lookup_only_is_the_default_and_refuses_unknown_users(
    build: BuildApp, signer: Signer
) -> None:
    app = build(JWT)
    assert app.extensions["authsvc"].settings.jwt.user_provisioner == "lookup_only"
    client = app.test_client()
    token = signer.token(sub="stranger", preferred_username="stranger")
    for response in (login(client, token), verify(client, token)):
        body = assert_error(response, 401, "user.sync.signup-disabled")
        assert "'stranger'" in body["reason"]
        assert "auto_sign_up" in body["reason"]
        assert "Set-Cookie" not in response.headers
    assert counts(app) == (0, 0, 0)


def test_lookup_only_finds_user_signed_up_by_another_app(
    build: BuildApp, signer: Signer, database: dict[str, dict[str, str]]
) -> None:
    signing_up = build(SIGN_UP, **database)
    first = login(signing_up.test_client(), signer.token(sub="s-1", preferred_username="early"))
    assert first.status_code == 200

    lookup = build(JWT, **database)
    response = login(lookup.test_client(), signer.token(sub="s-1", preferred_username="early"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == first.get_json()["id"]
    assert counts(lookup) == (1, 1, 2)


def test_lookup_only_finds_user_created_with_user_store(build: BuildApp, signer: Signer) -> None:
    app = build(JWT)
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        store = UserStore(db, SyncPolicy(False, False, False), svc.clock)
        created = store.create(
            Identity(
                subject="pre-sub",
                login="pre",
                email="pre@x.io",
                name="Pre",
                role="Editor",
                role_from_token=True,
                is_server_admin=None,
                groups=("a",),
                groups_from_token=True,
            ),
            "Viewer",
        )
        user_id = created.id
    # Found by the (jwt, sub) link even though the token now names another login.
    token = signer.token(sub="pre-sub", preferred_username="renamed", roles="Editor", groups=["a"])
    response = login(app.test_client(), token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["login"], body["email"], body["role"]) == (
        user_id,
        "renamed",
        "pre@x.io",
        "Editor",
    )
    assert links(app) == [(JWT_PROVIDER, "pre-sub", user_id)]


# ------------------------------------------------------------------------------------ auto_sign_up
def test_auto_sign_up_creates_user_link_and_session(
    build: BuildApp, signer: Signer, database: dict[str, dict[str, str]]
) -> None:
    app = build(SIGN_UP, **database)
    assert app.extensions["authsvc"].settings.jwt.user_provisioner == "auto_sign_up"
    client = app.test_client()
    token = signer.token(
        sub="new-sub",
        preferred_username="newbie",
        email="newbie@x.io",
        name="New Bie",
        roles="Editor",
        groups=["ops"],
    )
    response = login(client, token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == USER_JSON_KEYS
    assert body == {
        "id": body["id"],
        "login": "newbie",
        "email": "newbie@x.io",
        "name": "New Bie",
        "role": "Editor",
        "isServerAdmin": False,
        "groups": ["ops"],
        "authModule": "authjwt",
    }
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("authsvc_session=")
    assert "HttpOnly" in cookie
    assert links(app) == [(JWT_PROVIDER, "new-sub", body["id"])]
    assert counts(app) == (1, 1, 1)
    assert client.get("/api/user").get_json() == body

    again = login(app.test_client(), token)
    assert again.get_json()["id"] == body["id"]
    assert counts(app) == (1, 1, 2)


def test_auto_sign_up_new_user_defaults(build: BuildApp, signer: Signer) -> None:
    app = build(SIGN_UP, users={"auto_assign_role": "Editor"})
    body = login(app.test_client(), signer.token(sub="d", email="only@x.io")).get_json()
    assert (body["login"], body["email"], body["name"], body["role"], body["groups"]) == (
        "only@x.io",
        "only@x.io",
        "",
        "Editor",
        [],
    )


@pytest.mark.parametrize("provisioner", ["auto_sign_up", "lookup_only"])
def test_login_syncs_changed_claims(build: BuildApp, signer: Signer, provisioner: str) -> None:
    signing_up = build(SIGN_UP)
    before = signer.token(
        sub="sync-sub",
        preferred_username="old",
        email="old@x.io",
        name="Old Name",
        roles="Viewer",
        groups=["a"],
    )
    created = login(signing_up.test_client(), before).get_json()

    app = signing_up if provisioner == "auto_sign_up" else build(JWT)
    clock: FakeClock = app.extensions["authsvc"].clock
    clock.advance(120)
    after = signer.token(
        sub="sync-sub",
        preferred_username="new",
        email="new@x.io",
        name="New Name",
        roles="Admin",
        groups=["b", "c"],
    )
    response = login(app.test_client(), after)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        **created,
        "login": "new",
        "email": "new@x.io",
        "name": "New Name",
        "role": "Admin",
        "groups": ["b", "c"],
    }
    user = stored(app, created["id"])
    assert user.updated_at == NOW + 120
    assert counts(app) == (1, 1, 2)

    # Forward-auth resolves the same way: a later change shows up there too.
    changed = verify(app.test_client(), signer.token(sub="sync-sub", preferred_username="newer"))
    assert changed.headers["X-Auth-User"] == "newer"


def test_sync_keeps_values_the_token_no_longer_carries(build: BuildApp, signer: Signer) -> None:
    """Like Grafana: an absent email, name or role is not a reason to erase the stored one."""
    app = build(SIGN_UP)
    client = app.test_client()
    full = signer.token(
        sub="k", preferred_username="k", email="k@x.io", name="Kay", roles="Editor", groups=["g"]
    )
    login(client, full)
    body = login(client, signer.token(sub="k", preferred_username="k", groups=["g"])).get_json()
    assert (body["email"], body["name"], body["role"]) == ("k@x.io", "Kay", "Editor")


def test_sync_refuses_a_login_taken_by_another_user(build: BuildApp, signer: Signer) -> None:
    app = build(SIGN_UP)
    client = app.test_client()
    login(client, signer.token(sub="one", preferred_username="one"))
    login(client, signer.token(sub="two", preferred_username="two"))
    response = login(client, signer.token(sub="two", preferred_username="one"))
    body = assert_error(response, 409, "user.sync.conflict")
    assert "login 'one'" in body["reason"]
    assert stored(app, "two").login == "two"


# ----------------------------------------------------------------------------------------- linking
@pytest.mark.parametrize("provisioner", ["auto_sign_up", "lookup_only"])
@pytest.mark.parametrize(
    ("existing", "token_claims"),
    [
        (("alice", None), {"preferred_username": "alice"}),
        (("Alice", None), {"preferred_username": "alice"}),
        (("someone", "alice@x.io"), {"preferred_username": "alice", "email": "alice@x.io"}),
        (("someone", "ALICE@x.io"), {"email": "alice@x.io"}),
    ],
    ids=["same-login", "same-login-other-case", "same-email", "same-email-other-case"],
)
def test_pre_existing_account_is_a_conflict_without_link_existing_users(
    build: BuildApp,
    signer: Signer,
    provisioner: str,
    existing: tuple[str, str | None],
    token_claims: dict[str, str],
) -> None:
    app = build({**JWT, "auto_sign_up": str(provisioner == "auto_sign_up").lower()})
    user_id = insert_unlinked(app, *existing)
    client = app.test_client()
    token = signer.token(sub="idp-alice", **token_claims)
    for response in (login(client, token), verify(client, token)):
        body = assert_error(response, 409, "user.sync.conflict")
        assert "to another account" in body["reason"]
        # CONTRACT §7: a 409 never reveals another account's id.
        assert str(user_id) not in body["reason"]
        assert "link_existing_users = true" in body["reason"]
    assert counts(app) == (1, 0, 0)


@pytest.mark.parametrize("provisioner", ["auto_sign_up", "lookup_only"])
@pytest.mark.parametrize(
    ("existing", "token_claims"),
    [
        (("alice", None), {"preferred_username": "alice", "email": "alice@x.io"}),
        (("Alice", None), {"preferred_username": "alice"}),
        (("someone", "alice@x.io"), {"preferred_username": "alice", "email": "alice@x.io"}),
    ],
    ids=["same-login", "same-login-other-case", "same-email"],
)
def test_pre_existing_account_is_linked_with_link_existing_users(
    build: BuildApp,
    signer: Signer,
    provisioner: str,
    existing: tuple[str, str | None],
    token_claims: dict[str, str],
) -> None:
    app = build(
        {
            **JWT,
            "auto_sign_up": str(provisioner == "auto_sign_up").lower(),
            "link_existing_users": "true",
        }
    )
    user_id = insert_unlinked(app, *existing)
    client = app.test_client()
    response = login(client, signer.token(sub="idp-alice", name="Alice A", **token_claims))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["login"], body["name"]) == (user_id, "alice", "Alice A")
    assert links(app) == [(JWT_PROVIDER, "idp-alice", user_id)]
    # From now on the link finds it, whatever login the token carries.
    renamed = login(client, signer.token(sub="idp-alice", preferred_username="alice2"))
    assert renamed.get_json()["id"] == user_id
    assert counts(app) == (1, 1, 2)


def test_link_existing_users_refuses_two_different_holders(build: BuildApp, signer: Signer) -> None:
    app = build({**SIGN_UP, "link_existing_users": "true"})
    by_login = insert_unlinked(app, "alice", None)
    by_email = insert_unlinked(app, "other", "alice@x.io")
    token = signer.token(sub="idp", preferred_username="alice", email="alice@x.io")
    body = assert_error(login(app.test_client(), token), 409, "user.sync.conflict")
    assert "login 'alice' and email 'alice@x.io' belong to another account" in body["reason"]
    assert str(by_login) not in body["reason"] and str(by_email) not in body["reason"]
    assert counts(app) == (2, 0, 0)


def test_link_existing_users_does_not_adopt_an_account_linked_elsewhere(
    build: BuildApp, signer: Signer
) -> None:
    app = build({**SIGN_UP, "link_existing_users": "true"})
    client = app.test_client()
    owner = login(client, signer.token(sub="owner", preferred_username="alice")).get_json()
    response = login(client, signer.token(sub="intruder", preferred_username="alice"))
    assert_error(response, 409, "user.sync.conflict")
    assert links(app) == [(JWT_PROVIDER, "owner", owner["id"])]


# ---------------------------------------------------------------------------------- disabled users
def test_user_disabled_through_admin_api(build: BuildApp, signer: Signer) -> None:
    app = build(SIGN_UP)
    client = app.test_client()
    admin = make_server_admin(app, client, signer)
    token = signer.token(sub="d-sub", preferred_username="dora", name="Dora")
    user_session = app.test_client()
    user_id = login(user_session, token).get_json()["id"]

    patched = client.patch(f"/api/admin/users/{user_id}", json={"disabled": True}, headers=admin)
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["disabled"] is True

    renamed = signer.token(sub="d-sub", preferred_username="dora", name="Changed")
    for response in (
        login(app.test_client(), token),
        verify(app.test_client(), renamed),
        user_session.get("/api/user"),  # the session from before
        user_session.get("/api/auth/verify"),
    ):
        body = assert_error(response, 401, "identity.disabled")
        assert "dora" in body["reason"]
    assert stored(app, user_id).name == "Dora"  # the refused login's sync was rolled back
    assert counts(app) == (2, 2, 2)

    client.patch(f"/api/admin/users/{user_id}", json={"disabled": False}, headers=admin)
    assert login(app.test_client(), token).status_code == 200


def test_lookup_only_user_disabled_with_update_user(build: BuildApp, signer: Signer) -> None:
    signing_up = build(SIGN_UP)
    token = signer.token(sub="e-sub", preferred_username="eve")
    user_id = login(signing_up.test_client(), token).get_json()["id"]
    app = build(JWT)
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        user = find_user(db, user_id)
        assert user is not None
        update_user(db, user, clock=svc.clock, disabled=True)
    assert_error(login(app.test_client(), token), 401, "identity.disabled")
    assert_error(verify(app.test_client(), token), 401, "identity.disabled")


# ----------------------------------------------------------------------------- forward auth writes
def test_verify_writes_nothing_when_nothing_changed(
    build: BuildApp, signer: Signer, database: dict[str, dict[str, str]]
) -> None:
    app = build(SIGN_UP, **database)
    token = signer.token(sub="v", preferred_username="vic", roles="Editor", groups=["g"])
    user_id = login(app.test_client(), token).get_json()["id"]
    before = stored(app, user_id).updated_at
    app.extensions["authsvc"].clock.advance(300)

    client = app.test_client()
    with sql_writes(app) as writes:
        for _ in range(3):
            response = verify(client, token)
            assert response.status_code == 200, response.get_json()
            assert "Set-Cookie" not in response.headers
    assert writes == []
    assert stored(app, user_id).updated_at == before
    assert counts(app) == (1, 1, 1)

    # A change is written (once), and still no session is created.
    with sql_writes(app) as writes:
        renamed = signer.token(sub="v", preferred_username="vic", name="Vic", roles="Editor")
        assert verify(client, renamed).headers["X-Auth-Name"] == "Vic"
    assert [w.split()[0].upper() for w in writes] == ["UPDATE"]
    assert stored(app, user_id).updated_at == before + 300
    assert counts(app) == (1, 1, 1)


def test_verify_signs_up_without_a_session(build: BuildApp, signer: Signer) -> None:
    app = build(SIGN_UP)
    response = verify(app.test_client(), signer.token(sub="fresh", preferred_username="fresh"))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert counts(app) == (1, 1, 0)


# --------------------------------------------------------------------------------------- atomicity
class FailingSessionStore:
    """The session store as a neighbour that breaks after writing its row in the login's tx."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.real.create(*args, **kwargs)
        raise ServiceUnavailable("session store is down")


def test_failed_session_creation_leaves_no_user_or_link(
    build: BuildApp, signer: Signer, database: dict[str, dict[str, str]]
) -> None:
    app = build(SIGN_UP, **database)
    lifecycle = app.extensions["authsvc"].sessions
    real = lifecycle.store
    lifecycle.store = failing = FailingSessionStore(real)
    token = signer.token(sub="atomic", preferred_username="atom", email="atom@x.io")

    response = login(app.test_client(), token)
    assert_error(response, 503, "service.unavailable")
    assert "Set-Cookie" not in response.headers
    assert failing.calls == 1
    assert counts(app) == (0, 0, 0)

    lifecycle.store = real
    created = login(app.test_client(), token).get_json()
    assert counts(app) == (1, 1, 1)

    # A sync in the same failed transaction is rolled back too.
    lifecycle.store = failing
    renamed = signer.token(sub="atomic", preferred_username="atom", name="Renamed")
    assert_error(login(app.test_client(), renamed), 503, "service.unavailable")
    assert stored(app, created["id"]).name == ""
    assert counts(app) == (1, 1, 1)


# ------------------------------------------------------------------------------------- concurrency
LOGINS = 50


def test_concurrent_first_logins_make_one_user(
    build: BuildApp, signer: Signer, database: dict[str, dict[str, str]]
) -> None:
    app = build(SIGN_UP, **database)
    # Distinct tokens (iat differs), one subject: the verified-token cache cannot serialise them.
    tokens = [
        signer.token(sub="herd", preferred_username="herd", email="herd@x.io", iat=NOW - i)
        for i in range(LOGINS)
    ]
    barrier = threading.Barrier(LOGINS)
    results: list[tuple[int, Any]] = [(0, None)] * LOGINS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=30)
            response = login(client, tokens[i])
            results[i] = (response.status_code, response.get_json())
        except BaseException as exc:  # surfaced below, with the thread's index
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(LOGINS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert counts(app)[:2] == (1, 1)
    (user_id,) = {body["id"] for status, body in results if status == 200}
    assert links(app) == [(JWT_PROVIDER, "herd", user_id)]
    refused = [body for status, body in results if status != 200]
    assert refused == []
    assert counts(app) == (1, 1, LOGINS)


def test_first_login_racing_a_committed_sign_up(
    build: BuildApp,
    signer: Signer,
    database: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind the 50-login test, made deterministic.

    The real ``UserStore.linked`` runs; the wrapper only holds the loser's
    request after its link lookup missed, until the winner's login committed.
    """
    app = build(SIGN_UP, **database)
    # On SQLite one process's threads take turns writing (Authenticator's write lock),
    # so this race needs two processes; two processes share no lock, as here.
    monkeypatch.setattr(app.extensions["authsvc"].authn, "_write_lock", contextlib.nullcontext())
    token = signer.token(sub="race", preferred_username="race", email="race@x.io")
    loser_missed, winner_done = threading.Event(), threading.Event()
    original = UserStore.linked

    def linked(self: UserStore, subject: str, provider: str = JWT_PROVIDER) -> User | None:
        user = original(self, subject, provider)
        if (
            user is None
            and threading.current_thread().name == "loser"
            and not loser_missed.is_set()
        ):
            loser_missed.set()
            assert winner_done.wait(30)
        return user

    monkeypatch.setattr(UserStore, "linked", linked)
    outcome: dict[str, Any] = {}
    loser = threading.Thread(
        target=lambda: outcome.update(r=login(app.test_client(), token)), name="loser"
    )
    loser.start()
    assert loser_missed.wait(30)
    winner = login(app.test_client(), token)
    winner_done.set()
    loser.join(30)
    assert winner.status_code == 200
    response = outcome["r"]
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == winner.get_json()["id"]
    assert counts(app) == (1, 1, 2)


# ------------------------------------------------------------------------- third-party provisioner
PROVISIONER_MODULE = "authsvc_test_thirdparty_provisioner"
PROVISIONER_SOURCE = """
from dataclasses import replace


class PrefixingProvisioner:
    \"\"\"Signs everybody up as an Editor whose login carries a prefix from its own section.\"\"\"

    seen = []

    def __init__(self, prefix):
        self.prefix = prefix

    @classmethod
    def from_config(cls, context):
        return cls(context.settings.raw.get("thirdparty", {}).get("prefix", "ext-"))

    def provision(self, identity, users):
        type(self).seen.append(identity.subject)
        user = users.linked(identity.subject)
        if user is None:
            user = users.create(replace(identity, login=self.prefix + identity.login), "Editor")
        return user
"""


@pytest.fixture
def thirdparty_provisioner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution registering ``custom`` in authsvc.provisioners, visible on sys.path only."""
    site = tmp_path / "site"
    info = site / "authsvc_thirdparty-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: authsvc-thirdparty\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[authsvc.provisioners]\ncustom = {PROVISIONER_MODULE}:PrefixingProvisioner\n"
    )
    (site / f"{PROVISIONER_MODULE}.py").write_text(textwrap.dedent(PROVISIONER_SOURCE))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop(PROVISIONER_MODULE, None)


@pytest.mark.usefixtures("thirdparty_provisioner")
def test_third_party_provisioner_from_entry_point(build: BuildApp, signer: Signer) -> None:
    app = build({**JWT, "user_provisioner": "custom"})
    assert app.extensions["authsvc"].settings.jwt.user_provisioner == "custom"
    client = app.test_client()
    token = signer.token(sub="tp", preferred_username="third")
    response = login(client, token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["login"], body["role"]) == ("ext-third", "Editor")
    assert sys.modules[PROVISIONER_MODULE].PrefixingProvisioner.seen == ["tp"]
    assert counts(app) == (1, 1, 1)

    # The caller's rules still hold around a third party: disabled users stay out.
    svc = app.extensions["authsvc"]
    with svc.db.begin() as db:
        user = find_user(db, body["id"])
        assert user is not None
        update_user(db, user, clock=svc.clock, disabled=True)
    assert_error(login(client, token), 401, "identity.disabled")


def test_unknown_provisioner_is_a_config_error(
    make_settings: Callable[..., Any], signer: Signer
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        make_settings(
            {
                "auth.jwt": {
                    "enabled": "true",
                    "header_name": HEADER,
                    "jwk_set_file": str(signer.jwks_file),
                    "user_provisioner": "nope",
                }
            }
        )
    (problem,) = excinfo.value.problems
    assert "[auth.jwt] user_provisioner:" in problem
    assert "auto_sign_up" in problem and "lookup_only" in problem
