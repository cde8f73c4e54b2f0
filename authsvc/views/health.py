"""``GET /api/health``: is the database reachable, are verification keys usable."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from authsvc import __version__
from authsvc.db import ping
from authsvc.service import service

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health() -> Response:
    svc = service()
    body: dict[str, object] = {"version": __version__}
    healthy = True
    db_problem = ping(svc.engine)
    if db_problem is None:
        body["database"] = "ok"
    else:
        # Anyone may ask: the driver's words (host, port, user) go to the log only.
        log.error("health: database unavailable", extra={"error": db_problem})
        body["database"] = "unavailable"
        healthy = False
    keys = svc.key_health()
    body["keys"] = keys.state
    if keys.detail:
        body["keysError"] = keys.detail
    if keys.state == "failing":
        healthy = False
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
