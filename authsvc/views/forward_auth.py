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

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Request

from authsvc.authn import Caller
from authsvc.config import ROLES
from authsvc.error_handlers import failure
from authsvc.errors import BadRequest, Forbidden
from authsvc.identity import role_at_least
from authsvc.logs import request_id
from authsvc.lru import LRUCache
from authsvc.service import service
from authsvc.views.login import session_cookie

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from authsvc.service import Service
    from authsvc.signing import UpstreamAssertions

bp = Blueprint("forward_auth", __name__)


PATH = "/api/auth/verify"
# Any path below PATH (Envoy ext_authz); also the route label in the metrics.
REST_RULE = PATH + "/<anyrest:_rest>"


class AnyRest(BaseConverter):
    """The rest of a path, whatever it holds: empty segments, leading slashes, line breaks.

    Envoy ext_authz appends the original request path; werkzeug's ``path``
    converter would redirect ``//x`` and refuse a path with a line break.
    Registered as ``anyrest`` by ``create_app``.
    """

    regex = r"[\s\S]*"
    part_isolating = False


@bp.get(PATH)
@bp.get(REST_RULE, merge_slashes=False)
def verify(_rest: str = "") -> Response:
    """The route as Flask knows it (URL map, docs, OpenAPI); ForwardAuthFastPath below
    answers every GET and HEAD before Flask dispatches, with this same ``respond``."""
    status, body, headers = respond(
        request,
        service(),
        request_id=g.get("request_id", "-"),
        propagate=current_app.config["PROPAGATE_EXCEPTIONS"],
    )
    return Response(body, status=status, headers=headers)


