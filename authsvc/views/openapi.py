"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the HTTP API (``authsvc.openapi``).

The document is built and serialised once, when the blueprint is registered,
and kept on the app; a request only sends the bytes.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app
from flask.blueprints import BlueprintSetupState

from authsvc.openapi import build_document

bp = Blueprint("openapi", __name__)

_KEY = "authsvc.openapi"


@bp.record_once
def _build(state: BlueprintSetupState) -> None:
    state.app.extensions[_KEY] = json.dumps(build_document(), indent=1).encode()


@bp.get("/api/openapi.json")
def openapi() -> Response:
    return Response(current_app.extensions[_KEY], mimetype="application/json")
