"""What the HTTP benchmarks share: start and stop a server, run wrk, parse it, print a table.

Used by ``server_compare.py`` and ``http_bench.py`` (run as scripts from this
directory, so ``import _harness`` finds this file). Every step has a timeout,
so a benchmark always ends; a server runs in its own process group, so no
worker outlives it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"

READY_TIMEOUT = 20.0  # seconds to wait for the server to answer
STOP_TIMEOUT = 15.0  # seconds to wait for a graceful exit after SIGTERM
WRK_SLACK = 30.0  # extra seconds allowed for wrk beyond its -d duration


def server_env() -> dict[str, str]:
    """Environment for a server: ours, minus variables that would change its config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GRANIAN_", "AUTHSVC_")) and k != "GUNICORN_CMD_ARGS"
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def code_version(repo: Path) -> str:
    """Which authsvc was measured: the commit, and whether authsvc/ differs from it."""
    git = ["git", "--no-optional-locks", "-C", str(repo)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return f"authsvc from {repo} (not a git checkout)"
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "authsvc"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"authsvc from {repo}"
    changed = " + uncommitted changes in authsvc/" if dirty.stdout.strip() else ""
    return f"authsvc at {head.stdout.strip()}{changed}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    exit_code: int | None = None
    stop_seconds: float | None = None
    killed: bool = False

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(
        self,
        path: str = "/",
        expect_body: bytes | None = None,
        timeout: float = READY_TIMEOUT,
        *,
        accept_any_status: bool = False,
    ) -> float:
        """Seconds until ``GET path`` answered 200 (with ``expect_body``, when given), or
        answered at all with ``accept_any_status``."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"server exited early with code {self.proc.returncode}\n{self.log_tail()}"
                )
            conn = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if accept_any_status or (
                    resp.status == 200 and (expect_body is None or body == expect_body)
                ):
                    return time.monotonic() - start
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise ServerError(f"server did not answer within {timeout:.0f}s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerError(
                f"server died during the run (code {self.proc.returncode})\n{self.log_tail()}"
            )

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
        # The server runs in its own session / process group (pgid == its pid):
        # give stragglers a moment, then make sure no worker survives the master.
        deadline = time.monotonic() + 2.0
        while not self.killed and self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._group_alive():
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.exit_code = self.proc.returncode
        self.stop_seconds = time.monotonic() - start


@contextlib.contextmanager
def launch(
    cmd: Sequence[str],
    port: int,
    log_path: Path,
    *,
    cwd: Path = BENCH_DIR,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Run ``cmd`` (listening on ``port``) in its own process group; stop it on exit."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(server_env() if env is None else env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so we can clean up workers
        )
    server = Server(proc=proc, port=port, log_path=log_path)
    try:
        yield server
    finally:
        server.stop()


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    total_requests: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx

    def describe_errors(self) -> str:
        if not self.errors:
            return "0"
        parts = [f"{k}={v}" for k, v in self.socket_errors.items() if v]
        if self.non_2xx_3xx:
            parts.append(f"non2xx={self.non_2xx_3xx}")
        return f"{self.errors} ({', '.join(parts)})"


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ", output, re.M)
    pcts = {
        m.group(1): float(m.group(2)) * _UNIT_MS[m.group(3)]
        for m in re.finditer(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    if rps is None or total is None or "50" not in pcts or "99" not in pcts:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
        if sock
        else {}
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        p50_ms=pcts["50"],
        p99_ms=pcts["99"],
        total_requests=int(total.group(1)),
        socket_errors=socket_errors,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


def run_wrk(
    url: str,
    duration: int,
    threads: int,
    connections: int,
    script: Path | None = None,
) -> tuple[WrkResult, str]:
    """``wrk -t -c -d --latency [-s script] url``: the parsed result and the raw output."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + WRK_SLACK,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk(proc.stdout), proc.stdout


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> str:
    """A plain-text table; columns whose index is in ``right`` are right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [fmt(headers), fmt(tuple("-" * w for w in widths))]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)