def respond(
    request: Request,
    svc: Service,
    *,
    request_id: str,
    propagate: bool,
    rendered: LRUCache[tuple[Any, ...], Rendered] | None = None,
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers of a forward-auth request: the one implementation.

    Refusals are rendered here (``error_handlers.failure``), so the answer is
    the same whichever entry took the request. A session rotated by this
    request sends its new cookie even when a gate then refuses: the rotation
    is stored already, and the old token only lasts the grace period.
    """
    rotated: list[tuple[str, str]] = []
    try:
        # Most proxies ask without a query: its parsing is skipped then.
        args = request.args if request.environ.get("QUERY_STRING") else None
        minimum = args.get("role") if args is not None else None
        if minimum is not None and minimum not in ROLES:
            raise BadRequest(f"?role={minimum!r} is not one of {', '.join(ROLES)}")
        allowed = (args.getlist("issuer") or None) if args is not None else None
        caller = svc.authn.caller(request, allowed=allowed)
        if caller.new_session_token and caller.session is not None:
            rotated.append(
                ("Set-Cookie", session_cookie(svc, caller.new_session_token, caller.session))
            )
        if args is not None:
            _gates(caller, minimum, args.getlist("group"), args.getlist("scope"))
        body, headers = identity_response(caller, svc.upstream_assertions, rendered)
        headers.append(("Content-Type", "application/json"))
        return 200, body, headers + rotated
    except Exception as exc:
        status, body, headers = failure(
            exc, path=request.path, request_id=request_id, propagate=propagate
        )
        return status, body, headers + rotated


def _gates(caller: Caller, minimum: str | None, groups: list[str], scopes: list[str]) -> None:
    """``?role=`` (minimum), ``?group=`` (any of), ``?scope=`` (any of; unscoped passes)."""
    user = caller.user
    if minimum is not None and not role_at_least(user.role, minimum):
        raise Forbidden(f"role {user.role} is below the required {minimum}")
    if groups and not set(groups) & set(user.groups):
        raise Forbidden(
            f"not in any of the groups {', '.join(groups)} "
            f"(member of: {', '.join(user.groups) or 'none'})"
        )
    if scopes and caller.scope is not None and not set(scopes) & set(caller.scope):
        raise Forbidden(
            f"the token's scope ({', '.join(caller.scope) or 'empty'}) includes none of "
            f"{', '.join(scopes)}"
        )


# X-Auth-* headers together stay below this, so that the whole answer fits nginx's
# default 4 KiB proxy buffer (CONTRACT §7): X-Auth-Groups gives way first.
HEADER_BUDGET = 3 * 1024
_TRUNCATED = ("X-Auth-Groups-Truncated", "true")
# Rendered answers remembered per caller (an LRU, CONTRACT §7's bounded memory).
RENDERED_ENTRIES = 10_000
RENDERED_BYTES = 32 << 20


Rendered = tuple[bytes, tuple[tuple[str, str], ...]]


def identity_response(
    caller: Caller,
    upstream: UpstreamAssertions | None = None,
    rendered: LRUCache[tuple[Any, ...], Rendered] | None = None,
) -> tuple[bytes, list[tuple[str, str]]]:
    """The 200's body and X-Auth-* headers; one builder for both paths to this endpoint.

    The answer is a pure function of the caller (user, issuer, subject, scope,
    forwarded claims) and the assertion: ``rendered`` remembers it, so a repeated
    caller costs a dict lookup instead of a JSON encoding and the header budget.
    """
    assertion = upstream.header(caller) if upstream is not None else None
    if rendered is None:
        return _render(caller, assertion)
    key = (caller.user, caller.issuer, caller.subject, caller.scope, caller.forwarded, assertion)
    hit = rendered.get(key)
    if hit is None:
        body, headers = _render(caller, assertion)
        hit = (body, tuple(headers))
        rendered.put(key, hit, 2 * len(body) + sum(len(v) for _, v in headers) + 512)
    return hit[0], list(hit[1])


def _render(
    caller: Caller, assertion: tuple[str, str] | None
) -> tuple[bytes, list[tuple[str, str]]]:
    """``assertion`` (``[upstream_assertion]`` enabled) is the signed header; it counts
    towards HEADER_BUDGET like the X-Auth-* headers, so X-Auth-Groups gives way to it
    (the assertion keeps the full list).

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
    if assertion is not None:
        tail.append(assertion)
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
    if "%" not in item and "," not in item:
        return item
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
    """The WSGI entry of forward-auth: every ``GET``/``HEAD /api/auth/verify[/...]`` before Flask.

    Flask's request machinery (contexts, routing, hooks, response objects) costs
    more than the whole answer of a repeated token; this entry calls the same
    ``respond`` as the view with a bare werkzeug Request and adds what every
    response gets (request id, security headers, metrics). Any path under the
    prefix is taken as it is (Envoy ext_authz appends the original path,
    doubled slashes and all), never redirected or refused as unknown.
    """

    def __init__(self, app: Flask, svc: Service) -> None:
        self.next = app.wsgi_app
        self.config = app.config
        self.svc = svc
        self.hooks = svc.hooks
        self.rendered: LRUCache[tuple[Any, ...], Rendered] = LRUCache(
            RENDERED_ENTRIES, RENDERED_BYTES
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if (method != "GET" and method != "HEAD") or not (
            path == PATH or path.startswith(PATH + "/")
        ):
            return self.next(environ, start_response)
        started = time.perf_counter()
        rid = self.hooks.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        request_id.set(rid)
        status, body, headers = respond(
            Request(environ),
            self.svc,
            request_id=rid,
            propagate=self.config["PROPAGATE_EXCEPTIONS"],
            rendered=self.rendered,
        )
        headers.append(("Content-Length", str(len(body))))
        headers.extend(self.hooks.common_headers(rid))
        start_response(
            f"{status} {HTTP_STATUS_CODES.get(status, '').upper()}", headers
        )  # as werkzeug
        route = PATH if path == PATH else REST_RULE
        self.hooks.observe(route, status, time.perf_counter() - started)
        return [body] if method == "GET" else []  # HEAD: the same headers, no body
