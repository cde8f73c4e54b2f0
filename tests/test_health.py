"""GET /api/health, /metrics, error bodies and request ids, on apps built by the factory.

The database outage is real: PostgreSQL is told to refuse connections to the
test's database and its backends are terminated.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from joserfc.jwk import ECKey, OctKey

import authsvc

AppFactory = Callable[..., Flask]
REQUEST_ID_HEADER = "X-Request-Id"


# --------------------------------------------------------------------------- key sources
def _jwks_file(tmp_path: Path) -> dict[str, str]:
    key = ECKey.generate_key("P-256", auto_kid=True)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False, alg="ES256", use="sig")]}))
    return {"jwk_set_file": str(path)}


def _jwks_value(tmp_path: Path) -> dict[str, str]:
    key = ECKey.generate_key("P-256", auto_kid=True)
    document = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
    return {"jwk_set_value": base64.b64encode(document).decode()}


def _key_file(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "key.pem"
    path.write_bytes(ECKey.generate_key("P-256").as_pem(private=False))
    return {"key_file": str(path), "key_id": "pem-1"}


def _key_value(tmp_path: Path) -> dict[str, str]:
    pem = ECKey.generate_key("P-256").as_pem(private=False)
    return {"key_value": base64.b64encode(pem).decode()}


def _hmac_secret(tmp_path: Path) -> dict[str, str]:
    return {"hmac_secret": OctKey.generate_key(256).raw_value.hex()}


KEY_SOURCES = {
    "jwk_set_file": _jwks_file,
    "jwk_set_value": _jwks_value,
    "key_file": _key_file,
    "key_value": _key_value,
    "hmac_secret": _hmac_secret,
}


# --------------------------------------------------------------------------- health
def test_health_ok_with_jwt_disabled(make_app: AppFactory) -> None:
    response = make_app().test_client().get("/api/health")

    assert response.status_code == 200
    assert response.get_json() == {
        "database": "ok",
        "keys": "disabled",
        "version": authsvc.__version__,
    }
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("source", KEY_SOURCES.values(), ids=KEY_SOURCES.keys())
def test_health_keys_ok_with_a_key_source(
    make_app: AppFactory, tmp_path: Path, source: Callable[[Path], dict[str, str]]
) -> None:
    jwt = {"enabled": "true", "header_name": "X-JWT-Assertion", **source(tmp_path)}
    response = make_app({"auth.jwt": jwt}).test_client().get("/api/health")

    assert response.status_code == 200
    assert response.get_json() == {
        "database": "ok",
        "keys": "ok",
        "issuers": {"jwt": "ok"},
        "version": authsvc.__version__,
    }


@pytest.mark.postgres
def test_health_follows_a_postgres_outage(make_app: AppFactory, pg_url: str) -> None:
    client = make_app({"database": {"url": pg_url}}).test_client()
    assert client.get("/api/health").status_code == 200

    with _connections_refused(pg_url):
        response = client.get("/api/health")
        assert response.status_code == 503
        body = response.get_json()
        assert body["database"] == "unavailable"
        assert body["keys"] == "disabled"
        assert body["version"] == authsvc.__version__
        # CONTRACT §7: nothing of the driver, host or port.
        assert set(body) == {"database", "keys", "version"}
        assert "5432" not in response.get_data(as_text=True)

    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"
    assert "databaseError" not in response.get_json()


@contextlib.contextmanager
def _connections_refused(url: str) -> Iterator[None]:
    """Make PostgreSQL refuse the database of ``url`` and end its sessions, for real."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/test", autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            query = (
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            )
            deadline = time.monotonic() + 10
            while pids := [row[0] for row in admin.execute(query, (name,))]:
                if time.monotonic() > deadline:
                    pytest.fail(f"backends {pids} of {name} did not go away")
                for pid in pids:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                time.sleep(0.05)
            yield
        finally:
            # Always re-allow connections, so that pg_url can drop the database.
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("method", "path", "status", "message_id", "reason"),
    [
        ("GET", "/no/such/route", 404, "api.not_found", "GET /no/such/route"),
        ("POST", "/api/health", 405, "api.method_not_allowed", "POST"),
        ("DELETE", "/api/health", 405, "api.method_not_allowed", "DELETE"),
    ],
    ids=["unknown-route", "post-health", "delete-health"],
)
def test_error_body_follows_the_contract(
    make_app: AppFactory, method: str, path: str, status: int, message_id: str, reason: str
) -> None:
    response = make_app().test_client().open(path, method=method)

    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"message", "messageId", "statusCode", "reason"}
    assert body["messageId"] == message_id
    assert body["statusCode"] == status
    assert body["message"]
    assert reason in body["reason"]
    assert "WWW-Authenticate" not in response.headers


