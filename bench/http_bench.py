"""authsvc over HTTP under wrk, next to a Flask "hello world" and node + jose, in one run.

Usage (from the project root)::

    .venv/bin/python bench/http_bench.py [--quick] [--duration 10] [--repeat 1]
        [--connections 16] [--db sqlite|postgres|both] [--logins] [--py-spy DIR]

Every row is ``wrk -t2 -c<connections> -d<duration>s --latency`` (after an
unrecorded warm-up) against a real server on 127.0.0.1 with 2 workers:

* ``hello``: bench/hello_app.py under granian (2 workers, as ``authsvc serve``
  runs them): the ceiling for a Flask app on this machine;
* ``node+jose``: node's http server verifying every request's RS256 JWT with npm
  ``jose`` against a local JWKS, one process (bench/node_jose; ``npm ci`` there
  first): a hand-rolled verifier to beat;
* ``authsvc serve`` (RS256 ``key_file``, auto sign-up, the user existing) on
  SQLite and on PostgreSQL, ``GET /api/auth/verify`` with one repeated token, a
  new token on every request (tokens cycled from a list longer than the
  verified-token cache can hold, so none is a cache hit), and a session cookie;
* the repeated token again with ``[upstream_assertion]`` on (ES256 signing key),
  with three issuers configured on the header (routed by ``iss``), and with
  ``[metrics] enabled = false`` (no counting: what the counters cost) — each of
  these next to a server with the defaults, measured alternately with it, so that
  the ratio is not the machine drifting between rows minutes apart;
* with ``--logins``, ``POST /api/login/jwt`` for the existing user.

Then the ratios the issues set goals for. wrk shares the machine's CPUs with
the servers: figures compare with each other, in one run, not with other hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
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
from dataclasses import dataclass, field
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
NODE_DIR = REPO / "bench" / "node_jose"
HEADER = "X-JWT-Assertion"
COOKIE = "authsvc_session"  # [auth] login_cookie_name in conf/defaults.ini
SUBJECT = "bench-user"
ISSUER = "https://bench.example.com/"
PG_ADMIN = f"host={HOST} port=5432 dbname=test user=postgres"
# More distinct tokens than the verified-token cache holds (10,000 per worker, LRU):
# cycled, a token comes back after the cache has let it go.
FRESH_TOKENS = 32_000


@dataclass
class Row:
    name: str
    key: str
    """How the ratios below refer to it."""
    result: WrkResult | None = None
    error: str = ""


@dataclass(frozen=True)
class Goal:
    label: str
    over: str
    under: str
    target: float


GOALS = (
    Goal("repeated token / hello world", "jwt-sqlite", "hello", 0.9),
    Goal("fresh token per request / hello world", "fresh-sqlite", "hello", 0.6),
    Goal("fresh token per request / node + jose (1 process)", "fresh-sqlite", "node", 0.6),
    Goal("session cookie / repeated token (SQLite)", "cookie-sqlite", "jwt-sqlite", 0.8),
    Goal("repeated token, PostgreSQL / SQLite", "jwt-postgres", "jwt-sqlite", 0.5),
    Goal(
        "session cookie, PostgreSQL / repeated token SQLite", "cookie-postgres", "jwt-sqlite", 0.4
    ),
    # Each variant against its own base, measured alternately with it (Bench.variant).
    Goal("with [upstream_assertion] on / off", "assertion", "assertion-base", 0.85),
    Goal("three issuers / one issuer (repeated token)", "issuers3", "issuers3-base", 0.95),
    Goal("metrics counted / [metrics] off (repeated token)", "nometrics-base", "nometrics", 0.95),
)


# ------------------------------------------------------------------ set-up
def make_home(root: Path, key: RSAKey) -> Path:
    """A home path: this checkout's conf/defaults.ini, the RS256 key and a signing key."""
    home = root / "home"
    (home / "conf").mkdir(parents=True)
    shutil.copy(REPO / "conf" / "defaults.ini", home / "conf" / "defaults.ini")
    (home / "key.pem").write_bytes(key.as_pem(private=False))
    (home / "jwks.json").write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    (home / "signing.pem").write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    return home


def make_token(key: RSAKey, lifetime: int, jti: str = "") -> str:
    now = int(time.time())
    claims = {"sub": SUBJECT, "iat": now, "exp": now + lifetime, "name": "Bench User"}
    claims["iss"] = ISSUER
    if jti:
        claims["jti"] = jti
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"])


