"""``authsvc serve`` and ``authsvc check-config`` as real processes.

Each server is ``python -m authsvc serve`` on a free 127.0.0.1 port, in its own
process group (so that teardown can reach granian's workers too), with a home
path holding only conf/defaults.ini.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import authsvc

pytestmark = pytest.mark.slow

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
HEALTHY = {"database": "ok", "keys": "disabled", "version": authsvc.__version__}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# One problem line of check-config: FILE [SECTION] KEY: why
PROBLEM_LINE = re.compile(r"^(?P<file>\S.*) \[(?P<section>[^\]]+)\] (?P<key>\S+): (?P<why>.+)$")


def _env() -> dict[str, str]:
    """This process's environment without authsvc's own variables (the config is the test's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "_AUTHSVC_"))}


def _authsvc(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authsvc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self) -> requests.Response:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                response = requests.get(self.url("/api/health"), timeout=2)
            except requests.ConnectionError:
                response = None
            if response is not None and response.status_code == 200:
                return response
            time.sleep(0.1)
        pytest.fail(f"no 200 from /api/health within {START_TIMEOUT}s:\n{self.output()}")

    def wait_for_output(self, text: str, timeout: float = STOP_TIMEOUT) -> None:
        """Poll the server's output (granian's log lines included) for ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {timeout}s:\n{self.output()}")
            time.sleep(0.01)

    def wait_workers_started(self, workers: int) -> None:
        """The first 200 comes from the first worker up; the others may still be booting."""
        for n in range(1, workers + 1):
            self.wait_for_output(f"Started worker-{n}\n", START_TIMEOUT)

    def terminate(self) -> int:
        """SIGTERM, then the exit status; fails if the process takes longer than STOP_TIMEOUT."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {STOP_TIMEOUT}s after SIGTERM:\n{self.output()}")

    def assert_port_closed(self) -> None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()


ServeFactory = Callable[..., Server]


@pytest.fixture
def serve(homepath: Path, tmp_path: Path) -> Iterator[ServeFactory]:
    """``serve("cfg:server.workers=1", ...)`` starts ``authsvc serve``; teardown kills leftovers."""
    started: list[Server] = []

    def start(*cfg: str) -> Server:
        port = _free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        argv = [
            sys.executable,
            "-m",
            "authsvc",
            "serve",
            "--homepath",
            str(homepath),
            f"cfg:server.http_port={port}",
            *cfg,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
            )
        server = Server(proc, port, log)
        started.append(server)
        return server

    yield start
    for server in started:
        # The process group holds the main process and its workers, all started here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> list[str]:
    """cfg: arguments naming a fresh database of each backend."""
    if request.param == "postgres":
        return [f"cfg:database.url={request.getfixturevalue('pg_url')}"]
    return []


# --------------------------------------------------------------------------- serve
@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_serve_answers_and_stops_on_sigterm(
    serve: ServeFactory, database: list[str], workers: int
) -> None:
    server = serve(f"cfg:server.workers={workers}", *database)

    response = server.wait_healthy()
    server.wait_workers_started(workers)

    assert response.json() == HEALTHY
    assert response.headers["X-Request-Id"]
    assert server.terminate() == 0
    server.assert_port_closed()


def test_sigterm_while_workers_start(serve: ServeFactory) -> None:
    """A SIGTERM during start-up (a rollout that changes its mind) stops the service promptly."""
    server = serve("cfg:server.workers=2")
    server.wait_for_output("Spawning worker-2", START_TIMEOUT)

    assert server.terminate() == 0
    server.assert_port_closed()


def test_second_serve_on_a_migrated_database(serve: ServeFactory, database: list[str]) -> None:
    first = serve("cfg:server.workers=1", *database)
    first.wait_healthy()
    assert first.terminate() == 0

    second = serve("cfg:server.workers=1", *database)

    assert second.wait_healthy().json() == HEALTHY
    assert second.terminate() == 0


def test_two_serves_start_at_once_on_one_fresh_database(
    serve: ServeFactory, database: list[str]
) -> None:
    """CONTRACT §2: several instances on one database start safely at the same moment."""
    servers = [serve("cfg:server.workers=1", *database) for _ in range(2)]

    for server in servers:
        assert server.wait_healthy().json() == HEALTHY
    for server in servers:
        assert server.terminate() == 0


