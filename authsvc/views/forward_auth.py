"""``GET /api/auth/verify``: forward-auth for nginx auth_request, Traefik, Envoy ext_authz.

A JWT resolves its user exactly as a login does (lookup-only, sign-up,
disabled) but starts no session; a session cookie works too. 200 carries
``X-Auth-*`` headers naming the caller; ``?role=`` (minimum role) and
``?group=`` (any of) gates answer 403 ``auth.forbidden``.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from authsvc.config import ROLES
from authsvc.errors import BadRequest, Forbidden
from authsvc.identity import role_at_least
from authsvc.views.login import current_caller

bp = Blueprint("forward_auth", __name__)


def _header_safe(value: str) -> str:
    """Header values cannot carry CR/LF or non-Latin-1 text; claims can."""
    cleaned = "".join(c if c.isprintable() else " " for c in value)
    return cleaned.encode("latin-1", "replace").decode("latin-1")


@bp.get("/api/auth/verify")
def verify() -> Response:
    minimum = request.args.get("role")
    if minimum is not None and minimum not in ROLES:
        raise BadRequest(f"?role={minimum!r} is not one of {', '.join(ROLES)}")
    caller = current_caller()
    user = caller.user
    groups = list(user.groups or [])
    if minimum is not None and not role_at_least(user.role, minimum):
        raise Forbidden(f"role {user.role} is below the required {minimum}")
    wanted = request.args.getlist("group")
    if wanted and not set(wanted) & set(groups):
        raise Forbidden(
            f"not in any of the groups {', '.join(wanted)} "
            f"(member of: {', '.join(groups) or 'none'})"
        )
    if caller.jwt is not None:
        subject = caller.jwt.identity.subject
    else:
        subject = caller.session.subject if caller.session is not None else ""
    # Built directly: jsonify's provider costs more than the rest of this view.
    response = Response(
        json.dumps({**user.to_json(), "subject": subject}), mimetype="application/json"
    )
    response.headers["X-Auth-User"] = _header_safe(user.login)
    response.headers["X-Auth-Email"] = _header_safe(user.email or "")
    response.headers["X-Auth-Name"] = _header_safe(user.name)
    response.headers["X-Auth-Role"] = user.role
    response.headers["X-Auth-Groups"] = _header_safe(",".join(groups))
    response.headers["X-Auth-Subject"] = _header_safe(subject)
    response.headers["Cache-Control"] = "no-store"
    return response
