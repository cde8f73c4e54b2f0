"""CONTRACT §7, identity integrity: one regression test (or more) per finding of issue 7.

Each test is named for the finding it holds (``test_finding_N_...``). Apps come
from the factory on SQLite and, where users or outages are involved, on
PostgreSQL; tokens are real ES256 JWTs (``forge`` signs any bytes, for the
payloads no well-behaved library would produce).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from joserfc.jwk import ECKey
from sqlalchemy import func, select, text
from tcp_proxy import TcpProxy
from tokens import b64u, b64u_json, forge, jwks, public_jwk

from authsvc.cli import main as cli
from authsvc.config import Settings
from authsvc.db import MigrationError, make_engine, migrate
from authsvc.identifiers import unique_key
from authsvc.models import User
from authsvc.users import UserStore
from authsvc.verifier import MAX_JSON_DEPTH, Verifier
from authsvc.views.forward_auth import HEADER_BUDGET

HEADER = "X-JWT-Assertion"
KID = "integrity"
ROOT_URL = "https://auth.example.com/"
COOKIE = "authsvc_session"
JWT = {
    "enabled": "true",
    "header_name": HEADER,
    "auto_sign_up": "true",
    "username_claim": "login",
    "email_claim": "email",
    "groups_attribute_path": "groups",
}


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256")


@pytest.fixture(scope="module")
def jwks_path(key: ECKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "jwks.json"
    path.write_text(json.dumps(jwks(public_jwk(key, KID))))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> dict[str, dict[str, str]]:
    if request.param == "sqlite":
        return {}
    return {"database": {"url": request.getfixturevalue("pg_url")}}


BuildApp = Callable[..., Flask]


@pytest.fixture
def build(make_app: Callable[..., Flask], jwks_path: Path) -> BuildApp:
    def make(**sections: dict[str, str]) -> Flask:
        values: dict[str, dict[str, str]] = {
            "server": {"root_url": ROOT_URL},
            "auth.jwt": {**JWT, "jwk_set_file": str(jwks_path)},
        }
        for section, kv in sections.items():
            values.setdefault(section, {}).update(kv)
        return make_app(values)

    return make


def payload(sub: str = "subject", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 600, **extra}


def token(key: ECKey, body: dict[str, Any] | bytes | str, **header: Any) -> str:
    """A signed token; a bytes/str body is the payload's exact JSON text (ASCII-escaped)."""
    if isinstance(body, dict):
        body = json.dumps(body)  # ensure_ascii: lone surrogates survive as \\udXXX escapes
    raw = body.encode() if isinstance(body, str) else body
    return forge(key, {"alg": "ES256", "kid": KID, **header}, raw)


def verify(app: Flask, tok: str, **headers: str) -> Any:
    return app.test_client().get("/api/auth/verify", headers={HEADER: tok, **headers})


def login(app: Flask, tok: str, **headers: str) -> Any:
    return app.test_client().post("/api/login/jwt", headers={HEADER: tok, **headers})


def error(response: Any, status: int, message_id: str) -> str:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["messageId"] == message_id, body
    reason: str = body["reason"]
    return reason


def users(app: Flask) -> list[tuple[int, str, str | None]]:
    with app.extensions["authsvc"].db() as db:
        rows = db.execute(select(User.id, User.login, User.email).order_by(User.id)).all()
        return [(r[0], r[1], r[2]) for r in rows]


def session_cookie(response: Any) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {response.headers}")


# ---------------------------------------------------------------- 1. several accounts, one name
LOOKALIKES = {
    "surrounding-spaces": " admin ",
    "zero-width-space": "admin\u200b",
    "no-break-space": "admin\u00a0",
    "leading-tab": "\tadmin",
    "crlf": "admin\r\n",
    "bidi-override": "\u202eadmin",
    "nul": "ad\x00min",
    "del": "admin\x7f",
    "c1-control": "admin\x85",
}


