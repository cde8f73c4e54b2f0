"""authsvc over HTTP under wrk, next to a Flask "hello world" on the same server setup.

Usage (from the project root)::

    /work/venv/bin/python bench/http_bench.py [--quick] [--duration 10] [--repeat 1]
        [--db sqlite|postgres|both] [--py-spy DIR]

Runs, each after an unrecorded wrk warm-up, ``wrk -t2 -c64 -d<duration>s --latency``:

a. ``hello``: bench/hello_app.py under granian (2 workers, 4 blocking threads, as
   ``authsvc serve`` runs), the ceiling for a Flask app on this machine;
b. ``GET /api/auth/verify`` with one repeated, valid RS256 JWT in the header (set by
   a wrk Lua script; the user exists, so this is the steady state: verified-token
   cache hit, user lookup, no write), and its ratio to (a);
b2. (b) again on a second server with ``[upstream_assertion]`` on (a P-256 ``[signing]``
   key): every 200 carries a signed assertion, from its per-caller cache; its ratio to
   (b) is printed after the table (issue 10's target: at least 0.85);
c. ``GET /api/auth/verify`` with the session cookie of a ``POST /api/login/jwt``;
d. ``POST /api/login/jwt`` for an existing user (one new session row each): at the
   most wrk reaches with 64 connections, with 4 connections, and paced near
   ``--rate`` per second (wrk has no fixed-rate mode and wrk2 is not installed: 16
   connections each wait ``16/rate - p50(-c4)`` between requests, so the achieved
   rate is printed, not assumed).

(b) to (d) run against ``python -m authsvc serve`` (2 workers) on a fresh SQLite file,
then on a fresh PostgreSQL database (127.0.0.1:5432, created and dropped here).
Every run is bounded by its duration plus a timeout; servers are always stopped.
wrk shares the machine's CPUs with the server: figures compare with each other,
not with other hosts, and any other load on the machine shows in them (the load
average is printed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    HOST,
    Server,
    ServerError,
    WrkResult,
    code_version,
    free_port,
    launch,
    render_table,
    run_wrk,
)
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet, RSAKey
from server_compare import EXPECTED_BODY, Variant, server_command

REPO = Path(__file__).resolve().parent.parent
HEADER = "X-JWT-Assertion"
COOKIE = "authsvc_session"  # [auth] login_cookie_name in conf/defaults.ini
SUBJECT = "bench-user"
PG_ADMIN = f"host={HOST} port=5432 dbname=test user=postgres"
PACED_CONNECTIONS = 16
# The issue's targets (figures, not assertions: see shared STYLE "Speed is a feature").
VERIFY_RATIO_TARGET = 0.85
ASSERTION_RATIO_TARGET = 0.85
LOGIN_P99_TARGET_MS = 20.0
LOGIN_RATE_TARGET = 1000


@dataclass
class Row:
    scenario: str
    database: str
    connections: str
    result: WrkResult | None = None
    error: str = ""
    vs_hello: str = ""
    target: str = ""


# ------------------------------------------------------------------ set-up
def make_home(root: Path, key: RSAKey) -> Path:
    """A home path: conf/defaults.ini of this checkout and the public JWKS of ``key``."""
    home = root / "home"
    (home / "conf").mkdir(parents=True)
    shutil.copy(REPO / "conf" / "defaults.ini", home / "conf" / "defaults.ini")
    (home / "jwks.json").write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    return home


ISSUER = "https://bench.example.com/"


def make_token(key: RSAKey, lifetime: int) -> str:
    now = int(time.time())
    claims = {
        "sub": SUBJECT,
        "iat": now,
        "exp": now + lifetime,
        "name": "Bench User",
        "iss": ISSUER,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"])


def authsvc_command(
    home: Path,
    port: int,
    workers: int,
    database_url: str,
    issuers: int = 1,
    assertion_key: Path | None = None,
) -> list[str]:
    """``issuers`` > 1 adds named issuers on the same header, told apart by ``issuer``:
    the bench token routes to [auth.jwt] by its iss, after the others were asked.
    ``assertion_key`` turns ``[upstream_assertion]`` on, signed with that key file."""
    args = [
        f"cfg:server.http_port={port}",
        f"cfg:server.workers={workers}",
        "cfg:auth.jwt.enabled=true",
        f"cfg:auth.jwt.header_name={HEADER}",
        f"cfg:auth.jwt.jwk_set_file={home / 'jwks.json'}",
        "cfg:auth.jwt.auto_sign_up=true",
        "cfg:auth.jwt.username_claim=sub",
        f"cfg:auth.jwt.issuer={ISSUER}",
    ]
    for n in range(1, issuers):
        section = f"auth.jwt.extra{n}"
        args += [
            f"cfg:{section}.header_name={HEADER}",
            f"cfg:{section}.jwk_set_file={home / 'jwks.json'}",
            f"cfg:{section}.issuer=https://extra{n}.example.com/",
            f"cfg:{section}.username_claim=sub",
        ]
    if database_url:
        args += ["cfg:database.type=postgres", f"cfg:database.url={database_url}"]
    if assertion_key is not None:
        args += [f"cfg:signing.key_file={assertion_key}", "cfg:upstream_assertion.enabled=true"]
    return [sys.executable, "-m", "authsvc", "serve", "--homepath", str(home), *args]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards."""
    import psycopg

    name = f"authsvc_bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise ServerError(f"cannot create a PostgreSQL database: {exc}") from None
    try:
        yield f"postgres://postgres@{HOST}:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def login(port: int, token: str) -> str:
    """POST /api/login/jwt once: creates the user on first call; returns the session cookie."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", "/api/login/jwt", headers={HEADER: token})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise ServerError(f"login answered {resp.status}: {body[:300]!r}")
        for header, value in resp.getheaders():
            if header.lower() == "set-cookie" and value.startswith(f"{COOKIE}="):
                return value.split(";", 1)[0].split("=", 1)[1]
    finally:
        conn.close()
    raise ServerError("login set no session cookie")


def lua_script(
    path: Path, method: str, headers: dict[str, str], delay_ms: float | None = None
) -> Path:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if delay_ms is not None:
        lines += ["function delay()", f"  return {max(0, round(delay_ms))}", "end"]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ runs
class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp

    def wrk(self, server: Server, path: str, connections: int, script: Path, tag: str) -> WrkResult:
        a = self.args
        url = f"http://{HOST}:{server.port}{path}"
        threads = min(a.threads, connections)
        if a.warmup:
            run_wrk(url, a.warmup, threads, connections, script)
        runs = []
        for i in range(a.repeat):
            with self.py_spy(server, f"{tag}-{script.stem}-c{connections}-{i + 1}"):
                result, raw = run_wrk(url, a.duration, threads, connections, script)
            runs.append(result)
            if a.verbose:
                print(f"--- {path} -c{connections} run {i + 1} ---\n{raw}", file=sys.stderr)
            server.check_alive()
        return sorted(runs, key=lambda r: r.requests_per_sec)[(len(runs) - 1) // 2]

    @contextmanager
    def py_spy(self, server: Server, name: str) -> Iterator[None]:
        """With ``--py-spy DIR``: sample the server's processes during the measured run."""
        if self.args.py_spy is None:
            yield
            return
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        out = self.args.py_spy / f"{name}.txt"
        spy = Path(sys.executable).parent / "py-spy"
        cmd = [str(spy), "record", "--pid", str(server.proc.pid), "--subprocesses"]
        # --gil: in each worker, the thread holding the GIL, i.e. the Python work that
        # bounds a worker's throughput (runnable threads waiting for a CPU would count too).
        cmd += ["--gil", "--nonblocking", "--rate", "250", "--duration", str(self.args.duration)]
        cmd += ["--format", "raw", "--output", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # let it attach to every worker
            yield
        finally:
            try:
                proc.wait(timeout=self.args.duration + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def hello(self) -> Row:
        a = self.args
        row = Row("a. hello world (Flask, granian bt=4)", "-", str(a.connections))
        port = free_port()
        variant = Variant("granian bt=4", "granian", ("--blocking-threads", "4"))
        cmd = server_command(variant, port, a.workers)
        try:
            with launch(cmd, port, self.tmp / "hello.log") as server:
                server.wait_ready("/", EXPECTED_BODY)
                script = lua_script(self.tmp / "hello.lua", "GET", {})
                row.result = self.wrk(server, "/", a.connections, script, "hello")
        except (ServerError, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            row.error = f"{type(exc).__name__}: {exc}"
        return row

    def authsvc(self, key: RSAKey, database: str, database_url: str) -> list[Row]:
        a = self.args
        home = make_home(self.tmp / database, key)
        token = make_token(key, lifetime=3600)
        port = free_port()
        cmd = authsvc_command(home, port, a.workers, database_url, a.issuers)
        c = str(a.connections)
        rows = [
            Row("b. GET /api/auth/verify, JWT", database, c),
            Row("c. GET /api/auth/verify, cookie", database, c),
            Row("d. POST /api/login/jwt", database, c),
            Row("d. POST /api/login/jwt", database, "4"),
            Row("d. POST /api/login/jwt, paced", database, str(PACED_CONNECTIONS)),
        ]
        rows[0].target = f">= {VERIFY_RATIO_TARGET}x hello"
        if database == "sqlite":
            for r in rows[2:]:
                r.target = f"p99 < {LOGIN_P99_TARGET_MS:g} ms at {LOGIN_RATE_TARGET}/s"
        s = self.tmp / database
        jwt_headers = {HEADER: token}
        try:
            with launch(cmd, port, self.tmp / f"authsvc_{database}.log") as server:
                server.wait_ready("/api/health")
                cookie = login(port, token)
                verify_jwt = lua_script(s / "verify_jwt.lua", "GET", jwt_headers)
                verify_cookie = lua_script(
                    s / "verify_cookie.lua", "GET", {"Cookie": f"{COOKIE}={cookie}"}
                )
                post = lua_script(s / "login.lua", "POST", jwt_headers)
                rows[0].result = self.wrk(
                    server, "/api/auth/verify", a.connections, verify_jwt, database
                )
                rows[1].result = self.wrk(
                    server, "/api/auth/verify", a.connections, verify_cookie, database
                )
                rows[2].result = self.wrk(server, "/api/login/jwt", a.connections, post, database)
                rows[3].result = self.wrk(server, "/api/login/jwt", 4, post, database)
                # Each paced connection sends one request per 16/rate seconds, latency included.
                delay = PACED_CONNECTIONS * 1000 / a.rate - rows[3].result.p50_ms
                paced = lua_script(s / "login_paced.lua", "POST", jwt_headers, delay)
                rows[4].connections += f", {max(0, round(delay))} ms apart"
                rows[4].result = self.wrk(
                    server, "/api/login/jwt", PACED_CONNECTIONS, paced, database
                )
        except (ServerError, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            message = f"{type(exc).__name__}: {exc}"
            for r in rows:
                if r.result is None and not r.error:
                    r.error = message
        return rows

    def upstream_assertion(self, key: RSAKey, database: str, database_url: str) -> Row:
        """(b) with [upstream_assertion] on, on its own server (same home, same token)."""
        a = self.args
        row = Row("b2. GET /api/auth/verify, JWT, assertion", database, str(a.connections))
        row.target = f">= {ASSERTION_RATIO_TARGET}x b."
        home = self.tmp / database / "home"
        signing = home / "signing.pem"
        signing.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
        port = free_port()
        cmd = authsvc_command(home, port, a.workers, database_url, a.issuers, signing)
        script = lua_script(
            self.tmp / database / "verify_jwt.lua", "GET", {HEADER: make_token(key, 3600)}
        )
        try:
            with launch(cmd, port, self.tmp / f"authsvc_{database}_assertion.log") as server:
                server.wait_ready("/api/health")
                row.result = self.wrk(server, "/api/auth/verify", a.connections, script, database)
        except (ServerError, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            row.error = f"{type(exc).__name__}: {exc}"
        return row


def assertion_ratios(rows: Sequence[Row]) -> list[str]:
    """Per database: (b2) req/s over (b) req/s, the upstream assertion's cost."""
    lines = []
    for b2 in (r for r in rows if r.scenario.startswith("b2.") and r.result is not None):
        b = next(
            (r for r in rows if r.scenario.startswith("b.") and r.database == b2.database), None
        )
        if b is not None and b.result is not None and b2.result is not None:
            ratio = b2.result.requests_per_sec / b.result.requests_per_sec
            lines.append(
                f"upstream assertion ({b2.database}): {ratio:.2f}x the throughput without it "
                f"(target >= {ASSERTION_RATIO_TARGET}x)"
            )
    return lines


# ------------------------------------------------------------------ report
def format_rows(rows: Sequence[Row], hello: WrkResult | None) -> str:
    headers = (
        "scenario",
        "db",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs hello",
        "target",
    )
    cells: list[tuple[str, ...]] = []
    for r in rows:
        if r.result is None:
            first_line = (r.error or "not run").splitlines()[0]
            cells.append(
                (r.scenario, r.database, r.connections, "FAIL", "-", "-", "-", "", first_line)
            )
            continue
        res = r.result
        ratio = (
            f"{res.requests_per_sec / hello.requests_per_sec:.2f}x"
            if hello is not None and r.scenario.startswith(("b.", "c."))
            else ""
        )
        cells.append(
            (
                r.scenario,
                r.database,
                r.connections,
                f"{res.requests_per_sec:,.0f}",
                f"{res.p50_ms:.2f}",
                f"{res.p99_ms:.2f}",
                res.describe_errors(),
                ratio,
                r.target,
            )
        )
    return render_table(headers, cells, right=frozenset({3, 4, 5, 7}))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="wrk seconds per run [10]")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded warm-up seconds [2]")
    p.add_argument("--repeat", type=int, default=1, help="measured runs per row (median) [1]")
    p.add_argument("--quick", action="store_true", help="short runs: --duration 3 --warmup 1")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--issuers", type=int, default=1, help="issuers configured on the header [1]")
    p.add_argument("--workers", type=int, default=2, help="server worker processes [2]")
    p.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    p.add_argument("--connections", type=int, default=64, help="wrk connections [64]")
    p.add_argument("--rate", type=int, default=LOGIN_RATE_TARGET, help="paced logins/s [1000]")
    p.add_argument("--verbose", action="store_true", help="print raw wrk output to stderr")
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record py-spy stacks (GIL holders) of the servers during each measured run into "
        "DIR (summarise with profile_requests.py --collapsed; costs the server some CPU)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    if not (1 <= args.duration <= 300 and 0 <= args.warmup <= 60 and 1 <= args.repeat <= 9):
        p.error("--duration must be within 1..300, --warmup within 0..60, --repeat 1..9")
    if args.workers < 1 or args.threads < 1 or args.connections < max(args.threads, 4):
        p.error("--workers and --threads must be >= 1, --connections >= max(threads, 4)")
    if not 1 <= args.rate <= 100_000:
        p.error("--rate must be within 1..100000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    started = time.monotonic()
    key = RSAKey.generate_key(2048, {"kid": "bench"})
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (+{args.warmup}s warm-up, "
        f"median of {args.repeat}) "
        f"--latency; {args.workers} workers; {args.issuers} issuer(s); "
        f"databases: {', '.join(databases)}; "
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="http_bench_") as tmp_name:
        tmp = Path(tmp_name)
        bench = Bench(args, tmp)
        print("[hello] running ...", file=sys.stderr, flush=True)
        hello = bench.hello()
        rows.append(hello)
        for database in databases:
            print(f"[authsvc {database}] running ...", file=sys.stderr, flush=True)
            if database == "postgres":
                try:
                    with postgres_database() as url:
                        rows += bench.authsvc(key, database, url)
                        rows.append(bench.upstream_assertion(key, database, url))
                except ServerError as exc:
                    rows.append(Row("b.-d.", database, "-", error=str(exc)))
            else:
                rows += bench.authsvc(key, database, "")
                rows.append(bench.upstream_assertion(key, database, ""))
        for r in rows:
            if r.error:
                print(f"[{r.scenario} / {r.database}] FAILED: {r.error}", file=sys.stderr)

    print(format_rows(rows, hello.result))
    for line in assertion_ratios(rows):
        print(line)
    print(
        "\nreq/s and p50/p99 from wrk --latency (closed loop: latency at the rate wrk reached; "
        "requests past wrk's 2 s timeout are not in the histogram, see 'errors'). 'vs hello' = "
        "req/s / hello req/s. The JWT is one RS256 token repeated (verified-token cache hit); "
        "every login writes a session row. "
        f"{code_version(REPO)}. Load average {os.getloadavg()[0]:.1f} at the end; "
        f"{time.monotonic() - started:.0f}s."
    )
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
