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
    overall, states = svc.key_health()
    body["keys"] = overall
    if states:
        body["issuers"] = {name: state.state for name, state in states.items()}
    details = [f"{name}: {state.detail}" for name, state in states.items() if state.detail]
    if details:
        body["keysError"] = "; ".join(details)
    problems = [f"{name}: {state.problem}" for name, state in states.items() if state.problem]
    if svc.signing is not None:
        problems += svc.signing.problems()  # a refused re-read of a signing key file
    if problems:
        body["problems"] = problems  # still 200: the previous keys serve
    if overall == "failing":
        healthy = False
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
