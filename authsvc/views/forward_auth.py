"""``GET /api/auth/verify``: forward-auth for nginx auth_request, Traefik, Envoy ext_authz.

A JWT resolves its user exactly as a login does (lookup-only, sign-up,
disabled) but starts no session; a session cookie works too. 200 carries
``X-Auth-*`` headers naming the caller; ``?role=`` (minimum role) and
``?group=`` (any of) gates answer 403 ``auth.forbidden``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from authsvc.authn import strip_bearer
from authsvc.config import ROLES
from authsvc.errors import BadRequest, Forbidden
from authsvc.identity import role_at_least
from authsvc.users import UserRecord
from authsvc.views.login import current_caller

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from authsvc.app import RequestHooks, Service

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
    body, headers = identity_response(user, subject)
    response = Response(body, mimetype="application/json")
    response.headers.extend(headers)
    return response


def identity_response(user: UserRecord, subject: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The 200's body and X-Auth-* headers; one builder for both paths to this endpoint."""
    body = json.dumps({**user.to_json(), "subject": subject}).encode()
    headers = [
        ("X-Auth-User", _header_safe(user.login)),
        ("X-Auth-Email", _header_safe(user.email or "")),
        ("X-Auth-Name", _header_safe(user.name)),
        ("X-Auth-Role", user.role),
        ("X-Auth-Groups", _header_safe(",".join(user.groups))),
        ("X-Auth-Subject", _header_safe(subject)),
        ("Cache-Control", "no-store"),
    ]
    return body, headers


class ForwardAuthFastPath:
    """WSGI middleware answering the common forward-auth request before Flask's dispatch.

    The common request — ``GET /api/auth/verify``, no query string, a JWT this
    process verified before and that is still valid, its linked user unchanged
    and enabled — costs one user read (the same one the Flask view makes);
    Flask's request machinery would add ~120 µs to it. Everything else (a new
    token, cookies, ``?role=``/``?group=`` gates, any refusal, any error) falls
    through to the Flask view, which answers it the long way.
    """

    PATH = "/api/auth/verify"

    def __init__(self, wsgi_app: WSGIApplication, svc: Service, hooks: RequestHooks) -> None:
        assert svc.jwt is not None
        self.next = wsgi_app
        self.jwt = svc.jwt
        self.authn = svc.authn
        self.hooks = hooks
        self.header_key = "HTTP_" + svc.jwt.settings.header_name.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if (
            environ.get("PATH_INFO") == self.PATH
            and environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
        ):
            answered = self._answer(environ, start_response)
            if answered is not None:
                return answered
        return self.next(environ, start_response)

    def _answer(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        started = time.perf_counter()
        token = strip_bearer(environ.get(self.header_key, ""))
        verified = self.jwt.verifier.cached(token) if token else None
        if verified is None:
            return None
        try:
            identity = self.jwt.mapper.identity(verified.claims)
            user = self.authn.unchanged_linked(identity)
        except Exception:  # any refusal or failure: the Flask view answers and reports it
            return None
        if user is None:
            return None
        body, headers = identity_response(user, identity.subject)
        headers.append(("Content-Type", "application/json"))
        headers.append(("Content-Length", str(len(body))))
        headers.extend(self.hooks.common_headers(environ.get("HTTP_X_REQUEST_ID", "")))
        start_response("200 OK", headers)
        self.hooks.observe(self.PATH, 200, time.perf_counter() - started)
        return [body]
