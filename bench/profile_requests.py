"""Where the time of one request goes: authsvc's WSGI app, in-process, sampled by py-spy.

Usage (from the project root; needs ``pip install py-spy`` in the venv)::

    /work/venv/bin/python bench/profile_requests.py [--db sqlite|postgres]
        [--scenario verify-jwt|verify-fresh|verify-cookie|login|all] [-n 3000] [--save DIR]
    /work/venv/bin/python bench/profile_requests.py --collapsed FILE  # a py-spy raw file

Builds the app as one ``authsvc serve`` worker does (``create_app``, not testing,
log level info into a temp file) on a fresh SQLite file or PostgreSQL database,
logs the bench user in once, then calls the WSGI app directly with a prebuilt
environ (no HTTP server, no test client) for each scenario:

* ``verify-jwt``: ``GET /api/auth/verify`` with one repeated RS256 JWT (http_bench b);
* ``verify-fresh``: the same with a token never seen before on every request (the
  bench user's, cycled from a list longer than the verified-token cache);
* ``verify-cookie``: the same with the session cookie (http_bench c);
* ``login``: ``POST /api/login/jwt`` for the existing user (http_bench d).

For each it prints µs per request unprofiled (best of 5 loops), exact counts per
request from cProfile (Python calls, SQL statements, ORM Sessions, pool
checkouts), and, from py-spy sampling this process at 2 kHz without pausing it,
the self time by component and the inclusive time of the pipeline's steps, as
shares of the samples and scaled to the unprofiled µs per request. C code is
sampled in its Python caller (the driver's time shows in SQLAlchemy's
``do_execute``). ``--collapsed`` reads a py-spy ``--format raw`` file instead,
e.g. one recorded from a live ``authsvc serve`` worker under wrk.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import io
import itertools
import json
import os
import pstats
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _harness import code_version, render_table
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
SCENARIOS = ("verify-jwt", "verify-fresh", "verify-cookie", "login")
# More distinct tokens than the verified-token cache holds (10,000, LRU): none is a hit.
FRESH_TOKENS = 12_000

# Self time by component: the first rule whose path fragment matches the sampled leaf frame.
# C calls are sampled in their Python caller: the driver's C time shows in SQLAlchemy's
# do_execute / do_commit / do_ping, hence their own row.
DRIVER_FUNCS = {
    "DefaultDialect.do_execute",
    "DefaultDialect.do_executemany",
    "DefaultDialect.do_execute_no_params",
    "DefaultDialect.do_commit",
    "DefaultDialect.do_rollback",
    "DefaultDialect.do_ping",
    "DefaultDialect.do_close",
}
DRIVER = "DB driver (C time in do_execute/do_commit/do_ping, psycopg)"
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("psycopg", DRIVER),
    ("sqlalchemy/orm/", "SQLAlchemy ORM"),
    ("sqlalchemy/pool/", "SQLAlchemy pool"),
    ("sqlalchemy/", "SQLAlchemy Core (engine, sql, result)"),
    ("flask/", "Flask"),
    ("werkzeug/", "Werkzeug (request/response, headers, cookies)"),
    ("authsvc/verifier.py", "authsvc verifier"),
    ("authsvc/identity.py", "authsvc claims mapping"),
    ("jmespath/", "jmespath"),
    ("authsvc/db.py", "authsvc DB-API reads (RawQuery.first, driver C time)"),
    ("authsvc/", "authsvc (other)"),
    ("joserfc/", "joserfc"),
    ("cryptography/", "cryptography"),
    ("prometheus_client/", "prometheus_client (metrics)"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("contextlib.py", "contextlib"),
    ("threading.py", "threading"),
    ("random.py", "random / os.urandom (request id)"),
    ("secrets.py", "random / os.urandom (request id)"),
    ("granian", "granian"),
)

# Inclusive time of named steps: (label, path fragment, function as py-spy names it).
STEPS: tuple[tuple[str, str, str], ...] = (
    ("Flask.wsgi_app (whole request)", "flask/app.py", "Flask.wsgi_app"),
    ("  request context push/pop", "flask/app.py", "Flask.request_context"),
    (
        "  before_request hook (_start)",
        "authsvc/request_hooks.py",
        "RequestHooks.install.<locals>._start",
    ),
    (
        "  after_request hook (_finish: metrics)",
        "authsvc/request_hooks.py",
        "RequestHooks.install.<locals>._finish",
    ),
    ("  view: verify", "authsvc/views/forward_auth.py", "verify"),
    ("  view: login_jwt", "authsvc/views/login.py", "login_jwt"),
    ("    AuthnService.caller", "authsvc/authn/service.py", "AuthnService.caller"),
    ("      JWTClient.credential", "authsvc/authn/jwt_client.py", "JWTClient.credential"),
    ("      Verifier.verify", "authsvc/verifier.py", "Verifier.verify"),
    ("      ClaimsMapper.identity", "authsvc/identity.py", "ClaimsMapper.identity"),
    ("      AuthnService._write (transaction)", "authsvc/authn/service.py", "AuthnService._write"),
    (
        "        sessionmaker.begin (new ORM Session)",
        "sqlalchemy/orm/session.py",
        "sessionmaker.begin",
    ),
    ("        provision (post-auth step)", "authsvc/authn/steps.py", "provision"),
    ("          UserStore.linked (SELECT user JOIN link)", "authsvc/users.py", "UserStore.linked"),
    ("          UserStore.sync", "authsvc/users.py", "UserStore.sync"),
    (
        "        SessionLifecycle.start (INSERT session)",
        "authsvc/sessions/lifecycle.py",
        "SessionLifecycle.start",
    ),
    ("        SessionTransaction.commit", "sqlalchemy/orm/session.py", "SessionTransaction.commit"),
    (
        "      SessionClient.authenticate",
        "authsvc/authn/session_client.py",
        "SessionClient.authenticate",
    ),
    (
        "        SessionLifecycle.resume (lookup)",
        "authsvc/sessions/lifecycle.py",
        "SessionLifecycle.resume",
    ),
    ("        Session.get(User)", "sqlalchemy/orm/session.py", "Session.get"),
    ("    logging: Logger.info", "logging/__init__.py", "Logger.info"),
    ("    jsonify", "flask/json/__init__.py", "jsonify"),
    ("    Response.set_cookie", "werkzeug/sansio/response.py", "Response.set_cookie"),
    ("any: RawQuery.first (DB-API read)", "authsvc/db.py", "RawQuery.first"),
    ("any: SqlSessionStore.lookup", "authsvc/sessions/sql.py", "SqlSessionStore.lookup"),
    (
        "any: DefaultDialect.do_execute (driver)",
        "sqlalchemy/engine/default.py",
        "DefaultDialect.do_execute",
    ),
    ("any: pool checkout (+ pre-ping)", "sqlalchemy/pool/base.py", "_ConnectionFairy._checkout"),
    ("any: ORM Session.close", "sqlalchemy/orm/session.py", "Session.close"),
    ("any: pool checkin", "sqlalchemy/pool/base.py", "_finalize_fairy"),
    ("any: prometheus labels()", "prometheus_client/metrics.py", "MetricWrapperBase.labels"),
)
_PROCESS = re.compile(r'process \d+:"[^"]*"')
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


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


def make_token(key: RSAKey, jti: str = "") -> str:
    now = int(time.time())
    claims = {"sub": "bench-user", "iat": now, "exp": now + 3600, "name": "Bench User"}
    if jti:
        claims["jti"] = jti
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"])


def wsgi_caller(
    app: Flask, method: str, path: str, headers: dict[str, str], tokens: Sequence[str] = ()
) -> Callable[[], int]:
    """One request straight into the WSGI app, as a server calls it; returns the status.

    With ``tokens``, each request carries the next of them in the JWT header (cycled)."""
    base = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    status: list[str] = []
    cycle = itertools.cycle(tokens) if tokens else None
    header_key = "HTTP_" + HEADER.upper().replace("-", "_")

    def start_response(s: str, _headers: Any, _exc: Any = None) -> Any:
        status.append(s)
        return None

    def call() -> int:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        if cycle is not None:
            environ[header_key] = next(cycle)
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


# Exact per-request counts of what cProfile saw called: label -> (file suffix, function).
# C functions are filed under "~" by cProfile.
COUNTED: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("statements via SQLAlchemy (do_execute)", (("sqlalchemy/engine/default.py", "do_execute"),)),
    (
        "statements executed (DB-API cursor.execute, all)",
        (("~", "<method 'execute' of 'sqlite3.Cursor' objects>"), ("psycopg/cursor.py", "execute")),
    ),
    ("COMMITs via SQLAlchemy (do_commit)", (("sqlalchemy/engine/default.py", "do_commit"),)),
    ("ORM Sessions created (sessionmaker())", (("sqlalchemy/orm/session.py", "__call__"),)),
    ("pool checkouts", (("sqlalchemy/pool/base.py", "_checkout"),)),
    (
        "pool pre-pings (do_ping)",
        (("sqlalchemy/engine/default.py", "do_ping"), ("_psycopg_common.py", "do_ping")),
    ),
    ("psycopg wait() calls (~ PostgreSQL round trips)", (("psycopg/connection.py", "wait"),)),
)


def counts(call: Callable[[], int], n: int) -> dict[str, float]:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        call()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out = {"Python function calls": sum(v[1] for v in stats.values()) / n}
    for label, where in COUNTED:
        out[label] = (
            sum(
                v[1]
                for (file, _line, func), v in stats.items()
                if any(file.endswith(suffix) and func == name for suffix, name in where)
            )
            / n
        )
    return out


def component(file: str, function: str) -> str:
    if function in DRIVER_FUNCS:
        return DRIVER
    if not file and function.startswith(("process", "thread ")):
        return "no Python frame (granian's runtime, native code)"
    for fragment, name in COMPONENTS:
        if fragment in file:
            return name
    if "site-packages" in file:
        return "other libraries"
    return "Python stdlib / builtins (other)"


def read_collapsed(lines: Iterator[str]) -> tuple[dict[str, float], dict[str, float], int]:
    """Self time by component, inclusive time by step (shares), and the sample count."""
    by_component: dict[str, int] = {}
    by_step: dict[str, int] = {}
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        # --subprocesses roots each stack in 'process PID:"command line"' (which may hold ';').
        for raw in _PROCESS.sub("process", stack).split(";"):
            m = None if raw.startswith(("process", "thread ")) else _FRAME.match(raw)
            frames.append((m["func"], m["file"]) if m else (raw, ""))
        total += count
        leaf_func, leaf_file = frames[-1]
        name = component(leaf_file, leaf_func)
        by_component[name] = by_component.get(name, 0) + count
        seen = set()
        for func, file in frames:
            for label, fragment, function in STEPS:
                if label not in seen and func == function and fragment in file:
                    seen.add(label)
                    by_step[label] = by_step.get(label, 0) + count
    scale = 1.0 / total if total else 0.0
    return (
        {k: v * scale for k, v in by_component.items()},
        {k: v * scale for k, v in by_step.items()},
        total,
    )


def sampled(
    call: Callable[[], int], n: int, out: Path
) -> tuple[dict[str, float], dict[str, float], int]:
    """Run ``n`` calls while py-spy samples this process; the collapsed stacks go to ``out``."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(os.getpid()), "--rate", "2000", "--nonblocking"]
    cmd += ["--format", "raw", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "Sampling process ..." once attached
        if "Sampling" not in first:
            raise RuntimeError(f"py-spy did not start: {first.strip()}")
        for _ in range(n):
            call()
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    with out.open() as f:
        return read_collapsed(iter(f))


def print_profile(
    title: str,
    by_component: dict[str, float],
    by_step: dict[str, float],
    samples: int,
    us: float | None,
) -> None:
    scaled = "≈ µs/request" if us else ""
    print(f"\n{title}: {samples} samples")
    ranked = sorted(by_component.items(), key=lambda kv: -kv[1])
    print(
        render_table(
            ("self time by component", "share", scaled),
            [(k, f"{v:.1%}", f"{v * us:,.0f}" if us else "") for k, v in ranked if v >= 0.005],
            right=frozenset({1, 2}),
        )
    )
    print()
    print(
        render_table(
            ("inclusive time by step", "share", scaled),
            [
                (label, f"{by_step[label]:.1%}", f"{by_step[label] * us:,.0f}" if us else "")
                for label, _fragment, _function in STEPS
                if by_step.get(label, 0) >= 0.002
            ],
            right=frozenset({1, 2}),
        )
    )


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    p.add_argument("-n", type=int, default=3000, help="requests per measurement [3000]")
    p.add_argument("--save", type=Path, help="keep the py-spy raw stacks in this directory")
    p.add_argument("--collapsed", type=Path, help="only summarise this py-spy --format raw file")
    args = p.parse_args(argv)
    if not 10 <= args.n <= 100_000:
        p.error("-n must be within 10..100000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.collapsed is not None:
        with args.collapsed.open() as f:
            print_profile(str(args.collapsed), *read_collapsed(iter(f)), us=None)
        return 0
    key = RSAKey.generate_key(2048, {"kid": "bench"})
    token = make_token(key)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    fresh = (
        [make_token(key, f"fresh-{n}") for n in range(FRESH_TOKENS)]
        if "verify-fresh" in scenarios
        else []
    )
    with (
        tempfile.TemporaryDirectory(prefix="profile_requests_") as tmp,
        database(args.db) as url,
        (Path(tmp) / "authsvc.log").open("w") as log_file,
    ):
        app = build_app(Path(tmp), url, key, log_file)
        cookie = set_cookie_value(app, token)
        calls = {
            "verify-jwt": wsgi_caller(app, "GET", "/api/auth/verify", {HEADER: token}),
            "verify-fresh": wsgi_caller(app, "GET", "/api/auth/verify", {}, fresh),
            "verify-cookie": wsgi_caller(
                app, "GET", "/api/auth/verify", {"Cookie": f"{COOKIE}={cookie}"}
            ),
            "login": wsgi_caller(app, "POST", "/api/login/jwt", {HEADER: token}),
        }
        save = args.save or Path(tmp)
        save.mkdir(parents=True, exist_ok=True)
        for name in scenarios:
            call = calls[name]
            for _ in range(200):  # warm-up: caches, pool, statement cache
                assert call() == 200
            us = per_request_us(call, args.n)
            count = counts(call, args.n)
            print(f"\n=== {name} ({args.db}): {us:,.0f} µs/request in-process, unprofiled ===")
            print(
                render_table(
                    ("per request (cProfile)", "count"),
                    [(k, f"{v:,.1f}") for k, v in count.items()],
                    right=frozenset({1}),
                )
            )
            stacks = save / f"{name}-{args.db}.pyspy.txt"
            print_profile(f"py-spy, {stacks.name}", *sampled(call, args.n, stacks), us=us)
        app.extensions["authsvc"].close()
    print(
        f"\n{code_version(REPO)}; {args.n} requests per measurement; python "
        f"{sys.version.split()[0]}; load average "
        f"{os.getloadavg()[0]:.1f}. Shares are of py-spy's samples; µs/request = share x the "
        "unprofiled figure."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