def _sign_many(args: tuple[dict[str, object], int, int]) -> list[str]:
    private, start, count = args
    key = RSAKey.import_key(private)
    return [make_token(key, 3600, f"fresh-{n}") for n in range(start, start + count)]


def fresh_tokens(key: RSAKey, path: Path, count: int) -> Path:
    """``count`` distinct tokens of the bench user, one per line (signed on every CPU)."""
    private = key.as_dict(private=True)
    cpus = os.cpu_count() or 1
    chunk = -(-count // cpus)
    jobs = [(private, n, min(chunk, count - n)) for n in range(0, count, chunk)]
    with multiprocessing.Pool(cpus) as pool:
        lines = [t for part in pool.map(_sign_many, jobs) for t in part]
    path.write_text("\n".join(lines) + "\n")
    return path


def authsvc_command(
    home: Path,
    port: int,
    workers: int,
    database_url: str,
    *,
    issuers: int = 1,
    assertion: bool = False,
    metrics: bool = True,
) -> list[str]:
    """``authsvc serve`` on ``home``. ``issuers`` > 1 adds named issuers on the same header,
    told apart by ``issuer``; ``assertion`` turns ``[upstream_assertion]`` on; ``metrics``
    off stops counting."""
    args = [
        f"cfg:server.http_port={port}",
        f"cfg:server.workers={workers}",
        "cfg:auth.jwt.enabled=true",
        f"cfg:auth.jwt.header_name={HEADER}",
        f"cfg:auth.jwt.key_file={home / 'key.pem'}",
        f"cfg:auth.jwt.key_id={SUBJECT}",
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
    if assertion:
        args += [
            f"cfg:signing.key_file={home / 'signing.pem'}",
            "cfg:upstream_assertion.enabled=true",
        ]
    if not metrics:
        args.append("cfg:metrics.enabled=false")
    if database_url:
        args += ["cfg:database.type=postgres", f"cfg:database.url={database_url}"]
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


def lua_tokens(path: Path, tokens: Path) -> Path:
    """A new token on every request, each wrk thread starting at its own place in the list
    (two threads sending one token at once would make the second a cache hit)."""
    path.write_text(
        f"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local tokens = {{}}
local i = 0
function init(args)
  for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
  i = math.floor(wrk.thread:get("id") * #tokens / 2)
end
function request()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", nil, {{["{HEADER}"] = tokens[i]}})
end
"""
    )
    return path


# ------------------------------------------------------------------ runs
@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    key: RSAKey
    rows: list[Row] = field(default_factory=list)

    def wrk(self, server: Server, path: str, script: Path, connections: int = 0) -> WrkResult:
        a = self.args
        connections = connections or a.connections
        url = f"http://{HOST}:{server.port}{path}"
        threads = min(a.threads, connections)
        if a.warmup:
            run_wrk(url, a.warmup, threads, connections, script)
        runs = []
        for i in range(a.repeat):
            with self.py_spy(server, f"{script.stem}-c{connections}-{i + 1}"):
                result, raw = run_wrk(url, a.duration, threads, connections, script)
            if a.verbose:
                print(raw, file=sys.stderr)
            server.check_alive()
            runs.append(result)
        runs.sort(key=lambda r: r.requests_per_sec)
        return runs[len(runs) // 2]

    @contextmanager
    def py_spy(self, server: Server, name: str) -> Iterator[None]:
        """With ``--py-spy DIR``: sample the server's processes during the measured run."""
        if not self.args.py_spy:
            yield
            return
        out = Path(self.args.py_spy) / f"{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["py-spy", "record", "--pid", str(server.proc.pid), "--subprocesses"]
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

    def measure(self, rows: Sequence[Row], run: object) -> None:
        """Run ``run()`` (which fills rows' results); any failure is every unfilled row's."""
        try:
            run()  # type: ignore[operator]
        except (ServerError, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            for row in rows:
                if row.result is None and not row.error:
                    row.error = f"{type(exc).__name__}: {exc}"
        self.rows.extend(rows)

    def hello(self) -> None:
        row = Row("hello world (Flask, granian, 2 workers)", "hello")

        def run() -> None:
            port = free_port()
            variant = Variant("granian bt=4", "granian", ("--blocking-threads", "4"))
            with launch(
                server_command(variant, port, self.args.workers), port, self.tmp / "hello.log"
            ) as server:
                server.wait_ready("/", EXPECTED_BODY)
                row.result = self.wrk(server, "/", lua_script(self.tmp / "hello.lua", "GET", {}))

        self.measure([row], run)

    def node(self, tokens: Path) -> None:
        row = Row("node http + jose, new token each request, 1 process", "node")

        def run() -> None:
            if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
                raise ServerError(f"node or {NODE_DIR}/node_modules missing: npm ci there first")
            port = free_port()
            home = make_home(self.tmp / "node", self.key)
            cmd = ["node", str(NODE_DIR / "server.mjs"), str(port), str(home / "jwks.json"), HEADER]
            with launch(cmd, port, self.tmp / "node.log", cwd=NODE_DIR) as server:
                server.wait_ready("/", accept_any_status=True)
                row.result = self.wrk(server, "/", lua_tokens(self.tmp / "node_fresh.lua", tokens))

        self.measure([row], run)

    def authsvc(self, database: str, database_url: str, tokens: Path) -> None:
        """One server: a repeated token, fresh tokens, a cookie (and logins)."""
        rows = [
            Row(f"/api/auth/verify, repeated token, {database}", f"jwt-{database}"),
            Row(f"/api/auth/verify, new token each request, {database}", f"fresh-{database}"),
            Row(f"/api/auth/verify, session cookie, {database}", f"cookie-{database}"),
        ]
        if self.args.logins:
            rows.append(Row(f"POST /api/login/jwt, existing user, {database}", f"login-{database}"))
        s = self.tmp / database
        home = make_home(s, self.key)
        token = make_token(self.key, 3600)

        def run() -> None:
            port = free_port()
            cmd = authsvc_command(home, port, self.args.workers, database_url)
            with launch(cmd, port, s / "authsvc.log") as server:
                server.wait_ready("/api/health")
                cookie = login(port, token)
                jwt_headers = {HEADER: token}
                rows[0].result = self.wrk(
                    server, "/api/auth/verify", lua_script(s / "jwt.lua", "GET", jwt_headers)
                )
                rows[1].result = self.wrk(
                    server, "/api/auth/verify", lua_tokens(s / "fresh.lua", tokens)
                )
                cookie_script = lua_script(
                    s / "cookie.lua", "GET", {"Cookie": f"{COOKIE}={cookie}"}
                )
                rows[2].result = self.wrk(server, "/api/auth/verify", cookie_script)
                if self.args.logins:
                    post = lua_script(s / "login.lua", "POST", jwt_headers)
                    rows[3].result = self.wrk(server, "/api/login/jwt", post, connections=4)

        self.measure(rows, run)

    def variant(self, key: str, name: str, **options: object) -> None:
        """The repeated token on a server with one option changed (SQLite), next to a
        server without the change, measured alternately (base, variant, base, ...) so
        that both see the same moment of a machine whose speed drifts over minutes;
        the goal's ratio is to this paired base."""
        row = Row(name, key)
        base = Row("  its paired base (defaults, one issuer), same rounds", key + "-base")
        token = make_token(self.key, 3600)

        def run() -> None:
            with contextlib.ExitStack() as stack:
                servers = []
                for which, opts in (("base", {}), ("variant", options)):
                    s = self.tmp / key / which
                    home = make_home(s, self.key)
                    port = free_port()
                    cmd = authsvc_command(home, port, self.args.workers, "", **opts)  # type: ignore[arg-type]
                    server = stack.enter_context(launch(cmd, port, s / "authsvc.log"))
                    server.wait_ready("/api/health")
                    login(port, token)
                    servers.append((server, lua_script(s / "jwt.lua", "GET", {HEADER: token})))
                base.result, row.result = self.alternate(servers)

        self.measure([row, base], run)

    def alternate(self, servers: Sequence[tuple[Server, Path]]) -> list[WrkResult]:
        """Each server warmed up, then one measured run of each in turn, ``--repeat``
        rounds (at least 3); the median run of each."""
        a = self.args
        threads = min(a.threads, a.connections)
        urls = [f"http://{HOST}:{server.port}/api/auth/verify" for server, _ in servers]
        if a.warmup:
            for url, (_, script) in zip(urls, servers, strict=True):
                run_wrk(url, a.warmup, threads, a.connections, script)
        runs: list[list[WrkResult]] = [[] for _ in servers]
        for _ in range(max(3, a.repeat)):
            for n, (url, (server, script)) in enumerate(zip(urls, servers, strict=True)):
                result, raw = run_wrk(url, a.duration, threads, a.connections, script)
                if a.verbose:
                    print(raw, file=sys.stderr)
                server.check_alive()
                runs[n].append(result)
        return [sorted(r, key=lambda x: x.requests_per_sec)[len(r) // 2] for r in runs]


# ------------------------------------------------------------------ report
def format_rows(rows: Sequence[Row]) -> str:
    headers = ("scenario", "req/s", "p50 ms", "p99 ms", "errors")
    cells = []
    for r in rows:
        if r.result is None:
            cells.append((r.name, "FAIL", "-", "-", (r.error or "not run").splitlines()[0][:80]))
        else:
            res = r.result
            cells.append(
                (
                    r.name,
                    f"{res.requests_per_sec:,.0f}",
                    f"{res.p50_ms:.2f}",
                    f"{res.p99_ms:.2f}",
                    res.describe_errors(),
                )
            )
    return render_table(headers, cells, right=frozenset({1, 2, 3}))


def format_goals(rows: Sequence[Row]) -> str:
    by_key = {r.key: r.result for r in rows if r.result is not None}
    cells = []
    for goal in GOALS:
        over, under = by_key.get(goal.over), by_key.get(goal.under)
        if over is None or under is None:
            cells.append((goal.label, "-", f">= {goal.target}", "not measured"))
            continue
        ratio = over.requests_per_sec / under.requests_per_sec
        met = "met" if ratio >= goal.target else "NOT met"
        cells.append((goal.label, f"{ratio:.2f}", f">= {goal.target}", met))
    return render_table(("ratio", "measured", "goal", ""), cells, right=frozenset({1}))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="wrk seconds per run [10]")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded warm-up seconds [2]")
    p.add_argument("--repeat", type=int, default=1, help="measured runs per row (median) [1]")
    p.add_argument("--quick", action="store_true", help="short runs: --duration 3 --warmup 1")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--workers", type=int, default=2, help="server worker processes [2]")
    p.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    p.add_argument("--connections", type=int, default=16, help="wrk connections [16]")
    p.add_argument("--logins", action="store_true", help="also POST /api/login/jwt (4 conns)")
    p.add_argument("--verbose", action="store_true", help="print raw wrk output to stderr")
    p.add_argument("--py-spy", metavar="DIR", help="record py-spy raw profiles of each run")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    key = RSAKey.generate_key(2048, {"kid": SUBJECT})
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (+{args.warmup}s "
        f"warm-up, median of {args.repeat}) --latency; {args.workers} workers; "
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="http_bench_") as tmp_name:
        tmp = Path(tmp_name)
        print(f"[tokens] signing {FRESH_TOKENS:,} ...", file=sys.stderr, flush=True)
        tokens = fresh_tokens(key, tmp / "tokens.txt", FRESH_TOKENS)
        bench = Bench(args, tmp, key)
        steps = [("hello", bench.hello)]
        for database in databases:
            if database == "postgres":

                def on_postgres() -> None:
                    try:
                        with postgres_database() as url:
                            bench.authsvc("postgres", url, tokens)
                    except ServerError as exc:
                        bench.rows.append(Row("PostgreSQL rows", "jwt-postgres", error=str(exc)))

                steps.append(("authsvc postgres", on_postgres))
            else:
                steps.append(("authsvc sqlite", lambda: bench.authsvc("sqlite", "", tokens)))
        steps += [
            ("node + jose", lambda: bench.node(tokens)),
            ("assertion", lambda: bench.variant(
                "assertion", "/api/auth/verify, repeated token, [upstream_assertion] on",
                assertion=True,
            )),
            ("three issuers", lambda: bench.variant(
                "issuers3", "/api/auth/verify, repeated token, three issuers", issuers=3
            )),
            ("metrics off", lambda: bench.variant(
                "nometrics", "/api/auth/verify, repeated token, [metrics] off",
                metrics=False,
            )),
        ]  # fmt: skip
        for name, step in steps:
            print(f"[{name}] running ...", file=sys.stderr, flush=True)
            step()
    rows = bench.rows
    for r in rows:
        if r.error:
            print(f"[{r.name}] FAILED: {r.error}", file=sys.stderr)
    print(format_rows(rows))
    print()
    print(format_goals(rows))
    print(
        f"\nwrk -c{args.connections}, closed loop; {code_version(REPO)}. "
        f"Load average {os.getloadavg()[0]:.1f} at the end; {time.monotonic() - started:.0f}s."
    )
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
