"""``Service``: what ``create_app`` built and every request uses; ``service()`` finds it.

Views import this module, not ``app``: the factory imports the views, never
the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from authsvc.audit import Audit
from authsvc.authn import AuthnService
from authsvc.config import Settings
from authsvc.db import ReadConnections
from authsvc.issuers import Issuers
from authsvc.keys.base import KeyState
from authsvc.metrics import Metrics
from authsvc.remote_cache import RemoteCache
from authsvc.request_hooks import RequestHooks
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.signing import SigningService, UpstreamAssertions


@dataclass
class Service:
    settings: Settings
    engine: Engine
    reads: ReadConnections
    db: sessionmaker[Any]
    metrics: Metrics
    hooks: RequestHooks
    issuers: Issuers
    authn: AuthnService
    sessions: SessionLifecycle
    clock: Callable[[], float]
    audit: Audit
    remote_cache: RemoteCache | None = None
    signing: SigningService | None = None
    """authsvc's own keys and assertions (CONTRACT §5); None for the admin commands."""

    @property
    def upstream_assertions(self) -> UpstreamAssertions | None:
        """``[upstream_assertion]`` when enabled: what every 200 of /api/auth/verify carries."""
        return self.signing.upstream if self.signing is not None else None

    def key_health(self) -> tuple[str, dict[str, KeyState]]:
        """CONTRACT §4's keys state over every issuer, and each issuer's own.

        ``ok``; ``stale`` when some issuer serves last-good keys; ``degraded`` when
        some issuer has no usable key; ``failing`` when none has; ``disabled``
        when no issuer is enabled.
        """
        states = {issuer.name: issuer.health() for issuer in self.issuers}
        kinds = {state.state for state in states.values()}
        if not states:
            overall = "disabled"
        elif kinds == {"failing"}:
            overall = "failing"
        elif "failing" in kinds:
            overall = "degraded"
        elif "stale" in kinds:
            overall = "stale"
        else:
            overall = "ok"
        return overall, states

    def close(self) -> None:
        """Stop background work and release connections (tests, the serve main process)."""
        self.issuers.close()
        if self.signing is not None:
            self.signing.close()
        for part in (self.remote_cache, self.sessions.store, self.reads):
            close = getattr(part, "close", None)
            if callable(close):
                close()
        self.engine.dispose()

    def purge_sessions(self) -> int:
        """Delete ended sessions (run in the background; callable from tests)."""
        return self.sessions.purge()


def service() -> Service:
    """The current app's Service (inside a request or app context)."""
    svc: Service = current_app.extensions["authsvc"]
    return svc
