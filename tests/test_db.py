"""authsvc.db: schema migration, SQLite's connection settings, concurrent start-up.

Every test runs on SQLite (a file under the test's home path) and on a fresh
real PostgreSQL database from the ``pg_url`` fixture.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

import authsvc
from authsvc.config import Settings
from authsvc.db import current_revision, make_engine, migrate, session_factory
from authsvc.models import AuthLink, Base, User

SettingsFactory = Callable[..., Settings]
DbValues = dict[str, dict[str, str]]

TABLES = {"users", "auth_links", "sessions"}
HEAD = ScriptDirectory(str(Path(authsvc.__file__).parent / "migrations")).get_current_head()

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_values(request: pytest.FixtureRequest) -> DbValues:
    """Config values naming a fresh, empty database of each backend."""
    if request.param == "postgres":
        return {"database": {"url": request.getfixturevalue("pg_url")}}
    return {}


@pytest.fixture
def settings(db_values: DbValues, make_settings: SettingsFactory) -> Settings:
    return make_settings(db_values)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    migrate(engine)
    return engine


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


# --------------------------------------------------------------------------- migrate
def test_migrate_creates_the_tables(engine: Engine) -> None:
    assert not _tables(engine) & TABLES
    assert current_revision(engine) is None

    migrate(engine)

    assert _tables(engine) >= TABLES | {"alembic_version"}
    assert current_revision(engine) == HEAD


def test_second_migrate_is_a_no_op(migrated: Engine) -> None:
    before = (_tables(migrated), _version_rows(migrated))

    migrate(migrated)

    assert (_tables(migrated), _version_rows(migrated)) == before
    assert _version_rows(migrated) == [HEAD]


def test_migrated_schema_matches_the_models(migrated: Engine) -> None:
    """The migrations and models.py describe the same schema (nothing left to autogenerate)."""
    with migrated.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


# --------------------------------------------------------------------------- SQLite
def test_sqlite_runs_in_wal_mode_with_foreign_keys(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    engine = make_engine(settings.database)
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert settings.database.path.is_file()
    assert settings.database.path.is_relative_to(settings.paths.data)


# --------------------------------------------------------------------------- constraints
def _user(login: str, email: str | None = None) -> User:
    return User(login=login, email=email, created_at=time.time(), updated_at=time.time())


def test_user_login_is_unique(migrated: Engine) -> None:
    db = session_factory(migrated)
    with db() as s:
        s.add(_user("alice"))
        s.commit()
    with db() as s:
        s.add(_user("alice"))
        with pytest.raises(IntegrityError):
            s.commit()
    with db() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1


def test_auth_link_provider_subject_is_unique(migrated: Engine) -> None:
    db = session_factory(migrated)
    with db() as s:
        alice, bob = _user("alice"), _user("bob")
        s.add_all([alice, bob])
        s.flush()
        s.add(AuthLink(user_id=alice.id, provider="jwt", subject="sub-1", created_at=0.0))
        # The same subject at another provider, and another subject, are distinct links.
        s.add(AuthLink(user_id=alice.id, provider="other", subject="sub-1", created_at=0.0))
        s.add(AuthLink(user_id=bob.id, provider="jwt", subject="sub-2", created_at=0.0))
        s.commit()
        bob_id = bob.id
    with db() as s:
        s.add(AuthLink(user_id=bob_id, provider="jwt", subject="sub-1", created_at=0.0))
        with pytest.raises(IntegrityError):
            s.commit()


def test_auth_link_needs_an_existing_user(migrated: Engine) -> None:
    """Foreign keys are enforced (on SQLite only because the engine turns them on)."""
    with session_factory(migrated)() as s:
        s.add(AuthLink(user_id=12345, provider="jwt", subject="sub-1", created_at=0.0))
        with pytest.raises(IntegrityError):
            s.commit()


# --------------------------------------------------------------------------- concurrency
# Each child loads the same configuration as `serve`, says "ready", waits for
# the parent's "go" on stdin and migrates; the parent releases all at once.
_MIGRATE_CHILD = """
import json, sys
from authsvc.config import load_settings
from authsvc.db import make_engine, migrate
homepath, args = json.loads(sys.argv[1])
engine = make_engine(load_settings(homepath, None, args, environ={}).database)
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
engine.dispose()
print("migrated", flush=True)
"""


def test_two_processes_migrate_one_fresh_database_at_once(
    db_values: DbValues, settings: Settings, engine: Engine
) -> None:
    args = [f"cfg:{s}.{k}={v}" for s, kv in db_values.items() for k, v in kv.items()]
    argv = [sys.executable, "-c", _MIGRATE_CHILD, json.dumps([str(settings.homepath), args])]
    children = [
        subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline() != "ready\n":
                pytest.fail(f"child failed before migrating: {child.communicate()[1]}")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()

    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out == "migrated\n"
    assert _tables(engine) >= TABLES
    assert _version_rows(engine) == [HEAD]
