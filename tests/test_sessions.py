"""Session stores under the lifecycle, driven over HTTP with a fake clock.

Each test runs against every store: ``sql`` on SQLite, ``sql`` on the real
PostgreSQL server and ``redis`` on the real Redis server. Tokens are real
ES256 JWTs verified against a JWKS file; time moves by hand, never by sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import MetaData, select
from tokens import NOW, SIGNING_KID, FakeClock
from werkzeug.test import TestResponse

from authsvc.app import Service
from authsvc.sessions.base import token_hash
from authsvc.sessions.lifecycle import ROTATION_GRACE

COOKIE = "authsvc_session"
JWT_HEADER = "X-JWT-Assertion"
KID = SIGNING_KID
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


# --------------------------------------------------------------------------- keys and tokens
def jwt_values(jwks: Path) -> dict[str, dict[str, str]]:
    return {
        "auth.jwt": {
            "enabled": "true",
            "header_name": JWT_HEADER,
            "jwk_set_file": str(jwks),
            "auto_sign_up": "true",
            "username_claim": "sub",
            "email_claim": "email",
            "role_attribute_path": "role",
            "allow_assign_server_admin": "true",
            "url_login": "true",
        }
    }


def merge(*layers: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


# --------------------------------------------------------------------------- stores
STORES = [
    pytest.param("sqlite", id="sql-sqlite"),
    pytest.param("postgres", id="sql-postgres", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@dataclass
class StoreUnderTest:
    name: str
    values: dict[str, dict[str, str]]
    redis_db: int | None = None


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> StoreUnderTest:
    name: str = request.param
    if name == "postgres":
        url = request.getfixturevalue("pg_url")
        return StoreUnderTest(name, {"database": {"type": "postgres", "url": url}})
    if name == "redis":
        db = request.getfixturevalue("redis_db")
        values = {
            "auth": {"session_store": "redis"},
            "remote_cache": {"connstr": f"addr=127.0.0.1:6379,db={db}"},
        }
        return StoreUnderTest(name, values, redis_db=db)
    return StoreUnderTest(name, {})


# --------------------------------------------------------------------------- the harness
def session_cookie(response: TestResponse) -> dict[str, Any] | None:
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


@dataclass
class Harness:
    """One app (one "instance" of the service) and the clock every part of it reads."""

    app: Flask
    clock: FakeClock
    key: ECKey
    store: StoreUnderTest

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

    def login(self, sub: str = "alice", **claims: Any) -> str:
        response = self.client.post(
            "/api/login/jwt", headers={JWT_HEADER: self.token(sub, **claims)}
        )
        assert response.status_code == 200, response.get_json()
        cookie = session_cookie(response)
        assert cookie is not None
        return str(cookie["value"])

    def call(self, session: str, path: str = "/api/user", method: str = "GET") -> TestResponse:
        return self.client.open(path, method=method, headers={"Cookie": f"{COOKIE}={session}"})

    def stored(self) -> str:
        """Everything the store holds, as text: what a stolen copy of it would reveal."""
        if self.store.redis_db is not None:
            r = redis.Redis(host="127.0.0.1", port=6379, db=self.store.redis_db)
            try:
                parts: list[Any] = []
                for key in r.scan_iter():
                    kind = r.type(key)
                    if kind == b"hash":
                        value: Any = r.hgetall(key)
                    elif kind == b"set":
                        value = r.smembers(key)
                    else:
                        value = r.get(key)
                    parts.append((key, value))
                return repr(parts)
            finally:
                r.close()
        engine = self.svc.engine
        meta = MetaData()
        meta.reflect(bind=engine)
        with engine.connect() as conn:
            dump = repr([list(conn.execute(select(t))) for t in meta.sorted_tables])
        if engine.dialect.name == "sqlite":
            db_file = Path(str(engine.url.database))
            for path in (db_file, db_file.with_name(db_file.name + "-wal")):
                if path.exists():
                    dump += path.read_bytes().decode("latin-1")
        return dump

    def session_count(self) -> int:
        return len(self.svc.sessions.store.list())


def expect_error(response: TestResponse, status: int, message_id: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    return dict(body)


@pytest.fixture
def harness(
    make_app: Callable[..., Flask],
    store: StoreUnderTest,
    signing_key: ECKey,
    jwks_file: Path,
) -> Iterator[Callable[..., Harness]]:
    """``harness(auth={...})`` builds an app on the store under test; call again to 'restart'."""
    built: list[Harness] = []

    def build(clock: FakeClock | None = None, **sections: dict[str, str]) -> Harness:
        values = merge(store.values, jwt_values(jwks_file), sections)
        clock = clock or FakeClock()
        h = Harness(make_app(values, clock=clock), clock, signing_key, store)
        built.append(h)
        return h

    yield build
    for h in built:
        h.svc.close()


# ------------------------------------------------------------------ create, lookup, revoke
def test_login_creates_a_session_that_lookup_finds_and_revoke_ends(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    session = h.login("alice")

    me = h.call(session)
    assert me.status_code == 200
    assert me.get_json()["login"] == "alice"

    record = h.svc.sessions.store.lookup(session)
    assert record is not None
    assert record.user_id == me.get_json()["id"]
    assert record.subject == "alice"
    assert not record.matched_previous
    assert record.expires_at == h.clock.now + 30 * DAY
    assert [r.id for r in h.svc.sessions.store.list(record.user_id)] == [record.id]

    assert h.svc.sessions.store.revoke(record.id) is True
    assert h.svc.sessions.store.lookup(session) is None
    assert h.svc.sessions.store.revoke(record.id) is False
    expect_error(h.call(session), 401, "session.invalid")


def test_an_unknown_session_cookie_is_session_invalid(harness: Callable[..., Harness]) -> None:
    h = harness()
    h.login("alice")

    body = expect_error(h.call("not-a-session-token"), 401, "session.invalid")
    assert "not found" in body["reason"]


def test_logout_revokes_only_that_session(harness: Callable[..., Harness]) -> None:
    h = harness()
    first, second = h.login("alice"), h.login("alice")

    assert h.call(first, "/api/logout", "POST").status_code == 200

    expect_error(h.call(first), 401, "session.invalid")
    assert h.call(second).status_code == 200


def test_revoking_a_users_sessions_ends_all_of_them_and_no_one_elses(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    admin = h.login("root", role="ServerAdmin")
    alice = [h.login("alice") for _ in range(3)]
    bob = h.login("bob")
    alice_id = h.call(alice[0]).get_json()["id"]

    response = h.call(admin, f"/api/admin/users/{alice_id}/sessions", "DELETE")

    assert response.status_code == 200
    assert response.get_json()["count"] == 3
    for session in alice:
        expect_error(h.call(session), 401, "session.invalid")
    assert h.call(bob).status_code == 200
    assert h.call(admin).status_code == 200
    assert h.svc.sessions.store.list(alice_id) == []


def test_only_the_sha256_of_a_session_token_is_stored(harness: Callable[..., Harness]) -> None:
    h = harness()
    old = h.login("alice")
    h.clock.advance(10 * MINUTE)
    new = session_cookie(h.call(old))
    assert new is not None
    tokens = [old, str(new["value"])]

    stored = h.stored()

    for token in tokens:
        assert token not in stored
        assert token.encode().hex() not in stored
    # The positive control: the hashes are there, so the dump did see the sessions.
    for token in tokens:
        assert token_hash(token) in stored


# --------------------------------------------------------------------------- rotation
def test_rotation_sets_a_new_cookie_and_the_old_one_works_for_the_grace_period(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    old = h.login("alice")
    h.clock.advance(10 * MINUTE - 1)
    early = h.call(old)
    assert early.status_code == 200
    assert session_cookie(early) is None

    h.clock.advance(1)
    rotated = h.call(old)

    assert rotated.status_code == 200
    cookie = session_cookie(rotated)
    assert cookie is not None
    new = str(cookie["value"])
    assert new != old
    assert cookie["httponly"] is True
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == int(30 * DAY - 10 * MINUTE)

    h.clock.advance(ROTATION_GRACE)
    within = h.call(old)
    assert within.status_code == 200
    assert session_cookie(within) is None
    assert h.call(new).status_code == 200

    h.clock.advance(1)
    body = expect_error(h.call(old), 401, "session.invalid")
    assert "rotation" in body["reason"]
    after = h.call(new)
    assert after.status_code == 200
    assert session_cookie(after) is None


def test_a_token_two_rotations_old_is_refused(
    harness: Callable[..., Harness], store: StoreUnderTest, request: pytest.FixtureRequest
) -> None:
    h = harness()
    first = h.login("alice")
    h.clock.advance(10 * MINUTE)
    second = session_cookie(h.call(first))
    assert second is not None
    h.clock.advance(10 * MINUTE)
    third = session_cookie(h.call(str(second["value"])))
    assert third is not None

    expect_error(h.call(first), 401, "session.invalid")
    assert h.call(str(second["value"])).status_code == 200  # still in its grace period
    assert h.call(str(third["value"])).status_code == 200


def test_sequential_requests_with_the_old_token_rotate_once(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    old = h.login("alice")
    h.clock.advance(11 * MINUTE)

    first, second = h.call(old), h.call(old)

    assert first.status_code == second.status_code == 200
    assert session_cookie(first) is not None
    assert session_cookie(second) is None


def test_concurrent_rotation_issues_exactly_one_new_token(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness()
    old = h.login("alice")
    h.clock.advance(11 * MINUTE)
    store = h.svc.sessions.store
    lookup = store.lookup
    both_looked_up = threading.Barrier(2, timeout=10)

    def lookup_then_wait(token: str) -> Any:
        record = lookup(token)
        both_looked_up.wait()  # both requests saw the session before either rotates it
        return record

    monkeypatch.setattr(store, "lookup", lookup_then_wait)
    responses: list[TestResponse] = []
    threads = [threading.Thread(target=lambda: responses.append(h.call(old))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    monkeypatch.undo()

    assert [r.status_code for r in responses] == [200, 200]
    cookies = [c for c in map(session_cookie, responses) if c is not None]
    assert len(cookies) == 1
    new = str(cookies[0]["value"])
    record = store.lookup(new)
    assert record is not None and not record.matched_previous
    assert h.call(new).status_code == 200
    assert h.call(old).status_code == 200  # the loser's token is the grace-period one
    assert len(store.list()) == 1


def test_rotation_is_off_when_the_interval_is_zero(harness: Callable[..., Harness]) -> None:
    h = harness(auth={"token_rotation_interval_minutes": "0"})
    session = h.login("alice")
    for _ in range(5):
        h.clock.advance(6 * HOUR)
        response = h.call(session)
        assert response.status_code == 200
        assert session_cookie(response) is None


# --------------------------------------------------------------------------- expiry
def test_an_idle_session_expires(harness: Callable[..., Harness]) -> None:
    h = harness(
        auth={
            "login_maximum_inactive_lifetime_duration": "30m",
            "token_rotation_interval_minutes": "0",
        }
    )
    session = h.login("alice")
    for _ in range(4):  # activity keeps it alive well past 30 minutes
        h.clock.advance(20 * MINUTE)
        assert h.call(session).status_code == 200

    h.clock.advance(30 * MINUTE)

    body = expect_error(h.call(session), 401, "session.invalid")
    assert "idle" in body["reason"]


def test_an_idle_session_expires_with_rotation_on(harness: Callable[..., Harness]) -> None:
    h = harness(auth={"login_maximum_inactive_lifetime_duration": "30m"})
    session = h.login("alice")
    for _ in range(3):
        h.clock.advance(25 * MINUTE)
        response = h.call(session)
        assert response.status_code == 200
        cookie = session_cookie(response)
        assert cookie is not None
        session = str(cookie["value"])

    h.clock.advance(30 * MINUTE)

    expect_error(h.call(session), 401, "session.invalid")


def test_a_session_ends_at_its_maximum_lifetime_however_active(
    harness: Callable[..., Harness],
) -> None:
    h = harness(auth={"login_maximum_lifetime_duration": "2h"})
    login = h.client.post("/api/login/jwt", headers={JWT_HEADER: h.token("alice")})
    cookie = session_cookie(login)
    assert cookie is not None
    assert int(cookie["max-age"]) == 2 * HOUR
    session = str(cookie["value"])
    for _ in range(7):  # 1h 45m of steady use, rotating along the way
        h.clock.advance(15 * MINUTE)
        response = h.call(session)
        assert response.status_code == 200
        renewed = session_cookie(response)
        if renewed is not None:
            session = str(renewed["value"])
            assert int(renewed["max-age"]) == 2 * HOUR - (h.clock.now - NOW)

    h.clock.advance(15 * MINUTE)

    body = expect_error(h.call(session), 401, "session.invalid")
    assert "maximum lifetime" in body["reason"]


@pytest.mark.parametrize("from_token", [True, False], ids=["from-token", "not-from-token"])
def test_session_lifetime_from_token_caps_the_session_at_the_tokens_exp(
    harness: Callable[..., Harness], from_token: bool
) -> None:
    # leeway = 0 isolates the cap from the leeway bug documented below.
    h = harness(
        **{"auth.jwt": {"session_lifetime_from_token": str(from_token).lower(), "leeway": "0"}}
    )
    login = h.client.post("/api/login/jwt", headers={JWT_HEADER: h.token("alice", ttl=900)})
    cookie = session_cookie(login)
    assert cookie is not None
    session = str(cookie["value"])
    assert int(cookie["max-age"]) == (900 if from_token else 30 * DAY)

    h.clock.advance(899)
    assert h.call(session).status_code == 200
    h.clock.advance(1)

    if from_token:
        body = expect_error(h.call(session), 401, "session.invalid")
        assert "token expiry" in body["reason"]
    else:
        assert h.call(session).status_code == 200


def test_session_lifetime_from_token_does_not_add_the_leeway(
    harness: Callable[..., Harness],
) -> None:
    h = harness(**{"auth.jwt": {"session_lifetime_from_token": "true"}})  # leeway = 60s
    login = h.client.post("/api/login/jwt", headers={JWT_HEADER: h.token("alice", ttl=900)})
    cookie = session_cookie(login)
    assert cookie is not None
    h.clock.advance(900)

    expect_error(h.call(str(cookie["value"])), 401, "session.invalid")
    assert int(cookie["max-age"]) == 900


# --------------------------------------------------------------------------- purge
def test_purge_deletes_ended_sessions_so_the_store_does_not_grow(
    harness: Callable[..., Harness],
) -> None:
    h = harness(
        auth={
            "login_maximum_lifetime_duration": "1h",
            "login_maximum_inactive_lifetime_duration": "30m",
        }
    )
    for _ in range(4):
        for user in ("alice", "bob", "carol"):
            h.login(user)
        assert h.session_count() == 3
        h.clock.advance(2 * HOUR)

        assert h.svc.purge_sessions() == 3
        assert h.session_count() == 0

    live = h.login("alice")
    h.clock.advance(10 * MINUTE)
    assert h.svc.purge_sessions() == 0
    assert h.call(live).status_code == 200


def test_purge_deletes_idle_sessions_and_keeps_active_ones(
    harness: Callable[..., Harness],
) -> None:
    h = harness(auth={"login_maximum_inactive_lifetime_duration": "30m"})
    idle, active = h.login("alice"), h.login("bob")
    for _ in range(2):
        h.clock.advance(20 * MINUTE)
        response = h.call(active)
        assert response.status_code == 200
        renewed = session_cookie(response)
        active = str(renewed["value"]) if renewed is not None else active

    assert h.svc.purge_sessions() == 1

    assert h.svc.sessions.store.lookup(idle) is None
    assert h.call(active).status_code == 200


def test_sessions_past_their_absolute_end_do_not_outlive_it(
    harness: Callable[..., Harness], store: StoreUnderTest
) -> None:
    """With the idle limit off, only the absolute end removes a session."""
    h = harness(
        auth={
            "login_maximum_lifetime_duration": "1h",
            "login_maximum_inactive_lifetime_duration": "0",
        }
    )
    h.login("alice")
    h.login("bob")

    if store.redis_db is not None:
        # Redis forgets them by itself: every key carries the session's end as its TTL.
        r = redis.Redis(host="127.0.0.1", port=6379, db=store.redis_db)
        try:
            keys = list(r.scan_iter(match="authsvc:sess:*")) + list(
                r.scan_iter(match="authsvc:tok:*")
            )
            assert len(keys) == 4
            for key in keys:
                assert 0 < r.pttl(key) <= HOUR * 1000
        finally:
            r.close()
        return
    h.clock.advance(HOUR)
    assert h.svc.purge_sessions() == 2
    assert h.session_count() == 0


# --------------------------------------------------------------------------- restart
def test_sessions_survive_a_restart_and_revocations_stay(
    harness: Callable[..., Harness],
) -> None:
    first = harness()
    kept = first.login("alice")
    revoked = first.login("alice")
    rotated_old = first.login("bob")
    assert first.call(revoked, "/api/logout", "POST").status_code == 200
    first.clock.advance(10 * MINUTE)
    cookie = session_cookie(first.call(rotated_old))
    assert cookie is not None
    rotated_new = str(cookie["value"])
    first.svc.close()

    second = harness(clock=first.clock)  # `authsvc serve` again, on the same database

    me = second.call(kept)
    assert me.status_code == 200
    assert me.get_json()["login"] == "alice"
    expect_error(second.call(revoked), 401, "session.invalid")
    assert second.call(rotated_new).status_code == 200
    assert second.call(rotated_old).status_code == 200  # the grace period is shared state
    second.clock.advance(ROTATION_GRACE + 1)
    expect_error(second.call(rotated_old), 401, "session.invalid")
