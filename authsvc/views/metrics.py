"""``GET /metrics``: Prometheus text format, from this app's own registry."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from authsvc.service import service

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(service().metrics.registry), content_type=CONTENT_TYPE_LATEST)
