"""Real servers for end-to-end tests: ``authsvc serve``, a recording upstream, nginx, Caddy.

Each server listens on a free 127.0.0.1 port; each process runs in its own
process group, so that stopping it (SIGTERM, then SIGKILL to the group)
reaches its workers too. ``start_*`` returns once the server answers and
retries with another port when the free one was taken in between.

Nothing here is a fixture: a test module builds the stack it needs (its own
authsvc configuration) from these pieces, in the scope it needs, and stops
each piece in its teardown::

    upstream = Upstream()
    authsvc = start_authsvc(make_homepath(tmp), "cfg:auth.jwt.enabled=true", ...)
    nginx = start_nginx(require_binary("nginx"), tmp / "nginx", authsvc.port, upstream.port)
    ...
    nginx.stop(); authsvc.stop(); upstream.close()
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3
_PORT_TAKEN = re.compile(r"address already in use", re.IGNORECASE)


def free_port() -> int:
    """A 127.0.0.1 port free right now (another process may still take it: see start_*)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_binary(name: str) -> str:
    """The path of the executable ``name``; skips without it, fails under CI=true."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is not None:
        return path
    if IN_CI:
        pytest.fail(f"{name} is not installed (CI=true: .ci/run must install it)")
    pytest.skip(f"{name} is not installed")


def make_homepath(directory: Path) -> Path:
    """A home path holding the repo's conf/defaults.ini and nothing else."""
    (directory / "conf").mkdir(parents=True)
    shutil.copy(REPO / "conf" / "defaults.ini", directory / "conf" / "defaults.ini")
    return directory


# --------------------------------------------------------------------------- processes
class _PortTaken(Exception):
    """The process could not bind its port: another process took it after free_port()."""


@dataclass
class Process:
    """A server process in its own process group, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until it holds; fail with the output if the process dies first."""
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.proc.poll() is not None:
                if _PORT_TAKEN.search(self.output()):
                    raise _PortTaken
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} within {START_TIMEOUT}s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group; returns once the group is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            self.proc.poll()  # reaps the leader if the SIGKILL got it
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: process group {self.proc.pid} outlived SIGKILL")
            time.sleep(0.05)
        self.proc.wait()


_P = TypeVar("_P", bound=Process)


def _launch(name: str, argv: list[str], log: Path, port: int, **kw: Any) -> Process:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
    return Process(name, proc, port, log)


def _start_on_a_free_port(start: Callable[[int], _P]) -> _P:
    """``start(port)`` on a free port, again on another one if that port was taken meanwhile."""
    for _ in range(_START_ATTEMPTS):
        with contextlib.suppress(_PortTaken):
            return start(free_port())
    pytest.fail(f"each of {_START_ATTEMPTS} free ports was taken before the server bound it")


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- authsvc
def authsvc_env() -> dict[str, str]:
    """This process's environment without authsvc's own variables (the config is the test's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "_AUTHSVC_"))}


def start_authsvc(homepath: Path, *cfg: str, log: Path | None = None) -> Process:
    """``python -m authsvc serve --homepath HOME cfg:...``, returned once /api/health is 200."""

    def start(port: int) -> Process:
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
        out = log or homepath / f"serve-{port}.log"
        server = _launch("authsvc", argv, out, port, env=authsvc_env())
        try:
            server.wait_until(lambda: _healthy(server), "200 from /api/health")
        except BaseException:
            server.stop()
            raise
        return server

    return _start_on_a_free_port(start)


def _healthy(server: Process) -> bool:
    try:
        return requests.get(server.url("/api/health"), timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


# --------------------------------------------------------------------------- upstream
@dataclass(frozen=True)
class ReceivedRequest:
    """One request the upstream received, its head exactly as the bytes came in."""

    method: str
    path: str
    head: bytes
    """The request line and the header lines, CRLFs included, without the blank line."""

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """(name, value) pairs in order of arrival; values without surrounding blanks."""
        pairs = []
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            pairs.append((name, value.strip(b" \t")))
        return pairs

    def values(self, name: str) -> list[bytes]:
        """Every value of the header ``name`` (case-insensitive), as raw bytes."""
        wanted = name.lower().encode()
        return [value for key, value in self.headers if key.lower() == wanted]

    def value(self, name: str) -> bytes | None:
        """The one value of the header ``name``, None when absent; fails when repeated."""
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values!r}"
        return values[0] if values else None


class _RecordingReader:
    """The handler's ``rfile``: remembers the lines read (the head), passes the rest through."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._lines: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        line = self._raw.readline(limit)
        self._lines.append(line)
        return line

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def take(self) -> bytes:
        """The head read since the last take(), without its final blank line."""
        head = b"".join(self._lines)
        self._lines.clear()
        return head.removesuffix(b"\r\n\r\n").removesuffix(b"\n\n")

    def close(self) -> None:
        self._raw.close()


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Caddy's transport expects
    server: _RecordingServer
    rfile: Any

    def setup(self) -> None:
        super().setup()
        self.rfile = _RecordingReader(self.rfile)

    def _answer(self) -> None:
        head = self.rfile.take()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.received.append(ReceivedRequest(self.command, self.path, head))
        body = b"upstream ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    received: list[ReceivedRequest]


