"""``GET /metrics``: Prometheus text format, one view of the whole service (authsvc.metrics)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from authsvc.service import service

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(service().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
