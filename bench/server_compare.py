"""Compare gunicorn and granian serving a Flask "hello world" WSGI app, using wrk.

Usage (from the project root)::

    /work/venv/bin/python bench/server_compare.py [--duration 10] [--only granian]

For every server variant the script:

1. starts the server (from the venv that runs this script) on a free 127.0.0.1 port,
2. waits until ``GET /`` answers with the expected body,
3. runs a short unrecorded wrk warm-up, then ``wrk -t2 -c64 -d<duration>s --latency``,
4. parses Requests/sec and the p50/p99 latencies,
5. stops the server with SIGTERM (SIGKILL to its process group as a last resort),

and finally prints a table.  Every step has a timeout, so the script always ends.
Server output goes to a temporary log file; its tail is shown when something fails.

Note: wrk runs on the same machine as the server, so the client competes with the
server for CPU.  Numbers are only comparable with each other, not with other hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
APP_TARGET = "hello_app:app"
EXPECTED_BODY = b"Hello, World!"
HOST = "127.0.0.1"

READY_TIMEOUT = 20.0  # seconds to wait for the server to answer
STOP_TIMEOUT = 15.0  # seconds to wait for a graceful exit after SIGTERM
GRACE = 5  # graceful timeout handed to the servers themselves
WRK_SLACK = 30.0  # extra seconds allowed for wrk beyond its -d duration


@dataclass(frozen=True)
class Variant:
    name: str
    server: str  # "gunicorn" or "granian"
    extra: tuple[str, ...] = ()
    note: str = ""


def default_variants(workers: int) -> list[Variant]:
    # Granian (2.8) default for WSGI: backpressure = backlog(1024) // workers and
    # blocking_threads = backpressure // 2, i.e. 256 Python threads per worker with 2 workers.
    default_bt = max(1, (1024 // workers) // 2)
    return [
        Variant("gunicorn sync", "gunicorn", ("--worker-class", "sync")),
        Variant(
            "gunicorn gthread t4",
            "gunicorn",
            ("--worker-class", "gthread", "--threads", "4"),
        ),
        Variant("granian default", "granian", (), f"blocking-threads={default_bt}/worker"),
        Variant("granian bt=1", "granian", ("--blocking-threads", "1")),
        Variant("granian bt=2", "granian", ("--blocking-threads", "2")),
        Variant("granian bt=4", "granian", ("--blocking-threads", "4")),
        Variant("granian bt=16", "granian", ("--blocking-threads", "16")),
    ]


def server_command(variant: Variant, port: int, workers: int) -> list[str]:
    if variant.server == "gunicorn":
        return [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(workers),
            "--graceful-timeout",
            str(GRACE),
            "--log-level",
            "warning",
            *variant.extra,
            APP_TARGET,
        ]
    if variant.server == "granian":
        return [
            str(VENV_BIN / "granian"),
            "--interface",
            "wsgi",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--workers-kill-timeout",
            str(GRACE),
            "--log-level",
            "warning",
            *variant.extra,
            APP_TARGET,
        ]
    raise ValueError(f"unknown server {variant.server!r}")


def server_env() -> dict[str, str]:
    """Environment for the server: ours, minus variables that would change its config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRANIAN_") and k != "GUNICORN_CMD_ARGS"
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


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

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"server exited early with code {self.proc.returncode}\n{self.log_tail()}"
                )
            conn = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body == EXPECTED_BODY:
                    return time.monotonic() - start
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise ServerError(f"server did not answer within {timeout:.0f}s\n{self.log_tail()}")

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
def running_server(variant: Variant, workers: int, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    cmd = server_command(variant, port, workers)
    safe = re.sub(r"[^A-Za-z0-9]+", "_", variant.name).strip("_")
    log_path = log_dir / f"{safe}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=BENCH_DIR,
            env=server_env(),
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


def run_wrk(url: str, duration: int, threads: int, connections: int) -> tuple[WrkResult, str]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        url,
    ]
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


