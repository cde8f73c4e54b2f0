"""Where the time of one request goes: authsvc's WSGI app, in-process, profiled.

Usage (from the project root)::

    /work/venv/bin/python bench/profile_requests.py [--db sqlite|postgres]
        [--scenario verify-jwt|verify-cookie|login|all] [-n 3000] [--tree]

Builds the app as one ``authsvc serve`` worker does (``create_app``, not testing,
log level info into a temp file) on a fresh SQLite file or PostgreSQL database,
logs the bench user in once, then calls the WSGI app directly with a prebuilt
environ (no HTTP server, no test client) for each scenario:

* ``verify-jwt``: ``GET /api/auth/verify`` with one repeated RS256 JWT (http_bench b);
* ``verify-cookie``: the same with the session cookie (http_bench c);
* ``login``: ``POST /api/login/jwt`` for the existing user (http_bench d).

For each it prints µs per request unprofiled (best of 5 loops), exact counts per
request from cProfile (Python calls, SQL statements, ORM Sessions), and from
pyinstrument's sampling (100 µs interval, less distortion than cProfile) the
self time by component and the inclusive time of the pipeline's steps, both
scaled to the unprofiled µs per request. Needs ``pip install pyinstrument``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import io
import json
import pstats
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _harness import render_table
from flask import Flask
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet, RSAKey
from werkzeug.test import EnvironBuilder

from authsvc.app import create_app
from authsvc.config import load_settings

REPO = Path(__file__).resolve().parent.parent
HEADER = "X-JWT-Assertion"
COOKIE = "authsvc_session"
PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
SCENARIOS = ("verify-jwt", "verify-cookie", "login")

# Self time by component: the first rule whose path fragment (and function) matches.
# C calls are sampled as self time of their Python caller: the driver's C time shows in
# SQLAlchemy's do_execute / do_commit / fetch and pool's connection checks.
_DRIVER_FUNCS = {"do_execute", "do_executemany", "do_commit", "do_rollback", "do_ping", "do_close"}
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("/psycopg", "DB driver (psycopg, and C time of do_execute/commit)"),
    ("/sqlalchemy/orm/", "SQLAlchemy ORM"),
    ("/sqlalchemy/pool/", "SQLAlchemy pool"),
    ("/sqlalchemy/", "SQLAlchemy Core (engine, sql compile/cache, result)"),
    ("/flask/", "Flask"),
    ("/werkzeug/", "Werkzeug (request/response, headers, cookies)"),
    ("/authsvc/verifier.py", "authsvc verifier"),
    ("/authsvc/identity.py", "authsvc claims mapping"),
    ("/jmespath/", "jmespath"),
    ("/authsvc/", "authsvc (other)"),
    ("/joserfc/", "joserfc"),
    ("/cryptography/", "cryptography"),
    ("/prometheus_client/", "prometheus_client (metrics)"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/random.py", "random/secrets"),
    ("/secrets.py", "random/secrets"),
)

# Inclusive time of named steps: (label, path fragment, function name).
STEPS: tuple[tuple[str, str, str], ...] = (
    ("Flask.wsgi_app (whole request)", "/flask/app.py", "wsgi_app"),
    ("  before_request hook (_start)", "/authsvc/app.py", "_start"),
    ("  after_request hook (_finish, metrics)", "/authsvc/app.py", "_finish"),
    ("  view function", "/authsvc/views/", "verify"),
    ("  view function", "/authsvc/views/", "login_jwt"),
    ("    Authenticator.caller", "/authsvc/authn.py", "caller"),
    ("    JWTAuthenticator.extract", "/authsvc/authn.py", "extract"),
    ("    Verifier.verify", "/authsvc/verifier.py", "verify"),
    ("    ClaimsMapper.identity", "/authsvc/identity.py", "identity"),
    ("    Authenticator._write (transaction)", "/authsvc/authn.py", "_write"),
    ("      provisioner.provision", "/authsvc/provisioning/", "provision"),
    ("        UserStore.linked (SELECT user JOIN link)", "/authsvc/users.py", "linked"),
    ("        UserStore.sync", "/authsvc/users.py", "sync"),
    ("      SessionLifecycle.start (INSERT session)", "/authsvc/sessions/lifecycle.py", "start"),
    ("      ORM Session.commit", "/sqlalchemy/orm/session.py", "commit"),
    ("      ORM Session.close", "/sqlalchemy/orm/session.py", "close"),
    ("    Authenticator.from_session", "/authsvc/authn.py", "from_session"),
    ("      SessionLifecycle.resume (store.lookup)", "/authsvc/sessions/lifecycle.py", "resume"),
    ("      ORM Session.get(User)", "/sqlalchemy/orm/session.py", "get"),
    ("    logging (Logger.info)", "/logging/__init__.py", "info"),
    ("    jsonify", "/flask/json/__init__.py", "jsonify"),
    ("    set_cookie", "/werkzeug/sansio/response.py", "set_cookie"),
    ("SQLAlchemy do_execute (driver execute)", "/sqlalchemy/engine/default.py", "do_execute"),
    ("SQLAlchemy pool checkout", "/sqlalchemy/pool/base.py", "_checkout"),
    ("SQLAlchemy pool checkin", "/sqlalchemy/pool/base.py", "_finalize_fairy"),
)


# ------------------------------------------------------------------ the app
@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield ""
        return
    import psycopg

    name = f"authsvc_prof_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_app(tmp: Path, url: str, key: RSAKey, log_file: io.TextIOBase) -> Flask:
    jwks = base64.b64encode(json.dumps(KeySet([key]).as_dict(private=False)).encode()).decode()
    args = [
        "cfg:auth.jwt.enabled=true",
        f"cfg:auth.jwt.header_name={HEADER}",
        f"cfg:auth.jwt.jwk_set_value={jwks}",
        "cfg:auth.jwt.auto_sign_up=true",
        "cfg:auth.jwt.username_claim=sub",
        f"cfg:paths.data={tmp}",
    ]
    if url:
        args += ["cfg:database.type=postgres", f"cfg:database.url={url}"]
    settings = load_settings(homepath=REPO, args=args, environ={})
    with contextlib.redirect_stderr(log_file):  # the log handler keeps this stream
        return create_app(settings, migrate_schema=True, background=False)


def make_token(key: RSAKey) -> str:
    now = int(time.time())
    claims = {"sub": "bench-user", "iat": now, "exp": now + 3600, "name": "Bench User"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"])


def wsgi_caller(app: Flask, method: str, path: str, headers: dict[str, str]) -> Callable[[], int]:
    """One request straight into the WSGI app, as a server calls it; returns the status."""
    base = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    status: list[str] = []

    def start_response(s: str, _headers: Any, _exc: Any = None) -> Any:
        status.append(s)
        return None

    def call() -> int:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        status.clear()
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return int(status[0].split()[0])

    return call


def set_cookie_value(app: Flask, token: str) -> str:
    client = app.test_client()
    response = client.post("/api/login/jwt", headers={HEADER: token})
    assert response.status_code == 200, response.get_data(as_text=True)
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


# ------------------------------------------------------------------ measuring
def per_request_us(call: Callable[[], int], n: int) -> float:
    loops = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(max(1, n // 5)):
            call()
        loops.append((time.perf_counter() - start) / max(1, n // 5) * 1e6)
    return min(loops)


def counts(call: Callable[[], int], n: int) -> dict[str, float]:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        call()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    calls = sum(nc for (_cc, nc, _tt, _ct, _callers) in stats.values())
    sql = sum(
        v[1]
        for (file, _line, func), v in stats.items()
        if file.endswith("sqlalchemy/engine/default.py")
        and func in ("do_execute", "do_executemany", "do_execute_no_params")
    )
    sessions = sum(
        v[1]
        for (file, _line, func), v in stats.items()
        if file.endswith("sqlalchemy/orm/session.py") and func == "__init__"
    )
    commits = sum(
        v[1]
        for (file, _line, func), v in stats.items()
        if file.endswith("sqlalchemy/engine/default.py") and func == "do_commit"
    )
    checkouts = sum(
        v[1]
        for (file, _line, func), v in stats.items()
        if file.endswith("sqlalchemy/pool/base.py") and func == "_checkout"
    )
    return {
        "Python function calls": calls / n,
        "SQL statements (do_execute)": sql / n,
        "COMMITs (do_commit)": commits / n,
        "ORM Sessions created": sessions / n,
        "pool checkouts": checkouts / n,
    }


def component(file_path: str, function: str) -> str:
    path = file_path.replace("\\", "/")
    if path.endswith("sqlalchemy/engine/default.py") and function in _DRIVER_FUNCS:
        return "DB driver (psycopg, and C time of do_execute/commit)"
    for fragment, name in COMPONENTS:
        if fragment in path:
            return name
    if "site-packages" in path:
        return "other libraries"
    return "Python stdlib / builtins (other)"


def sampled(call: Callable[[], int], n: int) -> tuple[dict[str, float], dict[str, float], Any]:
    """Self time by component and inclusive time by step, as fractions of the profiled time."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001)
    profiler.start()
    for _ in range(n):
        call()
    session = profiler.stop()
    root = session.root_frame(trim_stem=False)
    total = root.time if root is not None else 0.0
    by_component: dict[str, float] = {}
    by_step: dict[str, float] = {}

    def walk(frame: Any, active: frozenset[str]) -> None:
        path = frame.file_path or ""
        name = component(path, frame.function)
        by_component[name] = by_component.get(name, 0.0) + frame.total_self_time
        now_active = active
        for label, fragment, function in STEPS:
            if function == frame.function and fragment in path and label not in active:
                by_step[label] = by_step.get(label, 0.0) + frame.time
                now_active = now_active | {label}
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, now_active)

    if root is not None:
        walk(root, frozenset())
    scale = 1.0 / total if total else 0.0
    return (
        {k: v * scale for k, v in by_component.items()},
        {k: v * scale for k, v in by_step.items()},
        profiler,
    )


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    p.add_argument("-n", type=int, default=3000, help="requests per measurement [3000]")
    p.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    args = p.parse_args(argv)
    if not 10 <= args.n <= 100_000:
        p.error("-n must be within 10..100000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    key = RSAKey.generate_key(2048, {"kid": "bench"})
    token = make_token(key)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    with (
        tempfile.TemporaryDirectory(prefix="profile_requests_") as tmp,
        database(args.db) as url,
        open(Path(tmp) / "authsvc.log", "w") as log_file,
    ):
        app = build_app(Path(tmp), url, key, log_file)
        cookie = set_cookie_value(app, token)
        calls = {
            "verify-jwt": wsgi_caller(app, "GET", "/api/auth/verify", {HEADER: token}),
            "verify-cookie": wsgi_caller(
                app, "GET", "/api/auth/verify", {"Cookie": f"{COOKIE}={cookie}"}
            ),
            "login": wsgi_caller(app, "POST", "/api/login/jwt", {HEADER: token}),
        }
        for name in scenarios:
            call = calls[name]
            for _ in range(200):  # warm-up: caches, pool, statement cache
                assert call() == 200
            us = per_request_us(call, args.n)
            count = counts(call, args.n)
            by_component, by_step, profiler = sampled(call, args.n)
            print(f"\n=== {name} ({args.db}): {us:,.0f} µs/request in-process, unprofiled ===")
            print(
                render_table(
                    ("per request", "count"),
                    [(k, f"{v:,.1f}") for k, v in count.items()],
                    right=frozenset({1}),
                )
            )
            print()
            ranked = sorted(by_component.items(), key=lambda kv: -kv[1])
            print(
                render_table(
                    ("self time by component (sampled)", "share", "≈ µs/request"),
                    [(k, f"{v:.1%}", f"{v * us:,.0f}") for k, v in ranked if v >= 0.005],
                    right=frozenset({1, 2}),
                )
            )
            print()
            step_rows = []
            for label, _fragment, _function in STEPS:
                share = by_step.get(label)
                if share and label not in {r[0] for r in step_rows}:
                    step_rows.append((label, f"{share:.1%}", f"{share * us:,.0f}"))
            print(
                render_table(
                    ("inclusive time by step (sampled)", "share", "≈ µs/request"),
                    step_rows,
                    right=frozenset({1, 2}),
                )
            )
            if args.tree:
                print(profiler.output_text(unicode=True, color=False, show_all=False))
        app.extensions["authsvc"].close()
    print(
        f"\n{args.n} requests per measurement; python {sys.version.split()[0]}. Shares are of "
        "the sampled time; µs/request = share x the unprofiled figure."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