# --------------------------------------------------------------------------- metrics
def test_metrics_in_prometheus_text(make_app: AppFactory) -> None:
    client = make_app({"metrics": {"enabled": "true"}}).test_client()
    assert client.get("/api/health").status_code == 200

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=" in response.headers["Content-Type"]
    text = response.get_data(as_text=True)
    assert "# TYPE authsvc_http_requests_total counter" in text
    assert 'authsvc_http_requests_total{route="/api/health",status="200"} 1.0' in text
    assert 'authsvc_http_request_duration_seconds_count{route="/api/health"} 1.0' in text


def test_metrics_are_per_app(make_app: AppFactory) -> None:
    """Two apps in one process share no collectors."""
    first, second = make_app().test_client(), make_app().test_client()
    first.get("/api/health")

    text = second.get("/metrics").get_data(as_text=True)

    assert 'route="/api/health"' not in text


def test_metrics_disabled_is_not_found(make_app: AppFactory) -> None:
    response = make_app({"metrics": {"enabled": "false"}}).test_client().get("/metrics")

    assert response.status_code == 404
    assert response.get_json()["messageId"] == "api.not_found"


# --------------------------------------------------------------------------- request ids
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/health"), ("GET", "/metrics"), ("GET", "/nope"), ("POST", "/api/health")],
    ids=["health", "metrics", "not-found", "method-not-allowed"],
)
def test_every_response_has_a_request_id(make_app: AppFactory, method: str, path: str) -> None:
    client = make_app().test_client()
    rid = client.open(path, method=method).headers[REQUEST_ID_HEADER]
    again = client.open(path, method=method).headers[REQUEST_ID_HEADER]

    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", rid), rid
    assert again != rid


@pytest.mark.parametrize(
    "rid",
    ["abc-123", "0f8e2c1a-9b7d-4c3e-8f21-6a5b4c3d2e1f", "a" * 64],
    ids=["short", "uuid", "64-chars"],
)
def test_a_sane_request_id_is_echoed(make_app: AppFactory, rid: str) -> None:
    response = make_app().test_client().get("/api/health", headers={REQUEST_ID_HEADER: rid})

    assert response.headers[REQUEST_ID_HEADER] == rid


@pytest.mark.parametrize(
    "rid",
    ["", "a" * 65, "has space", "semi;colon", "<script>", "ünï"],
    ids=["empty", "too-long", "space", "semicolon", "markup", "non-ascii"],
)
def test_an_odd_request_id_is_replaced(make_app: AppFactory, rid: str) -> None:
    response = make_app().test_client().get("/api/health", headers={REQUEST_ID_HEADER: rid})

    echoed = response.headers[REQUEST_ID_HEADER]
    assert echoed != rid
    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", echoed), echoed


def test_sqlite_gone_is_a_503_with_a_request_id(make_app: AppFactory, tmp_path: Path) -> None:
    """A database file that cannot be opened any more: 503, and the request id is still there."""
    directory = tmp_path / "db"
    app = make_app({"database": {"path": str(directory / "authsvc.db")}})
    app.extensions["authsvc"].engine.dispose()
    shutil.rmtree(directory)
    directory.write_text("a file where the database's directory was\n")

    response = app.test_client().get("/api/health", headers={REQUEST_ID_HEADER: "rid-503"})

    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "unavailable"
    assert "databaseError" not in body
    assert response.headers[REQUEST_ID_HEADER] == "rid-503"