@dataclass
class Outcome:
    variant: str
    note: str
    runs: list[WrkResult] = field(default_factory=list)
    error: str | None = None
    ready_seconds: float | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None
    killed: bool = False

    def median_run(self) -> WrkResult | None:
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda r: r.requests_per_sec)
        return ordered[(len(ordered) - 1) // 2]


def bench_variant(variant: Variant, args: argparse.Namespace, log_dir: Path) -> Outcome:
    outcome = Outcome(variant=variant.name, note=variant.note)
    server: Server | None = None
    try:
        with running_server(variant, args.workers, log_dir) as server:
            outcome.ready_seconds = server.wait_ready()
            url = f"http://{HOST}:{server.port}/"
            if args.warmup > 0:
                run_wrk(url, args.warmup, args.threads, args.connections)
            for i in range(args.repeat):
                result, raw = run_wrk(url, args.duration, args.threads, args.connections)
                outcome.runs.append(result)
                if args.verbose:
                    print(f"--- {variant.name} run {i + 1} ---\n{raw}", file=sys.stderr)
                if server.proc.poll() is not None:
                    raise ServerError(
                        f"server died during the run (code {server.proc.returncode})\n"
                        f"{server.log_tail()}"
                    )
    except (ServerError, RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            outcome.exit_code = server.exit_code
            outcome.stop_seconds = server.stop_seconds
            outcome.killed = server.killed
    if outcome.error is None and outcome.exit_code not in (0, None) and server is not None:
        # Not fatal for the figures, but worth showing.
        outcome.note = (outcome.note + "; " if outcome.note else "") + (
            f"unclean exit, log tail: {server.log_tail(5)!r}"
        )
    return outcome


def format_table(outcomes: Sequence[Outcome]) -> str:
    headers = ("variant", "req/s", "p50 ms", "p99 ms", "errors", "exit", "stop s", "note")
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        run = o.median_run()
        stop = "-" if o.stop_seconds is None else f"{o.stop_seconds:.2f}"
        exit_ = "-" if o.exit_code is None else str(o.exit_code)
        if o.killed:
            exit_ += " (KILLED)"
        if run is None:
            first_line = (o.error or "no result").splitlines()[0]
            rows.append((o.variant, "FAIL", "-", "-", "-", exit_, stop, first_line))
            continue
        errs = str(run.errors)
        if run.errors:
            parts = [f"{k}={v}" for k, v in run.socket_errors.items() if v]
            if run.non_2xx_3xx:
                parts.append(f"non2xx={run.non_2xx_3xx}")
            errs += f" ({', '.join(parts)})"
        rps = f"{run.requests_per_sec:,.0f}"
        if len(o.runs) > 1:
            spread = [r.requests_per_sec for r in o.runs]
            rps += f" (±{(max(spread) - min(spread)) / 2:,.0f})"
        rows.append(
            (o.variant, rps, f"{run.p50_ms:.2f}", f"{run.p99_ms:.2f}", errs, exit_, stop, o.note)
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = {1, 2, 3}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [fmt(headers), fmt(tuple("-" * w for w in widths))]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="wrk duration in seconds [10]")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded warm-up seconds [2]")
    p.add_argument("--repeat", type=int, default=1, help="wrk runs per variant (median) [1]")
    p.add_argument("--workers", type=int, default=2, help="server worker processes [2]")
    p.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    p.add_argument("--connections", type=int, default=64, help="wrk connections [64]")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SUBSTR",
        help="only run variants whose name contains SUBSTR (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="list variants and exit")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--verbose", action="store_true", help="print raw wrk output to stderr")
    args = p.parse_args(argv)
    for name in ("duration", "repeat", "workers", "threads", "connections"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.connections < args.threads:
        p.error("--connections must be >= --threads")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = default_variants(args.workers)
    if args.only:
        variants = [v for v in variants if any(s in v.name for s in args.only)]
    if args.list or not variants:
        for v in default_variants(args.workers):
            print(f"{v.name:24} {v.server} {' '.join(v.extra)}")
        return 0 if args.list else 2

    missing = [
        str(exe)
        for exe in (VENV_BIN / "gunicorn", VENV_BIN / "granian")
        if not exe.exists() and any(v.server == exe.name for v in variants)
    ]
    if shutil.which("wrk") is None:
        missing.append("wrk")
    if missing:
        print(f"missing executables: {', '.join(missing)}", file=sys.stderr)
        return 2

    per_variant = args.warmup + args.duration * args.repeat
    print(
        f"{len(variants)} variants x ~{per_variant + 3}s; wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s --latency; {args.workers} workers; "
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="server_compare_") as tmp:
        for v in variants:
            print(f"[{v.name}] running ...", file=sys.stderr, flush=True)
            outcome = bench_variant(v, args, Path(tmp))
            if outcome.error:
                print(f"[{v.name}] FAILED: {outcome.error}", file=sys.stderr)
            outcomes.append(outcome)

    print(format_table(outcomes))
    print(
        "\np50/p99 from wrk --latency (requests that hit wrk's 2s timeout are not in the "
        "latency histogram; see 'errors'). 'exit'/'stop s': server exit code and time to stop "
        "after SIGTERM."
    )
    if args.json:
        payload = [
            {**asdict(o), "median": asdict(r) if (r := o.median_run()) else None} for o in outcomes
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