@pytest.mark.parametrize("claim", ["login", "email", "sub"])
@pytest.mark.parametrize("value", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_finding_1_identifiers_that_could_pass_for_another_are_refused(
    build: BuildApp, key: ECKey, database: dict[str, dict[str, str]], claim: str, value: str
) -> None:
    app = build(**database)
    assert verify(app, token(key, payload(sub="admin", login="admin"))).status_code == 200

    claims = payload(sub="other", login="other", email="other@example.com")
    claims[claim] = value
    for response in (verify(app, token(key, claims)), login(app, token(key, claims))):
        reason = error(response, 401, "jwt.invalid")
        assert f"claim '{claim}'" in reason
    assert [u[1] for u in users(app)] == ["admin"]


def test_finding_1_a_group_name_that_could_pass_for_another_is_refused(
    build: BuildApp, key: ECKey
) -> None:
    app = build()
    claims = payload(login="alice", groups=["ops", "admins\u200b"])
    reason = error(verify(app, token(key, claims)), 401, "jwt.invalid")
    assert "groups_attribute_path 'groups'" in reason
    assert "U+200B" in reason


def test_finding_1_non_latin1_logins_reach_the_header_exactly(
    build: BuildApp, key: ECKey, database: dict[str, dict[str, str]]
) -> None:
    app = build(**database)
    seen = {}
    for sub, name in (("u1", "用户"), ("u2", "名字"), ("u3", "Éve"), ("u4", "ad min")):
        response = verify(app, token(key, payload(sub=sub, login=name)))
        assert response.status_code == 200, response.get_json()
        seen[sub] = response.headers["X-Auth-User"]
        assert seen[sub] == name == response.get_json()["login"]
    assert len(set(seen.values())) == 4


def test_finding_1_display_names_lose_invisible_characters(build: BuildApp, key: ECKey) -> None:
    app = build()
    claims = payload(login="alice", name="\u200bAl\x00ice\u202e Liddell\r\n")
    response = verify(app, token(key, claims))
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Auth-Name"] == response.get_json()["name"] == "Alice Liddell"


# ---------------------------------------------------------------- 2. case-variant accounts
def _race(app: Flask, tokens: list[str]) -> list[Any]:
    barrier = threading.Barrier(len(tokens))
    results: list[Any] = [None] * len(tokens)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = login(app, tokens[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.parametrize(
    ("claim", "variants"),
    [("login", ("alice", "Alice")), ("email", ("bob@example.com", "BOB@example.com"))],
    ids=["login", "email"],
)
def test_finding_2_case_variants_racing_make_one_account(
    build: BuildApp,
    key: ECKey,
    database: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    claim: str,
    variants: tuple[str, str],
) -> None:
    app = build(**database)
    # Two processes share no lock: neither may these threads (as two workers would not).
    monkeypatch.setattr(app.extensions["authsvc"].authn, "_write_lock", _NoLock())
    tokens = []
    for i in range(20):
        claims = payload(sub=f"racer-{i}", login=f"racer-{i}", email=f"racer-{i}@example.com")
        claims[claim] = variants[i % 2]
        tokens.append(token(key, claims))

    results = _race(app, tokens)

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [409] * 19, [r.get_json() for r in results]
    for r in results:
        if r.status_code == 409:
            assert r.get_json()["messageId"] == "user.sync.conflict"
    assert len(users(app)) == 1


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_finding_2_the_unique_index_alone_refuses_a_case_variant(
    build: BuildApp,
    key: ECKey,
    database: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uniqueness lives in the database: with the read before the write blinded, still one."""
    app = build(**database)
    assert login(app, token(key, payload(sub="first", login="alice"))).status_code == 200
    monkeypatch.setattr(UserStore, "holders", lambda self, login, email: [])

    response = login(app, token(key, payload(sub="second", login="ALICE")))

    error(response, 409, "user.sync.conflict")
    assert [u[1] for u in users(app)] == ["alice"]


@pytest.mark.parametrize(
    ("first", "second"), [("Éve", "éve"), ("ǅemal", "ǆemal"), ("\uff42\uff4f\uff42", "bob")]
)
def test_finding_2_unicode_case_variants_are_one_login(
    build: BuildApp,
    key: ECKey,
    database: dict[str, dict[str, str]],
    first: str,
    second: str,
) -> None:
    app = build(**database)
    assert login(app, token(key, payload(sub="s1", login=first))).status_code == 200
    reason = error(
        login(app, token(key, payload(sub="s2", login=second))), 409, "user.sync.conflict"
    )
    assert "belongs to another account" in reason
    assert len(users(app)) == 1
    # The same subject may change the case of its own login.
    renamed = login(app, token(key, payload(sub="s1", login=second)))
    assert renamed.status_code == 200
    assert [u[1] for u in users(app)] == [second]


def test_finding_2_users_show_finds_the_account_by_its_fold(
    build: BuildApp, key: ECKey, homepath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = build()
    assert login(app, token(key, payload(sub="a", login="alice"))).status_code == 200
    assert login(app, token(key, payload(sub="e", login="Éve"))).status_code == 200

    assert cli(["users", "show", "ALICE", "--homepath", str(homepath)]) == 0
    assert json.loads(capsys.readouterr().out)["login"] == "alice"
    assert cli(["users", "show", "éVE", "--homepath", str(homepath)]) == 0
    assert json.loads(capsys.readouterr().out)["login"] == "Éve"


def _old_schema(url: str) -> Any:
    engine = make_engine(_db_settings(url))
    migrate(engine, "0001")
    return engine


def _db_settings(url: str) -> Any:
    from authsvc.config import DatabaseSettings

    return DatabaseSettings(type="", path=Path(), url=url, max_open_conn=0)


def _insert_old(engine: Any, rows: list[tuple[str, str | None]]) -> None:
    with engine.begin() as conn:
        for login_name, email in rows:
            conn.execute(
                text(
                    "INSERT INTO users (login, email, name, role, is_server_admin, groups, "
                    "disabled, auth_module, created_at, updated_at) VALUES "
                    "(:l, :e, '', 'Viewer', false, '[]', false, '', 0, 0)"
                ),
                {"l": login_name, "e": email},
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg.replace("postgres://", "postgresql+psycopg://")


def test_finding_2_migration_back_fills_the_keys(db_url: str) -> None:
    engine = _old_schema(db_url)
    _insert_old(engine, [("alice", "alice@example.com"), ("Bob", None), ("Éve", "EVE@x.io")])

    migrate(engine)

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT login, login_key, email, email_key FROM users")).all()
    assert {r[0]: (r[1], r[3]) for r in rows} == {
        "alice": (unique_key("alice"), unique_key("alice@example.com")),
        "Bob": (unique_key("bob"), None),
        "Éve": (unique_key("éve"), unique_key("eve@x.io")),
    }
    engine.dispose()


def test_finding_2_migration_refuses_colliding_accounts(db_url: str) -> None:
    engine = _old_schema(db_url)
    _insert_old(engine, [("alice", None), ("ALICE", None), ("bob", "b@x.io"), ("carol", "B@X.IO")])

    with pytest.raises(MigrationError) as caught:
        migrate(engine)

    message = str(caught.value)
    assert "login 'alice' (user 1) and 'ALICE' (user 2)" in message
    assert "email 'b@x.io' (user 3) and 'B@X.IO' (user 4)" in message
    assert "Rename or delete one account" in message
    # Nothing half-done: the schema is still the old one, and fixing the data lets it pass.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE login IN ('ALICE', 'carol')"))
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar() == 2
    engine.dispose()


# ---------------------------------------------------------------- 3. forged deep nesting
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ('{"alg":"ES256","kid":"integrity"}', f'{{"sub":"x","aud":{_nested(980)}}}'),
        ('{"alg":"ES256","kid":"integrity","crit":' + _nested(980) + "}", '{"sub":"x"}'),
        ('{"alg":"ES256","kid":"integrity"}', f'{{"sub":"x","exp":{_nested(100_000)}}}'),
    ],
    ids=["aud-980-deep", "crit-980-deep", "exp-100000-deep"],
)
def test_finding_3_a_forged_deeply_nested_token_is_a_401_without_a_traceback(
    build: BuildApp, caplog: pytest.LogCaptureFixture, header: str, body: str
) -> None:
    app = build()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # what a real server does with a 500
    forged = f"{b64u(header.encode())}.{b64u(body.encode())}.{b64u(b'x' * 64)}"
    with caplog.at_level(logging.INFO):
        response = verify(app, forged)
    error(response, 401, "jwt.invalid")
    assert "Traceback" not in caplog.text


def test_finding_3_a_signed_deeply_nested_claim_is_refused_by_depth(
    build: BuildApp, key: ECKey
) -> None:
    app = build()
    deep = payload(login="deep")
    deep["x"] = json.loads(_nested(MAX_JSON_DEPTH + 1))
    reason = error(verify(app, token(key, deep)), 401, "jwt.invalid")
    assert f"more than {MAX_JSON_DEPTH} deep" in reason
    shallow = payload(login="shallow", x=json.loads(_nested(MAX_JSON_DEPTH - 1)))
    assert verify(app, token(key, shallow)).status_code == 200


# ---------------------------------------------------------------- 4. signed values that gave 500s
SURROGATE = "\ud800"


@pytest.mark.parametrize("claim", ["sub", "email", "login"])
@pytest.mark.parametrize("bad", [SURROGATE, "\x00"], ids=["lone-surrogate", "nul"])
def test_finding_4_lone_surrogates_and_nul_in_identifiers_are_401(
    build: BuildApp, key: ECKey, database: dict[str, dict[str, str]], claim: str, bad: str
) -> None:
    app = build(**database)
    claims = payload(sub="s", login="who", email="who@example.com")
    claims[claim] = f"a{bad}b"
    for response in (verify(app, token(key, claims)), login(app, token(key, claims))):
        assert f"claim '{claim}'" in error(response, 401, "jwt.invalid")
    assert users(app) == []


@pytest.mark.parametrize("bad", [SURROGATE, "\x00"], ids=["lone-surrogate", "nul"])
def test_finding_4_lone_surrogates_and_nul_leave_display_names(
    build: BuildApp, key: ECKey, database: dict[str, dict[str, str]], bad: str
) -> None:
    app = build(**database)
    claims = payload(login="who", name=f"Wh{bad}o")
    response = login(app, token(key, claims), **{"User-Agent": f"agent{bad}/1"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "Who"


def test_finding_4_logins_up_to_255_characters_work_and_longer_are_401(
    build: BuildApp, key: ECKey, database: dict[str, dict[str, str]]
) -> None:
    app = build(**database)
    for length in (190, 191, 255):
        name = "é" * length
        claims = payload(sub=f"s{length}", login=name, email=f"{'e' * (length - 9)}@mail.io")
        response = login(app, token(key, claims))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["login"] == name
    too_long = payload(sub="s256", login="x" * 256)
    assert "longer than 255" in error(login(app, token(key, too_long)), 401, "jwt.invalid")
    long_name = payload(sub="named", login="named", name="n" * 1000)
    assert login(app, token(key, long_name)).get_json()["name"] == "n" * 255


@pytest.mark.parametrize(
    "claims_text",
    [
        '{"sub":"t","exp":1e308}',
        '{"sub":"t","exp":1e999}',
        '{"sub":"t","exp":-1e999}',
        '{"sub":"t","exp":' + "9" * 400 + "}",
        '{"sub":"t","exp":9999999999,"iat":1e300}',
        '{"sub":"t","exp":9999999999,"nbf":-1e300}',
        '{"sub":"t","exp":9999999999,"iss":5}',
        '{"sub":"t","exp":9999999999,"iss":null}',
        '{"sub":"t","exp":9999999999,"iss":{"a":[1]}}',
        '{"sub":"t","exp":9999999999,"jti":[]}',
        '{"sub":"t","exp":9999999999,"aud":{"x":1}}',
        '{"sub":"t","exp":9999999999,"aud":[["a"]]}',
        '{"sub":"t","exp":9999999999,"aud":[' + "[" * 60 + "]" * 60 + "]}",
    ],
)
def test_finding_4_wrong_typed_registered_claims_are_401(
    build: BuildApp, key: ECKey, claims_text: str
) -> None:
    app = build()
    error(verify(app, token(key, claims_text)), 401, "jwt.invalid")


# ---------------------------------------------------------------- 5. commas in group names
def test_finding_5_commas_and_percents_inside_group_names_are_encoded(
    build: BuildApp, key: ECKey
) -> None:
    app = build()
    groups = ["dev,admins", "100%", "ops", "a%2Cb"]
    response = verify(app, token(key, payload(login="g", groups=groups)))
    assert response.status_code == 200
    assert response.headers["X-Auth-Groups"] == "dev%2Cadmins,100%25,ops,a%252Cb"
    assert response.get_json()["groups"] == groups


# ---------------------------------------------------------------- 6. bounded memory
def test_finding_6_the_verified_cache_is_bounded_by_bytes(
    make_settings: Callable[..., Settings], key: ECKey, jwks_path: Path
) -> None:
    settings = make_settings(
        {"auth.jwt": {**JWT, "jwk_set_file": str(jwks_path), "verified_cache_max_mb": "1"}}
    )
    from tokens import build_provider

    verifier = Verifier(settings.jwt, build_provider(settings))
    big = "x" * 40_000
    tokens = [token(key, payload(sub=f"s{i}", blob=big)) for i in range(40)]
    for tok in tokens:
        verifier.verify(tok)
    cache = verifier._cache
    assert cache.size_bytes <= 1 << 20
    assert 10 <= len(cache) < 40
    # The newest are kept, the oldest went first.
    assert verifier.cached(tokens[-1]) is not None
    assert verifier.cached(tokens[0]) is None


def test_finding_6_the_header_cache_evicts_instead_of_refusing(
    make_settings: Callable[..., Settings], key: ECKey, jwks_path: Path
) -> None:
    settings = make_settings({"auth.jwt": {**JWT, "jwk_set_file": str(jwks_path)}})
    from tokens import build_provider

    verifier = Verifier(settings.jwt, build_provider(settings))
    for i in range(1000):
        verifier.verify(token(key, payload(sub=f"s{i}"), x=i))
    assert len(verifier._headers) == 256
    newest = b64u_json({"alg": "ES256", "kid": KID, "x": 999})
    assert verifier._headers.get(newest) is not None


# ---------------------------------------------------------------- 7. outages, and what a 409 says
@pytest.fixture
def pg_through_proxy(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    proxy = TcpProxy(5432)
    try:
        yield pg_url.replace(":5432/", f":{proxy.port}/"), proxy
    finally:
        proxy.cut()


@pytest.mark.postgres
def test_finding_7_a_cut_database_is_a_503_for_jwt_and_cookie_requests(
    build: BuildApp, key: ECKey, pg_through_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = pg_through_proxy
    app = build(database={"url": url})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    tok = token(key, payload(sub="alice", login="alice"))
    cookie = session_cookie(login(app, tok))
    client = app.test_client(use_cookies=False)
    by_cookie = {"Cookie": f"{COOKIE}={cookie}"}
    assert verify(app, tok).status_code == 200
    assert client.get("/api/auth/verify", headers=by_cookie).status_code == 200

    with proxy.outage():
        for response in (
            verify(app, tok),
            verify(app, token(key, payload(sub="new", login="new"))),
            client.get("/api/auth/verify", headers=by_cookie),
            client.get("/api/user", headers=by_cookie),
            login(app, tok),
        ):
            assert error(response, 503, "service.unavailable") == "database unavailable"
        health = client.get("/api/health")
        assert health.status_code == 503
        assert health.get_json()["database"] == "unavailable"
        assert str(proxy.port) not in health.get_data(as_text=True)
        assert "127.0.0.1" not in health.get_data(as_text=True)

    deadline = time.monotonic() + 10
    while verify(app, tok).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.1)
    assert client.get("/api/auth/verify", headers=by_cookie).status_code == 200


@pytest.mark.redis
def test_finding_7_a_cut_redis_session_store_is_a_503_for_cookie_requests(
    build: BuildApp, key: ECKey, redis_db: int
) -> None:
    proxy = TcpProxy(6379)
    try:
        app = build(
            auth={"session_store": "redis"},
            remote_cache={"connstr": f"addr=127.0.0.1:{proxy.port},db={redis_db}"},
        )
        app.config["PROPAGATE_EXCEPTIONS"] = False
        cookie = session_cookie(login(app, token(key, payload(sub="alice", login="alice"))))
        client = app.test_client(use_cookies=False)
        by_cookie = {"Cookie": f"{COOKIE}={cookie}"}
        assert client.get("/api/auth/verify", headers=by_cookie).status_code == 200

        with proxy.outage():
            response = client.get("/api/auth/verify", headers=by_cookie)
            assert error(response, 503, "service.unavailable") == "redis unavailable"
            assert str(proxy.port) not in response.get_data(as_text=True)

        assert client.get("/api/auth/verify", headers=by_cookie).status_code == 200
    finally:
        proxy.cut()


def test_finding_7_an_unreadable_sqlite_database_is_a_503(
    build: BuildApp, key: ECKey, tmp_path: Path
) -> None:
    directory = tmp_path / "db"
    app = build(database={"path": str(directory / "authsvc.db")})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    tok = token(key, payload(sub="alice", login="alice"))
    assert verify(app, tok).status_code == 200
    svc = app.extensions["authsvc"]
    svc.engine.dispose()
    svc.reads.close()  # every connection to the file goes, as at a restart
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()
    directory.write_text("a file where the database's directory was\n")

    assert error(verify(app, tok), 503, "service.unavailable") == "database unavailable"


def test_finding_7_a_conflict_never_names_another_account_id(build: BuildApp, key: ECKey) -> None:
    app = build()
    first = login(app, token(key, payload(sub="one", login="alice", email="a@x.io")))
    other_id = first.get_json()["id"]
    reason = error(
        login(app, token(key, payload(sub="two", login="alice"))), 409, "user.sync.conflict"
    )
    assert str(other_id) not in reason
    assert "user" not in reason.replace("link_existing_users", "")


# ---------------------------------------------------------------- 8. oversized identities
def _x_auth_bytes(response: Any) -> int:
    return sum(
        len(name) + len(value.encode()) + 4
        for name, value in response.headers.items()
        if name.lower().startswith("x-auth-")
    )


def test_finding_8_thousands_of_groups_are_cut_to_fit_a_proxy_buffer(
    build: BuildApp, key: ECKey
) -> None:
    app = build()
    groups = [f"group-{i:04d}" for i in range(3000)]
    response = verify(app, token(key, payload(login="many", groups=groups)))
    assert response.status_code == 200
    assert response.headers["X-Auth-Groups-Truncated"] == "true"
    sent = response.headers["X-Auth-Groups"].split(",")
    assert sent == groups[: len(sent)] and len(sent) > 100
    assert _x_auth_bytes(response) <= HEADER_BUDGET
    assert response.get_json()["groups"] == groups  # the body keeps the full list


def test_finding_8_few_groups_are_not_marked_truncated(build: BuildApp, key: ECKey) -> None:
    app = build()
    response = verify(app, token(key, payload(login="few", groups=["a", "b"])))
    assert response.headers["X-Auth-Groups"] == "a,b"
    assert "X-Auth-Groups-Truncated" not in response.headers


def test_finding_8_a_huge_name_is_cut(build: BuildApp, key: ECKey) -> None:
    app = build()
    response = verify(app, token(key, payload(login="big", name="N" * 10_000)))
    assert response.status_code == 200
    assert response.headers["X-Auth-Name"] == "N" * 255
    assert _x_auth_bytes(response) <= HEADER_BUDGET


# ---------------------------------------------------------------- 9. typing and duplicates
@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        (None, '{"sub":"a","sub":"admin","exp":9999999999,"login":"a"}', "member 'sub' twice"),
        (None, '{"sub":"a","exp":9999999999,"x":{"k":1,"k":2}}', "member 'k' twice"),
        ('{"alg":"ES256","kid":"integrity","kid":"other"}', None, "member 'kid' twice"),
    ],
    ids=["duplicate-sub", "duplicate-nested", "duplicate-header"],
)
def test_finding_9_duplicate_members_are_refused(
    build: BuildApp, key: ECKey, header: str | None, body: str | None, expected: str
) -> None:
    app = build()
    h = header or json.dumps({"alg": "ES256", "kid": KID})
    p = body or json.dumps(payload(login="a"))
    tok = forge(key, b64u(h.encode()), b64u(p.encode()), alg="ES256")
    assert expected in error(verify(app, tok), 401, "jwt.invalid")
    assert users(app) == []


@pytest.mark.parametrize("typ", ["logout+jwt", "JWE", 123, "", "secevent+jwt", ["JWT"]])
def test_finding_9_unaccepted_token_types_are_refused(
    build: BuildApp, key: ECKey, typ: Any
) -> None:
    app = build()
    reason = error(verify(app, token(key, payload(login="t"), typ=typ)), 401, "jwt.invalid")
    assert "header 'typ'" in reason


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "application/at+JWT", "application/jwt"])
def test_finding_9_accepted_token_types_pass(build: BuildApp, key: ECKey, typ: str) -> None:
    assert verify(build(), token(key, payload(login="t"), typ=typ)).status_code == 200


def test_finding_9_empty_token_types_accept_any(build: BuildApp, key: ECKey) -> None:
    app = build(**{"auth.jwt": {"token_types": ""}})
    assert verify(app, token(key, payload(login="t"), typ="logout+jwt")).status_code == 200


# ---------------------------------------------------------------- 10. cross-site logout
@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example.net/page"},
        {"Origin": "https://evil.example.net"},
    ],
    ids=["sec-fetch-site", "referer", "origin"],
)
def test_finding_10_a_cross_site_logout_is_refused(
    build: BuildApp, key: ECKey, headers: dict[str, str]
) -> None:
    app = build()
    cookie = session_cookie(login(app, token(key, payload(sub="alice", login="alice"))))
    client = app.test_client(use_cookies=False)
    by_cookie = {"Cookie": f"{COOKIE}={cookie}"}

    response = client.get("/logout", headers={**by_cookie, **headers})

    error(response, 403, "auth.forbidden")
    assert client.get("/api/user", headers=by_cookie).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Sec-Fetch-Site": "same-origin"}, {"Referer": "https://auth.example.com/app"}],
    ids=["no-header", "same-origin", "own-referer"],
)
def test_finding_10_a_same_site_logout_still_works(
    build: BuildApp, key: ECKey, headers: dict[str, str]
) -> None:
    app = build()
    cookie = session_cookie(login(app, token(key, payload(sub="alice", login="alice"))))
    client = app.test_client(use_cookies=False)
    by_cookie = {"Cookie": f"{COOKIE}={cookie}"}

    assert client.get("/logout", headers={**by_cookie, **headers}).status_code == 302
    error(client.get("/api/user", headers=by_cookie), 401, "session.invalid")


def test_finding_10_the_cookie_is_secure_under_an_https_root_url(
    build: BuildApp, key: ECKey
) -> None:
    app = build(security={"cookie_secure": "false"})
    response = login(app, token(key, payload(sub="alice", login="alice")))
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE)]
    assert "Secure" in cookie
