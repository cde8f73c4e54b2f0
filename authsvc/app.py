"""``create_app()``: settings → database → plugins → blueprints, built once.

Everything a request needs is built here and kept on the app
(``app.extensions["authsvc"]``), never in module globals, so two apps in one
process (as in the tests) share nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from werkzeug.exceptions import HTTPException

from authsvc.authn import Authenticator, JWTAuthenticator
from authsvc.config import Settings
from authsvc.db import make_engine, migrate, session_factory
from authsvc.db import unavailable as db_unavailable
from authsvc.errors import AuthsvcError, MethodNotAllowed, NotFound, ServiceUnavailable
from authsvc.identity import ClaimsMapper
from authsvc.keys.base import KeyError_, KeyHealth, KeyProvider, KeyState
from authsvc.logs import configure_logging, request_id
from authsvc.plugins import PluginContext, PluginError, load_plugin
from authsvc.provisioning.base import UserProvisioner
from authsvc.remote_cache import make_remote_cache
from authsvc.sessions.base import SessionStore
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.users import SyncPolicy, UserReader
from authsvc.verifier import Verifier

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Prometheus collectors of one app, in a registry of its own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "authsvc_http_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )


@dataclass
class Service:
    """What the app built at start-up and every request uses."""

    settings: Settings
    engine: Engine
    db: sessionmaker[Any]
    metrics: Metrics
    keys: KeyProvider | None
    jwt: JWTAuthenticator | None
    authn: Authenticator
    sessions: SessionLifecycle
    clock: Callable[[], float]
    remote_cache: Any = None

    def key_health(self) -> KeyState:
        if self.keys is None:
            return KeyState("disabled")
        if isinstance(self.keys, KeyHealth):
            return self.keys.health()
        return KeyState("ok")

    def close(self) -> None:
        """Stop background work and release connections (tests, the serve main process)."""
        for part in (self.keys, self.remote_cache, self.sessions.store):
            close = getattr(part, "close", None)
            if callable(close):
                close()
        self.engine.dispose()

    def purge_sessions(self) -> int:
        """Delete ended sessions (run in the background; callable from tests)."""
        return self.sessions.store.purge(
            self.clock(), self.settings.auth.login_maximum_inactive_lifetime
        )


def service() -> Service:
    """The current app's Service (inside a request or app context)."""
    svc: Service = current_app.extensions["authsvc"]
    return svc


