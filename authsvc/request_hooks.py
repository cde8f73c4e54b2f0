"""What every response gets, whichever path answered it: a request id, security headers, metrics.

Flask's request hooks and the forward-auth fast path both call these, so the
two paths cannot drift apart.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time

from flask import Flask, Response, g, request

from authsvc.logs import request_id
from authsvc.metrics import Metrics


class RequestHooks:
    def __init__(self, metrics: Metrics, *, allow_embedding: bool) -> None:
        # Request ids: unique per process and cheap (no syscall per request); the pid
        # keeps workers apart, the random prefix keeps restarts apart.
        self._prefix = f"{secrets.token_hex(3)}{os.getpid():x}-"
        self._counter = itertools.count(1)
        self._security = [("X-Content-Type-Options", "nosniff")]
        if not allow_embedding:
            self._security.append(("X-Frame-Options", "deny"))
        self._metrics = metrics

    def request_id(self, incoming: str) -> str:
        """The caller's X-Request-Id when it is sane, else a new one."""
        if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.replace("-", "").isalnum():
            return incoming
        return f"{self._prefix}{next(self._counter):x}"

    def common_headers(self, rid: str) -> list[tuple[str, str]]:
        """The request id and the security headers, for any response."""
        return [("X-Request-Id", rid), *self._security]

    def observe(self, route: str, status: int, seconds: float | None) -> None:
        self._metrics.request(route, status, seconds)

    def install(self, app: Flask) -> None:
        @app.before_request
        def _start() -> None:
            rid = self.request_id(request.headers.get("X-Request-Id", ""))
            g.request_id = rid
            g.started = time.perf_counter()
            request_id.set(rid)

        @app.after_request
        def _finish(response: Response) -> Response:
            for name, value in self.common_headers(g.get("request_id", "-")):
                response.headers[name] = value
            rule = request.url_rule
            started = g.get("started")
            self.observe(
                rule.rule if rule is not None else "unmatched",
                response.status_code,
                time.perf_counter() - started if started is not None else None,
            )
            return response
