"""``create_app()``: settings → database → plugins → service → blueprints, built once.

Everything a request needs is built here and kept on the app
(``app.extensions["authsvc"]``), never in module globals, so two apps in one
process (as in the tests) share nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from flask import Flask

from authsvc import error_handlers
from authsvc.audit import Audit
from authsvc.authn import AuthnService
from authsvc.config import Settings
from authsvc.db import ReadConnections, make_engine, migrate, session_factory
from authsvc.issuers import Issuers
from authsvc.logs import configure_logging
from authsvc.metrics import Metrics, jwks_gauges
from authsvc.plugins import PluginContext, StartupError, build_plugin
from authsvc.remote_cache import make_remote_cache
from authsvc.request_hooks import RequestHooks
from authsvc.service import Service
from authsvc.sessions.base import SessionStore
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.signing import SigningService
from authsvc.users import UserReader
from authsvc.views import (
    admin,
    assertions,
    forward_auth,
    health,
    login,
    metrics,
    openapi,
    well_known,
)

__all__ = ["Service", "StartupError", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    migrate_schema: bool = False,
    testing: bool = False,
    background: bool | None = None,
    clock: Callable[[], float] = time.time,
    identity_providers: bool = True,
) -> Flask:
    """Build the WSGI app. ``serve`` migrates before its workers start, so workers don't.

    ``identity_providers = False`` (the ``users`` and ``sessions`` commands) builds no
    issuer: nothing contacts an identity provider, no key is fetched.
    """
    configure_logging(settings.log)
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    for override in settings.overrides:
        log.info("config: environment override %s", override)

    app = Flask("authsvc", static_folder=None)  # no /static/<path> route: nothing to serve
    app.config.update(TESTING=testing, PROPAGATE_EXCEPTIONS=testing, JSON_SORT_KEYS=False)
    # Signing keys first: a refused one stops start-up before anything runs in the background.
    signing = SigningService.build(settings, clock) if identity_providers else None
    engine = make_engine(settings.database)
    if migrate_schema:
        migrate(engine)
    db = session_factory(engine)
    reads = ReadConnections(engine)
    remote_cache = make_remote_cache(settings.remote_cache, clock=clock)
    metrics_ = Metrics(counting=settings.metrics.enabled)
    issuers = (
        Issuers.build(settings, db=db, remote_cache=remote_cache, clock=clock, metrics=metrics_)
        if identity_providers
        else Issuers([])
    )
    metrics_.add_gauges(lambda: jwks_gauges((i.name, i.describe()) for i in issuers))
    context = PluginContext(settings, db=db, remote_cache=remote_cache, clock=clock, reads=reads)
    store = build_plugin(
        "authsvc.session_stores", settings.auth.session_store, context, SessionStore
    )
    sessions = SessionLifecycle(store, settings.auth, clock, metrics_.session)
    audit = Audit(settings.log.audit)
    svc = Service(
        settings=settings,
        engine=engine,
        reads=reads,
        db=db,
        metrics=metrics_,
        hooks=RequestHooks(metrics_, allow_embedding=settings.security.allow_embedding),
        issuers=issuers,
        authn=AuthnService(
            issuers=issuers,
            db=db,
            sessions=sessions,
            cookie_name=settings.auth.login_cookie_name,
            clock=clock,
            reader=UserReader(reads),
            audit=audit,
            metrics=metrics_,
            serialize_writes=engine.dialect.name == "sqlite",
        ),
        sessions=sessions,
        clock=clock,
        audit=audit,
        remote_cache=remote_cache,
        signing=signing,
    )
    app.extensions["authsvc"] = svc

    app.url_map.converters["anyrest"] = forward_auth.AnyRest
    app.register_blueprint(health.bp)
    app.register_blueprint(forward_auth.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(well_known.bp)
    app.register_blueprint(assertions.bp)
    app.register_blueprint(openapi.bp)
    if settings.metrics.enabled:
        app.register_blueprint(metrics.bp)
    svc.hooks.install(app)
    error_handlers.install(app)
    app.wsgi_app = forward_auth.ForwardAuthFastPath(app, svc)  # type: ignore[method-assign]
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
