"""``GET /api/auth/verify``: forward-auth for nginx auth_request, Traefik, Envoy ext_authz.

200 with ``X-Auth-*`` headers naming the caller; ``?role=`` (minimum role)
and ``?group=`` (any of) gates answer 403 ``auth.forbidden``.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from authsvc.app import service
from authsvc.config import ROLES
from authsvc.errors import BadRequest, Forbidden, Unauthorized
from authsvc.identity import role_at_least

bp = Blueprint("forward_auth", __name__)


def _header_safe(value: str) -> str:
    """Header values cannot carry CR/LF or non-Latin-1 text; claims can."""
    cleaned = "".join(c if c.isprintable() else " " for c in value)
    return cleaned.encode("latin-1", "replace").decode("latin-1")


@bp.get("/api/auth/verify")
def verify() -> Response:
    svc = service()
    result = svc.authn.authenticate(request) if svc.authn is not None else None
    if result is None:
        raise Unauthorized("no credentials: send a JWT", token_presented=False)
    ident = result.identity
    minimum = request.args.get("role")
    if minimum is not None:
        if minimum not in ROLES:
            raise BadRequest(f"?role={minimum!r} is not one of {', '.join(ROLES)}")
        if not role_at_least(ident.role, minimum):
            raise Forbidden(f"role {ident.role} is below the required {minimum}")
    wanted = request.args.getlist("group")
    if wanted and not set(wanted) & set(ident.groups):
        raise Forbidden(
            f"not in any of the groups {', '.join(wanted)} (member of: "
            f"{', '.join(ident.groups) or 'none'})"
        )
    response = jsonify(
        {
            "login": ident.login,
            "email": ident.email,
            "name": ident.name,
            "role": ident.role,
            "groups": list(ident.groups),
            "subject": ident.subject,
        }
    )
    response.headers["X-Auth-User"] = _header_safe(ident.login)
    response.headers["X-Auth-Email"] = _header_safe(ident.email)
    response.headers["X-Auth-Name"] = _header_safe(ident.name)
    response.headers["X-Auth-Role"] = ident.role
    response.headers["X-Auth-Groups"] = _header_safe(",".join(ident.groups))
    response.headers["X-Auth-Subject"] = _header_safe(ident.subject)
    response.headers["Cache-Control"] = "no-store"
    return response
