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
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _harness import (
    HOST,
    VENV_BIN,
    Server,
    ServerError,
    WrkResult,
    free_port,
    launch,
    render_table,
    run_wrk,
)

APP_TARGET = "hello_app:app"
EXPECTED_BODY = b"Hello, World!"
GRACE = 5  # graceful timeout handed to the servers themselves


@dataclass(frozen=True)
class Variant:
    name: str
    server: str  # "gunicorn" or "granian"
    extra: tuple[str, ...] = ()
    note: str = ""
    workers: int | None = None
    """Worker processes for this variant; None = ``--workers``."""


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
        # The other settings the performance issue asked about, each beside bt=4.
        Variant("granian bt=4 backpressure=8", "granian", (*BT4, "--backpressure", "8")),
        Variant("granian bt=4 backpressure=64", "granian", (*BT4, "--backpressure", "64")),
        Variant(
            "granian bt=4 http1-buffer 64 KiB", "granian", (*BT4, "--http1-buffer-size", "65536")
        ),
        Variant("granian bt=4 runtime-threads=2", "granian", (*BT4, "--runtime-threads", "2")),
        Variant("granian bt=4, 1 worker", "granian", BT4, workers=1),
        Variant("granian bt=4, 3 workers", "granian", BT4, workers=3),
        Variant("granian bt=4, 4 workers", "granian", BT4, workers=4),
    ]


BT4 = ("--blocking-threads", "4")


def server_command(variant: Variant, port: int, workers: int) -> list[str]:
    workers = variant.workers or workers
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


@contextlib.contextmanager
def running_server(variant: Variant, workers: int, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    safe = re.sub(r"[^A-Za-z0-9]+", "_", variant.name).strip("_")
    with launch(server_command(variant, port, workers), port, log_dir / f"{safe}.log") as server:
        yield server


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
            outcome.ready_seconds = server.wait_ready("/", EXPECTED_BODY)
            url = f"http://{HOST}:{server.port}/"
            if args.warmup > 0:
                run_wrk(url, args.warmup, args.threads, args.connections)
            for i in range(args.repeat):
                result, raw = run_wrk(url, args.duration, args.threads, args.connections)
                outcome.runs.append(result)
                if args.verbose:
                    print(f"--- {variant.name} run {i + 1} ---\n{raw}", file=sys.stderr)
                server.check_alive()
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
        errs = run.describe_errors()
        rps = f"{run.requests_per_sec:,.0f}"
        if len(o.runs) > 1:
            spread = [r.requests_per_sec for r in o.runs]
            rps += f" (±{(max(spread) - min(spread)) / 2:,.0f})"
        rows.append(
            (o.variant, rps, f"{run.p50_ms:.2f}", f"{run.p99_ms:.2f}", errs, exit_, stop, o.note)
        )
    return render_table(headers, rows, right=frozenset({1, 2, 3}))


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
