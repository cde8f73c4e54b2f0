"""``GET /api/auth/verify``: forward-auth for nginx auth_request, Traefik, Caddy, Envoy ext_authz.

A JWT resolves its user exactly as a login does (lookup-only, sign-up,
disabled) but starts no session; a session cookie works too. 200 carries
``X-Auth-*`` headers naming the caller. Gates: ``?role=`` (minimum role) and
``?group=`` (any of) and ``?scope=`` answer 403 ``auth.forbidden``;
``?issuer=`` (any of) lets only those issuers authenticate (401).
``/api/auth/verify/<any path>`` answers the same (Envoy ext_authz appends
the original path to its prefix).
"""

from __future__ import annotations

import json
import time
import unicodedata
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from authsvc.authn import Caller
from authsvc.config import ROLES
from authsvc.errors import BadRequest, Forbidden
from authsvc.identity import role_at_least
from authsvc.service import service
from authsvc.views.login import current_caller

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from authsvc.service import Service
    from authsvc.signing import UpstreamAssertions

bp = Blueprint("forward_auth", __name__)


@bp.get("/api/auth/verify")
@bp.get("/api/auth/verify/<path:_rest>")
def verify(_rest: str = "") -> Response:
    minimum = request.args.get("role")
    if minimum is not None and minimum not in ROLES:
        raise BadRequest(f"?role={minimum!r} is not one of {', '.join(ROLES)}")
    allowed = request.args.getlist("issuer") or None
    caller = current_caller(allowed=allowed)
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
    scopes = request.args.getlist("scope")
    if scopes and caller.scope is not None and not set(scopes) & set(caller.scope):
        raise Forbidden(
            f"the token's scope ({', '.join(caller.scope) or 'empty'}) includes none of "
            f"{', '.join(scopes)}"
        )
    body, headers = identity_response(caller, service().upstream_assertions)
    response = Response(body, mimetype="application/json")
    response.headers.extend(headers)
    return response


# X-Auth-* headers together stay below this, so that the whole answer fits nginx's
# default 4 KiB proxy buffer (CONTRACT §7): X-Auth-Groups gives way first.
HEADER_BUDGET = 3 * 1024
_TRUNCATED = ("X-Auth-Groups-Truncated", "true")


def identity_response(
    caller: Caller, upstream: UpstreamAssertions | None = None
) -> tuple[bytes, list[tuple[str, str]]]:
    """The 200's body and X-Auth-* headers; one builder for both paths to this endpoint.

    ``upstream`` (``[upstream_assertion]`` enabled) adds the signed assertion, from
    its per-caller cache; it counts towards HEADER_BUDGET like the X-Auth-* headers,
    so X-Auth-Groups gives way to it (the assertion keeps the full list).

    Values are the exact text of the account (granian writes a header's str as
    UTF-8), never a lossy ``?``: identifiers were refused at the mapping step
    if they held anything a header cannot carry. Within HEADER_BUDGET the
    fixed headers come first, then forwarded claims that fit, then as many
    whole groups as fit.
    """
    user = caller.user
    subject = caller.subject
    body = json.dumps({**caller.user_json(), "subject": subject}).encode()
    headers = [
        ("X-Auth-User", _header_value(user.login, "login")),
        ("X-Auth-Email", _header_value(user.email or "", "email")),
        ("X-Auth-Name", _header_value(user.name, "name")),
        ("X-Auth-Role", user.role),
    ]
    tail = [
        ("X-Auth-Subject", _header_value(subject, "subject")),
        ("X-Auth-Issuer", caller.issuer),
    ]
    if caller.scope is not None:
        tail.append(("X-Auth-Scope", ",".join(_listed(s) for s in caller.scope)))
    if upstream is not None:
        tail.append(upstream.header(caller))
    used = _size(headers) + _size(tail)
    for header in caller.forwarded:
        # Room is kept for the groups header and its truncation mark, however few groups.
        if used + _size([header, ("X-Auth-Groups", ""), _TRUNCATED]) <= HEADER_BUDGET:
            tail.append(header)
            used += _size([header])
    groups = [_listed(_header_value(g, "group name")) for g in user.groups]
    joined = ",".join(groups)
    if used + _size([("X-Auth-Groups", joined)]) <= HEADER_BUDGET:
        headers.append(("X-Auth-Groups", joined))
    else:
        room = HEADER_BUDGET - used - _size([("X-Auth-Groups", ""), _TRUNCATED])
        kept: list[str] = []
        for group in groups:
            room -= len(group.encode()) + (1 if kept else 0)
            if room < 0:
                break
            kept.append(group)
        headers.append(("X-Auth-Groups", ",".join(kept)))
        headers.append(_TRUNCATED)
    headers.extend(tail)
    headers.append(("Cache-Control", "no-store"))
    return body, headers


def _listed(item: str) -> str:
    """An item of a comma-joined header: ``%`` and ``,`` inside it percent-encoded."""
    return item.replace("%", "%25").replace(",", "%2C")


def _size(headers: list[tuple[str, str]]) -> int:
    """Bytes the headers take on the wire: ``Name: value\r\n`` each."""
    return sum(len(name) + len(value.encode()) + 4 for name, value in headers)


def _header_value(value: str, what: str) -> str:
    """``value`` as is; an account stored before identifiers were checked may hold a
    control character, which no header can carry: refused, never mangled."""
    if value.isprintable() or not any(unicodedata.category(c) == "Cc" for c in value):
        return value
    raise Forbidden(
        f"the account's {what} holds a control character that no header can carry; "
        "an administrator must correct it"
    )


class ForwardAuthFastPath:
    """WSGI middleware answering the common forward-auth request before Flask's dispatch.

    The common request — ``GET /api/auth/verify``, no query string, a JWT an
    issuer of this process verified before and that is still valid, its
    linked user unchanged and enabled — is the authentication service's
    cached entry (``AuthnService.cached_caller``) plus the same response
    builder as the view; Flask's request machinery would add ~120 µs to it.
    Everything else (a new token, cookies, gates, any refusal, any error)
    falls through to the Flask view, which answers it the long way.
    """

    PATH = "/api/auth/verify"

    def __init__(self, wsgi_app: WSGIApplication, svc: Service) -> None:
        self.next = wsgi_app
        self.authn = svc.authn
        self.hooks = svc.hooks
        self.upstream = svc.upstream_assertions

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
        caller = self.authn.cached_caller(environ)
        if caller is None:
            return None
        try:
            body, headers = identity_response(caller, self.upstream)
        except Exception:  # e.g. a stored login no header can carry: the view refuses it
            return None
        headers.append(("Content-Type", "application/json"))
        headers.append(("Content-Length", str(len(body))))
        rid = self.hooks.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers.extend(self.hooks.common_headers(rid))
        start_response("200 OK", headers)
        self.hooks.observe(self.PATH, 200, time.perf_counter() - started)
        return [body]
