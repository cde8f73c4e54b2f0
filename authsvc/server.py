"""``authsvc serve``: migrate, then run the app under granian with N worker processes.

Granian was chosen by measurement (bench/server_compare.py; README "Serving").
Workers are separate processes that build their own app from the same
configuration, handed to them through the environment; the schema is
migrated once, here in the main process, before any worker starts.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence

from flask import Flask

from authsvc.config import Settings, load_settings
from authsvc.db import MigrationError, make_engine, migrate
from authsvc.logs import configure_logging
from authsvc.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

_STATE_ENV = "_AUTHSVC_SERVE_ARGS"
_GRANIAN_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "error": "error",
    "critical": "critical",
}


def worker_count(settings: Settings) -> int:
    return settings.server.workers or os.cpu_count() or 1


def serve(
    settings: Settings,
    homepath: str | None,
    config: str | None,
    cfg_args: Sequence[str],
) -> int:
    """Run until SIGTERM/SIGINT; in-flight requests finish before the workers exit."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    from authsvc.app import create_app
    from authsvc.plugins import StartupError

    configure_logging(settings.log)
    engine = make_engine(settings.database)
    try:
        migrate(engine)
    except MigrationError as exc:
        raise StartupError(str(exc)) from exc
    finally:
        engine.dispose()  # workers open their own pools; nothing crosses the fork
    # Build the app once here, so that a bad key or plugin fails before workers start.
    create_app(settings, background=False).extensions["authsvc"].close()

    # One /metrics view of all workers: each writes its counters under this directory
    # (prometheus-client's multiprocess mode), fresh for every serve.
    metrics_dir = tempfile.mkdtemp(prefix="authsvc-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[_STATE_ENV] = json.dumps(
        {"homepath": str(settings.homepath), "config": config, "args": list(cfg_args)}
    )
    # Spawned, not forked, workers: a forked worker inherits granian's main-process
    # SIGTERM handler and loses a SIGTERM that arrives while it boots (the stop then
    # waits workers_kill_timeout). Spawned workers also inherit no threads or locks.
    multiprocessing.set_start_method("spawn", force=True)
    _refuse_busy(settings.server.http_addr, settings.server.http_port)
    workers = worker_count(settings)
    log.info(
        "serving",
        extra={
            "addr": settings.server.http_addr,
            "port": settings.server.http_port,
            "workers": workers,
            "database": settings.database.type,
        },
    )
    server = Server(
        "authsvc.server:app_from_environment",
        address=settings.server.http_addr,
        port=settings.server.http_port,
        interface=Interfaces.WSGI,
        workers=workers,
        factory=True,
        log_enabled=True,
        log_level=LogLevels(_GRANIAN_LEVELS[settings.log.level]),
        log_access=False,
        # granian's WSGI default is 256 threads per worker; a few keep p99 low
        # (bench/server_compare.py) while covering a request waiting on the database.
        blocking_threads=4,
        workers_kill_timeout=30,
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _refuse_busy(addr: str, port: int) -> None:
    """Exit before serving when anything listens on the address already.

    granian binds with SO_REUSEPORT, so a second instance would share the port
    with the first (splitting requests between two configs) instead of failing.
    A plain bind without SO_REUSEPORT fails while any listener holds the port.
    """
    from authsvc.plugins import StartupError

    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"[server] http_addr {addr}: {exc.strerror}") from None
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise StartupError(
                f"{addr}:{port} is already in use ({exc.strerror}); stop what listens there "
                "or set [server] http_port"
            ) from None


def app_from_environment() -> Flask:
    """The worker's app factory: the same configuration the main process loaded."""
    from authsvc.app import create_app

    state = json.loads(os.environ[_STATE_ENV])
    settings = load_settings(state["homepath"], state["config"], state["args"])
    return create_app(settings)
