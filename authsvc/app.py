"""``create_app()``: settings → database → plugins → blueprints, built once.

Everything a request needs is built here and kept on the app
(``app.extensions["authsvc"]``), never in module globals, so two apps in one
process (as in the tests) share nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from werkzeug.exceptions import HTTPException

from authsvc.authn import JWTAuthenticator
from authsvc.config import Settings
from authsvc.db import make_engine, migrate, session_factory
from authsvc.errors import AuthsvcError, MethodNotAllowed, NotFound
from authsvc.identity import ClaimsMapper
from authsvc.keys.base import KeyError_, KeyHealth, KeyProvider, KeyState
from authsvc.logs import configure_logging, request_id
from authsvc.plugins import PluginContext, PluginError, load_plugin
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
    authn: JWTAuthenticator | None

    def key_health(self) -> KeyState:
        if self.keys is None:
            return KeyState("disabled")
        if isinstance(self.keys, KeyHealth):
            return self.keys.health()
        return KeyState("ok")


def service() -> Service:
    """The current app's Service (inside a request or app context)."""
    svc: Service = current_app.extensions["authsvc"]
    return svc


def create_app(settings: Settings, *, migrate_schema: bool = False, testing: bool = False) -> Flask:
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
    context = PluginContext(settings, db=db)
    keys = _key_provider(context) if settings.jwt.enabled else None
    authn = None
    if keys is not None:
        authn = JWTAuthenticator(
            settings.jwt,
            Verifier(settings.jwt, keys, clock=context.clock),
            ClaimsMapper(settings.jwt, settings.users.auto_assign_role),
        )
    svc = Service(
        settings=settings,
        engine=engine,
        db=db,
        metrics=Metrics(),
        keys=keys,
        authn=authn,
    )
    app.extensions["authsvc"] = svc

    from authsvc.views.forward_auth import bp as forward_auth_bp
    from authsvc.views.health import bp as health_bp
    from authsvc.views.metrics import bp as metrics_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(forward_auth_bp)
    if settings.metrics.enabled:
        app.register_blueprint(metrics_bp)

    _install_request_hooks(app, svc)
    _install_error_handlers(app)
    return app


def _key_provider(context: PluginContext) -> KeyProvider:
    """Load and build the configured key provider; a bad configured key stops start-up."""
    name = context.settings.jwt.key_provider
    factory = load_plugin("authsvc.key_providers", name)
    try:
        provider = factory.from_config(context)
    except (KeyError_, OSError) as exc:
        raise StartupError(str(exc)) from exc
    if not isinstance(provider, KeyProvider):
        raise PluginError(f"key provider {name!r} does not implement get_key() and refresh()")
    return provider


class StartupError(Exception):
    """The service cannot start; the message says why in one line."""


def _install_request_hooks(app: Flask, svc: Service) -> None:
    @app.before_request
    def _start() -> None:
        rid = request.headers.get("X-Request-Id", "")
        if not (0 < len(rid) <= 64 and rid.isascii() and rid.replace("-", "").isalnum()):
            rid = secrets.token_hex(8)
        g.request_id = rid
        g.started = time.perf_counter()
        request_id.set(rid)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        if not svc.settings.security.allow_embedding:
            response.headers.setdefault("X-Frame-Options", "deny")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        svc.metrics.requests.labels(route, str(response.status_code)).inc()
        if "started" in g:
            svc.metrics.latency.labels(route).observe(time.perf_counter() - g.started)
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
            desc = (err.reason or err.message).replace("\\", "\\\\").replace('"', '\\"')
            response.headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{desc}"'
            )
        else:
            response.headers["WWW-Authenticate"] = "Bearer"
    return response


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
            return error_response(
                MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            )
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
        if app.config["PROPAGATE_EXCEPTIONS"]:
            raise exc
        rid = g.get("request_id", "-")
        log.exception("unexpected error", extra={"path": request.path})
        return error_response(AuthsvcError(f"request id {rid}"))
