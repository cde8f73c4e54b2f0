"""Shared fixtures: home paths, settings, apps, and the real PostgreSQL and Redis servers.

PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) are real
servers. On a laptop without them their tests skip; under CI=true a missing
server fails the run instead of hiding behind a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from joserfc.jwk import ECKey
from tokens import SIGNING_KID

from authsvc.app import create_app
from authsvc.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} at {host}:{port} is not reachable (CI=true: it must run)")
    pytest.skip(f"{name} at {host}:{port} is not reachable")


@pytest.fixture(scope="session")
def signing_key() -> ECKey:
    """One P-256 signing key for the session; its kid is tokens.SIGNING_KID."""
    return ECKey.generate_key("P-256", parameters={"kid": SIGNING_KID})


@pytest.fixture(scope="session")
def jwks_file(signing_key: ECKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JWKS file publishing ``signing_key`` (for ``[auth.jwt] jwk_set_file``)."""
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    public = signing_key.as_dict(private=False, alg="ES256", use="sig")
    path.write_text(json.dumps({"keys": [public]}))
    return path


@pytest.fixture
def homepath(tmp_path: Path) -> Path:
    """A home path holding the repo's conf/defaults.ini and nothing else."""
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "conf" / "defaults.ini", tmp_path / "conf" / "defaults.ini")
    return tmp_path


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(homepath: Path) -> SettingsFactory:
    """``make_settings({"auth.jwt": {"enabled": "true"}}, env={...})`` → Settings."""

    def build(
        values: dict[str, dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        config: str | None = None,
    ) -> Settings:
        args = [f"cfg:{s}.{k}={v}" for s, kv in (values or {}).items() for k, v in kv.items()]
        return load_settings(homepath, config, args, environ=env or {})

    return build


@pytest.fixture
def make_app(make_settings: SettingsFactory) -> Iterator[Callable[..., Flask]]:
    """Build apps from the factory on a migrated database (SQLite under the home path)."""
    apps: list[Flask] = []

    def build(values: dict[str, dict[str, str]] | None = None, **kw: object) -> Flask:
        app = create_app(make_settings(values), migrate_schema=True, testing=True, **kw)  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["authsvc"].close()  # background fetchers too, not only the engine


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = f"authsvc_t_{secrets.token_hex(6)}"
    admin = f"host={PG_HOST} port={PG_PORT} dbname=test user=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_db() -> Iterator[int]:
    """A Redis database number for one test, flushed before and after."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    db = 7
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    try:
        yield db
    finally:
        client.flushdb()
        client.close()