class Upstream:
    """A tiny HTTP server on 127.0.0.1 (a thread of this process) that answers 200 to
    everything and records each request's head as raw bytes in ``received``."""

    def __init__(self) -> None:
        self._server = _RecordingServer(("127.0.0.1", 0), _RecordingHandler)
        self._server.received = []
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def received(self) -> list[ReceivedRequest]:
        return self._server.received

    def clear(self) -> None:
        self._server.received.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT)


# --------------------------------------------------------------------------- nginx
# What an operator puts in front of authsvc; what surrounds it only keeps nginx's
# files inside its prefix directory.
NGINX_SERVER = r"""
# A bearer token with many claims is longer than nginx's default 8k header buffer.
large_client_header_buffers 4 64k;

upstream authsvc {
    server 127.0.0.1:AUTHSVC_PORT;
}

upstream app {
    server 127.0.0.1:UPSTREAM_PORT;
}

server {
    listen 127.0.0.1:LISTEN_PORT;

    location / {
        auth_request /_auth;
        auth_request_set $auth_user $upstream_http_x_auth_user;
        auth_request_set $auth_email $upstream_http_x_auth_email;
        auth_request_set $auth_name $upstream_http_x_auth_name;
        auth_request_set $auth_role $upstream_http_x_auth_role;
        auth_request_set $auth_groups $upstream_http_x_auth_groups;
        auth_request_set $auth_groups_truncated $upstream_http_x_auth_groups_truncated;
        auth_request_set $auth_subject $upstream_http_x_auth_subject;

        # These replace whatever the client sent under the same names; an empty
        # value (no groups, say) sends no header at all.
        proxy_set_header X-User $auth_user;
        proxy_set_header X-Email $auth_email;
        proxy_set_header X-Name $auth_name;
        proxy_set_header X-Role $auth_role;
        proxy_set_header X-Groups $auth_groups;
        proxy_set_header X-Groups-Truncated $auth_groups_truncated;
        proxy_set_header X-Subject $auth_subject;
        proxy_pass http://app;
    }

    location = /_auth {
        internal;
        # The client's Authorization and Cookie headers go along (nginx's default).
        proxy_pass http://authsvc/api/auth/verify;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-URI $request_uri;
    }
}
"""

_NGINX_MAIN = """\
worker_processes 1;
pid nginx.pid;
error_log error.log info;

events {
    worker_connections 256;
}

http {
    access_log access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

SERVER
}
"""


