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

from authsvc.authn import AuthnService
from authsvc.config import Settings
from authsvc.issuers import Issuer, Issuers
from authsvc.keys.base import KeyProvider, KeyState
from authsvc.metrics import Metrics
from authsvc.remote_cache import RemoteCache
from authsvc.request_hooks import RequestHooks
from authsvc.sessions.lifecycle import SessionLifecycle


@dataclass
class Service:
    settings: Settings
    engine: Engine
    db: sessionmaker[Any]
    metrics: Metrics
    hooks: RequestHooks
    issuers: Issuers
    authn: AuthnService
    sessions: SessionLifecycle
    clock: Callable[[], float]
    remote_cache: RemoteCache | None = None

    @property
    def jwt(self) -> Issuer | None:
        """The ``[auth.jwt]`` issuer, when enabled."""
        return self.issuers.get("jwt")

    @property
    def keys(self) -> KeyProvider | None:
        """The ``[auth.jwt]`` issuer's key provider, when enabled."""
        return None if self.jwt is None else self.jwt.keys

    def key_health(self) -> KeyState:
        """The keys' state over every issuer (``disabled`` when none is enabled)."""
        states = [issuer.health() for issuer in self.issuers]
        if not states:
            return KeyState("disabled")
        for state in ("failing", "stale"):
            for s in states:
                if s.state == state:
                    return s
        return KeyState("ok")

    def close(self) -> None:
        """Stop background work and release connections (tests, the serve main process)."""
        self.issuers.close()
        for part in (self.remote_cache, self.sessions.store):
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