def create_app(
    settings: Settings,
    *,
    migrate_schema: bool = False,
    testing: bool = False,
    background: bool | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """Build the WSGI app. ``serve`` migrates before its workers start, so workers don't."""
    configure_logging(settings.log)
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    for override in settings.overrides:
        log.info("config: environment override %s", override)

    app = Flask("authsvc")
    app.config.update(TESTING=testing, PROPAGATE_EXCEPTIONS=testing, JSON_SORT_KEYS=False)
    engine = make_engine(settings.database)
    if migrate_schema:
        migrate(engine)
    db = session_factory(engine)
    remote_cache = make_remote_cache(settings.remote_cache, clock=clock)
    context = PluginContext(settings, db=db, remote_cache=remote_cache, clock=clock)
    keys: KeyProvider | None = None
    jwt = None
    provisioner = None
    if settings.jwt.enabled:
        keys = _build_plugin(
            "authsvc.key_providers", settings.jwt.key_provider, context, KeyProvider
        )
        jwt = JWTAuthenticator(
            settings.jwt,
            Verifier(settings.jwt, keys, clock=clock),
            ClaimsMapper(settings.jwt, settings.users.auto_assign_role),
        )
        provisioner = _build_plugin(
            "authsvc.provisioners", settings.jwt.user_provisioner, context, UserProvisioner
        )
    store = _build_plugin(
        "authsvc.session_stores", settings.auth.session_store, context, SessionStore
    )
    lifecycle = SessionLifecycle(
        store, settings.auth, settings.jwt.session_lifetime_from_token, clock
    )
    authn = Authenticator(
        jwt=jwt,
        provisioner=provisioner,
        policy=SyncPolicy(
            skip_role_sync=settings.jwt.skip_role_sync,
            allow_assign_server_admin=settings.jwt.allow_assign_server_admin,
            link_existing_users=settings.jwt.link_existing_users,
        ),
        db=db,
        sessions=lifecycle,
        cookie_name=settings.auth.login_cookie_name,
        clock=clock,
        reader=UserReader(engine),
        serialize_writes=engine.dialect.name == "sqlite",
    )
    svc = Service(
        settings=settings,
        engine=engine,
        db=db,
        metrics=Metrics(),
        keys=keys,
        jwt=jwt,
        authn=authn,
        sessions=lifecycle,
        clock=clock,
        remote_cache=remote_cache,
    )
    app.extensions["authsvc"] = svc

    from authsvc.views.admin import bp as admin_bp
    from authsvc.views.forward_auth import bp as forward_auth_bp
    from authsvc.views.health import bp as health_bp
    from authsvc.views.login import bp as login_bp
    from authsvc.views.metrics import bp as metrics_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(forward_auth_bp)
    app.register_blueprint(login_bp)
    app.register_blueprint(admin_bp)
    if settings.metrics.enabled:
        app.register_blueprint(metrics_bp)

    hooks = RequestHooks(svc)
    hooks.install(app)
    _install_error_handlers(app)
    if svc.jwt is not None and svc.settings.jwt.verified_cache_size:
        from authsvc.views.forward_auth import ForwardAuthFastPath

        app.wsgi_app = ForwardAuthFastPath(app.wsgi_app, svc, hooks)  # type: ignore[method-assign]
    if background if background is not None else not testing:
        _start_session_purger(svc)
    return app


def _start_session_purger(svc: Service, every: float = 300.0) -> None:
    """Delete ended sessions every few minutes, so the session table does not grow unbounded."""

    def run() -> None:
        while True:
            time.sleep(every * random.uniform(0.8, 1.2))  # noqa: S311 (spread instances)
            try:
                removed = svc.purge_sessions()
                if removed:
                    log.info("purged ended sessions", extra={"count": removed})
            except Exception:
                log.exception("session purge failed")

    threading.Thread(target=run, name="authsvc-session-purge", daemon=True).start()


def _build_plugin(group: str, name: str, context: PluginContext, protocol: type) -> Any:
    """Load the configured plugin of a slot and build it; a bad configuration stops start-up."""
    if not name:
        return None
    factory = load_plugin(group, name)
    try:
        plugin = factory.from_config(context)
    except (KeyError_, OSError, ValueError) as exc:
        raise StartupError(str(exc)) from exc
    if not isinstance(plugin, protocol):
        raise PluginError(f"plugin {name!r} in {group} does not implement {protocol.__name__}")
    return plugin


class StartupError(Exception):
    """The service cannot start; the message says why in one line."""


class RequestHooks:
    """Request ids, security headers and metrics: what every response gets, on either path
    (Flask's hooks, and the forward-auth fast path)."""

    def __init__(self, svc: Service) -> None:
        # Request ids: unique per process and cheap (no syscall per request); the pid
        # keeps workers apart, the random prefix keeps restarts apart.
        self._prefix = f"{secrets.token_hex(3)}{os.getpid():x}-"
        self._counter = itertools.count(1)
        self._frame_options = None if svc.settings.security.allow_embedding else "deny"
        self._metrics = svc.metrics
        # Per (route, status) metric children, found once: labels() takes a lock each call.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def request_id(self, incoming: str) -> str:
        """The caller's X-Request-Id when it is sane, else a new one."""
        if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.replace("-", "").isalnum():
            return incoming
        return f"{self._prefix}{next(self._counter):x}"

    def common_headers(self, incoming_request_id: str) -> list[tuple[str, str]]:
        headers = [
            ("X-Request-Id", self.request_id(incoming_request_id)),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if self._frame_options is not None:
            headers.append(("X-Frame-Options", self._frame_options))
        return headers

    def observe(self, route: str, status: int, seconds: float | None) -> None:
        pair = self._children.get((route, status))
        if pair is None:
            pair = self._children[(route, status)] = (
                self._metrics.requests.labels(route, str(status)),
                self._metrics.latency.labels(route),
            )
        pair[0].inc()
        if seconds is not None:
            pair[1].observe(seconds)

    def install(self, app: Flask) -> None:
        @app.before_request
        def _start() -> None:
            rid = self.request_id(request.headers.get("X-Request-Id", ""))
            g.request_id = rid
            g.started = time.perf_counter()
            request_id.set(rid)

        @app.after_request
        def _finish(response: Response) -> Response:
            headers = response.headers
            headers["X-Request-Id"] = g.get("request_id", "-")
            headers["X-Content-Type-Options"] = "nosniff"
            if self._frame_options is not None:
                headers["X-Frame-Options"] = self._frame_options
            rule = request.url_rule
            started = g.get("started")
            self.observe(
                rule.rule if rule is not None else "unmatched",
                response.status_code,
                time.perf_counter() - started if started is not None else None,
            )
            return response


def error_response(err: AuthsvcError) -> Response:
    """CONTRACT §3's error body, with RFC 6750's WWW-Authenticate on a 401."""
    body = {
        "message": err.message,
        "messageId": err.message_id,
        "statusCode": err.status,
        "reason": err.reason or err.message,
    }
    response = jsonify(body)
    response.status_code = err.status
    if err.status == 401:
        if err.token_presented and err.message_id != "auth.unauthorized":
            # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E only. A reason
            # can quote claim values (CR/LF, non-Latin-1) that would break the header.
            desc = "".join(
                c if " " <= c <= "~" and c not in '"\\' else "?"
                for c in (err.reason or err.message)
            )
            response.headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{desc}"'
            )
        else:
            response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _outage(exc: BaseException) -> str | None:
    """``database unavailable`` / ``redis unavailable`` when ``exc`` is a lost connection."""
    if db_unavailable(exc):
        return "database unavailable"
    redis = sys.modules.get("redis")  # only loaded when Redis is configured
    if redis is not None and isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ):
        return "redis unavailable"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(AuthsvcError)
    def _known(err: AuthsvcError) -> Response:
        level = logging.WARNING if err.status < 500 else logging.ERROR
        log.log(
            level,
            "request refused: %s",
            err.message_id,
            extra={"status": err.status, "reason": err.reason, "path": request.path},
        )
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.code == 404:
            return error_response(NotFound(f"no route {request.method} {request.path}"))
        if exc.code == 405:
            response = error_response(
                MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            )
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
            return response
        body = {
            "message": exc.name,
            "messageId": f"api.{exc.name.lower().replace(' ', '_')}",
            "statusCode": exc.code or 500,
            "reason": exc.description or exc.name,
        }
        response = jsonify(body)
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        outage = _outage(exc)
        if outage is not None:
            # Driver, host and port go to the log only (CONTRACT §7).
            log.error(
                "request refused: service.unavailable",
                extra={"path": request.path, "reason": outage, "error": _first_line(exc)},
            )
            return error_response(ServiceUnavailable(outage))
        if app.config["PROPAGATE_EXCEPTIONS"]:
            raise exc
        rid = g.get("request_id", "-")
        log.exception("unexpected error", extra={"path": request.path})
        return error_response(AuthsvcError(f"request id {rid}"))