def nginx_conf(
    listen_port: int, authsvc_port: int, upstream_port: int, server_block: str = NGINX_SERVER
) -> str:
    """nginx.conf around ``server_block`` (NGINX_SERVER, or a test's own), ports filled in."""
    server = (
        server_block.strip("\n")
        .replace("LISTEN_PORT", str(listen_port))
        .replace("AUTHSVC_PORT", str(authsvc_port))
        .replace("UPSTREAM_PORT", str(upstream_port))
    )
    indented = "".join(f"    {line}" if line.strip() else line for line in server.splitlines(True))
    return _NGINX_MAIN.replace("SERVER", indented)


def start_nginx(
    binary: str,
    prefix: Path,
    authsvc_port: int,
    upstream_port: int,
    server_block: str = NGINX_SERVER,
) -> Process:
    """nginx in the foreground with its prefix, config, pid, logs and temp files in ``prefix``.

    Its error log (level info) is the process's ``log``; ``output()`` shows it.
    """
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    error_log = prefix / "error.log"

    def start(port: int) -> Process:
        conf.write_text(nginx_conf(port, authsvc_port, upstream_port, server_block))
        (prefix / "nginx.pid").unlink(missing_ok=True)
        argv = [binary, "-p", f"{prefix}/", "-e", str(error_log), "-c", str(conf)]
        argv += ["-g", "daemon off;"]
        server = _launch("nginx", argv, prefix / "nginx.out", port)
        server.log = error_log
        try:
            # nginx writes its pid file once its sockets are bound.
            server.wait_until(
                lambda: (prefix / "nginx.pid").exists() and _connectable(port), "listening socket"
            )
        except BaseException:
            server.stop()
            raise
        return server

    return _start_on_a_free_port(start)


# --------------------------------------------------------------------------- Caddy
CADDYFILE = """\
{
	admin off
	auto_https off
}

http://127.0.0.1:LISTEN_PORT {
	bind 127.0.0.1
	# route: the directives run in the order written here.
	route {
		# Identity headers come from authsvc alone, whatever the client sent.
		request_header -X-User
		request_header -X-Email
		request_header -X-Name
		request_header -X-Role
		request_header -X-Groups
		request_header -X-Groups-Truncated
		request_header -X-Subject
		forward_auth 127.0.0.1:AUTHSVC_PORT {
			uri /api/auth/verify
			copy_headers {
				X-Auth-User>X-User
				X-Auth-Email>X-Email
				X-Auth-Name>X-Name
				X-Auth-Role>X-Role
				X-Auth-Groups>X-Groups
				X-Auth-Groups-Truncated>X-Groups-Truncated
				X-Auth-Subject>X-Subject
			}
		}
		# authsvc adds X-Auth-Groups-Truncated only when it cut the groups; Caddy 2.6.2
		# copies a header the answer lacks as the literal text of its placeholder.
		@not_truncated not header X-Groups-Truncated true
		request_header @not_truncated -X-Groups-Truncated
		reverse_proxy 127.0.0.1:UPSTREAM_PORT
	}
}
"""


def caddyfile(listen_port: int, authsvc_port: int, upstream_port: int) -> str:
    return (
        CADDYFILE.replace("LISTEN_PORT", str(listen_port))
        .replace("AUTHSVC_PORT", str(authsvc_port))
        .replace("UPSTREAM_PORT", str(upstream_port))
    )


def start_caddy(binary: str, prefix: Path, authsvc_port: int, upstream_port: int) -> Process:
    """``caddy run`` with a Caddyfile in ``prefix``; its home and data stay there too."""
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "Caddyfile"
    env = {
        **os.environ,
        "HOME": str(prefix),
        "XDG_CONFIG_HOME": str(prefix / "config"),
        "XDG_DATA_HOME": str(prefix / "data"),
    }

    def start(port: int) -> Process:
        config.write_text(caddyfile(port, authsvc_port, upstream_port))
        argv = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
        log = prefix / f"caddy-{port}.log"
        server = _launch("caddy", argv, log, port, env=env)
        try:
            server.wait_until(
                lambda: "serving initial configuration" in server.output() and _connectable(port),
                "'serving initial configuration'",
            )
        except BaseException:
            server.stop()
            raise
        return server

    return _start_on_a_free_port(start)