# --------------------------------------------------------------------------- in-flight request
class _GatedProxy:
    """A TCP relay to the real PostgreSQL that can hold the client's bytes.

    Closing the gate makes the next database round trip of the service wait,
    so a /api/health request stays in flight for as long as the test wants.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                self._sockets.append(client)
                upstream = socket.create_connection(self.upstream)
                self._sockets.append(upstream)
            except OSError:
                return
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        try:
            while data := src.recv(65536):
                if gated and not self.open.is_set():
                    self.held.set()
                    self.open.wait()
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.open.set()
        # shutdown() wakes a thread blocked in accept() or recv(); close() alone does not.
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.mark.postgres
def test_sigterm_lets_an_in_flight_request_finish(serve: ServeFactory, pg_url: str) -> None:
    """A /api/health request held at its database round trip outlives the SIGTERM.

    The service reaches the real PostgreSQL through _GatedProxy; a slow request
    body does not work for this, as granian calls the app before the body ends.
    """
    proxy = _GatedProxy(("127.0.0.1", 5432))
    try:
        proxied = pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        assert proxied != pg_url
        server = serve("cfg:server.workers=1", f"cfg:database.url={proxied}")
        server.wait_healthy()
        proxy.open.clear()
        result: dict[str, requests.Response | BaseException] = {}

        def request() -> None:
            try:
                result["response"] = requests.get(server.url("/api/health"), timeout=30)
            except BaseException as exc:
                result["error"] = exc

        client = threading.Thread(target=request)
        client.start()
        assert proxy.held.wait(timeout=10), "the request never reached the database"

        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_output("Shutting down")  # granian's log line: SIGTERM was handled
        assert server.proc.poll() is None, "serve exited with a request in flight"
        proxy.open.set()
        client.join(timeout=10)

        assert "error" not in result, result.get("error")
        response = result["response"]
        assert isinstance(response, requests.Response)
        assert response.status_code == 200
        assert response.json() == HEALTHY
        assert server.proc.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        proxy.close()


# --------------------------------------------------------------------------- bad config
def _bad_duration(tmp_path: Path) -> list[str]:
    return ["cfg:auth.jwt.cache_ttl=nope"]


def _jwks_not_json(tmp_path: Path) -> list[str]:
    path = tmp_path / "jwks.json"
    path.write_text("not json\n")
    return [
        "cfg:auth.jwt.enabled=true",
        "cfg:auth.jwt.header_name=X-JWT-Assertion",
        f"cfg:auth.jwt.jwk_set_file={path}",
    ]


def _missing_database(tmp_path: Path) -> list[str]:
    return [f"cfg:database.url=postgres://postgres@127.0.0.1:5432/absent_{tmp_path.name}"]


@pytest.mark.parametrize(
    ("make_args", "named"),
    [
        pytest.param(_bad_duration, "[auth.jwt] cache_ttl", id="bad-duration"),
        pytest.param(_jwks_not_json, "[auth.jwt] jwk_set_file", id="jwks-not-json"),
        pytest.param(
            _missing_database, "database", id="missing-database", marks=pytest.mark.postgres
        ),
    ],
)
def test_serve_refuses_a_bad_config_in_one_line(
    homepath: Path, tmp_path: Path, make_args: Callable[[Path], list[str]], named: str
) -> None:
    started = time.monotonic()
    done = _authsvc(
        "serve",
        "--homepath",
        str(homepath),
        f"cfg:server.http_port={_free_port()}",
        *make_args(tmp_path),
    )

    assert done.returncode != 0
    assert time.monotonic() - started < 15
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]


# --------------------------------------------------------------------------- check-config
BAD_CUSTOM = """\
[server]
http_port = eighty
[log]
level = loud
[auth.jwt]
enabled = maybe
cache_ttl = nope
leeway = -5s
"""


def test_check_config_prints_every_problem(homepath: Path) -> None:
    (homepath / "conf" / "custom.ini").write_text(BAD_CUSTOM)

    done = _authsvc("check-config", "--homepath", str(homepath))

    assert done.returncode == 1
    problems = [PROBLEM_LINE.match(line) for line in done.stderr.strip().splitlines()]
    assert all(problems), done.stderr
    assert {(m["file"], m["section"], m["key"]) for m in problems if m} == {
        ("conf/custom.ini", "server", "http_port"),
        ("conf/custom.ini", "log", "level"),
        ("conf/custom.ini", "auth.jwt", "enabled"),
        ("conf/custom.ini", "auth.jwt", "cache_ttl"),
        ("conf/custom.ini", "auth.jwt", "leeway"),
    }


@pytest.mark.parametrize(
    "custom",
    [
        None,
        "[server]\nhttp_port = 3000\n",
        "[server]\nhttp_port = 3000\nhttp_prot = 3001\n",
    ],
    ids=["defaults-only", "custom-ini", "unknown-key-warns"],
)
def test_check_config_passes_a_good_config(homepath: Path, custom: str | None) -> None:
    if custom is not None:
        (homepath / "conf" / "custom.ini").write_text(custom)

    done = _authsvc("check-config", "--homepath", str(homepath))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
    if custom and "http_prot" in custom:
        assert "[server] http_prot: unknown key" in done.stderr
    else:
        assert done.stderr == ""
