"""Session login and logout: ``POST /api/login/jwt``, ``GET /login``, ``/api/user``, logout.

The session cookie is HttpOnly and Path=/, Secure and SameSite per
``[security]``; it carries a random token whose hash alone is stored.
``GET /login`` redirects only to a local path, and the token it received
never appears in the redirect or the log.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from flask import Blueprint, jsonify, redirect, request
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response

from authsvc.authn import QUERY_PARAM, Caller
from authsvc.errors import Forbidden, IdentityDisabled, SessionInvalid, Unauthorized
from authsvc.service import Service, service
from authsvc.sessions.base import SessionRecord
from authsvc.users import UserRecord, auth_module

bp = Blueprint("login", __name__)


def safe_redirect_target(target: str | None) -> str:
    """A local path, or ``/``: no scheme or host, no ``//`` or backslash tricks, no controls."""
    if not target:
        return "/"
    if any(not c.isprintable() or c.isspace() for c in target):
        return "/"
    if not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    # Browsers do not decode %2F or %5C in a path, but routers and proxies behind us
    # may: refuse what turns into "//host" or "/\\host" once decoded (as Grafana does).
    path = unquote(parts.path)
    if path.startswith("//") or "\\" in path or not path.isprintable():
        return "/"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == QUERY_PARAM for k, _ in pairs):
        # The token must not travel on in the redirect (Grafana strips auth_token too);
        # other query strings are kept exactly as written.
        kept = [(k, v) for k, v in pairs if k != QUERY_PARAM]
        target = urlunsplit(parts._replace(query=urlencode(kept)))
    return target


def _cookie_attributes(svc: Service) -> dict[str, Any]:
    """Path, Secure, HttpOnly, SameSite of the session cookie, set and cleared alike.

    Secure whenever root_url is https, whatever cookie_secure says (CONTRACT §7):
    a session cookie served over https must never travel over plain http.
    """
    security = svc.settings.security
    https = svc.settings.server.root_url.startswith("https:")
    samesite = None if security.cookie_samesite == "disabled" else security.cookie_samesite.title()
    return {
        "path": "/",
        "secure": security.cookie_secure or https,
        "httponly": True,
        "samesite": samesite,
    }


def session_cookie(svc: Service, token: str, record: SessionRecord) -> str:
    """The ``Set-Cookie`` value carrying a session's token (login, rotation)."""
    return dump_cookie(
        svc.settings.auth.login_cookie_name,
        token,
        max_age=svc.sessions.cookie_max_age(record),
        **_cookie_attributes(svc),
    )


def set_session_cookie(response: Response, svc: Service, token: str, record: SessionRecord) -> None:
    response.headers.add("Set-Cookie", session_cookie(svc, token, record))


def clear_session_cookie(response: Response, svc: Service) -> None:
    response.delete_cookie(svc.settings.auth.login_cookie_name, **_cookie_attributes(svc))


def check_origin(svc: Service, caller: Caller, *, state_changing: bool = False) -> None:
    """Refuse cookie-authenticated state changes from another origin (CSRF).

    ``state_changing`` marks a GET that changes state (``GET /logout``).
    """
    if caller.via != "session":
        return
    if not state_changing and request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise Forbidden("cross-site request refused (Sec-Fetch-Site: cross-site)")
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return  # neither header: not a browser's cross-site request
    root = urlsplit(svc.settings.server.root_url)
    seen = urlsplit(source)
    if (seen.scheme, seen.netloc) != (root.scheme, root.netloc):
        raise Forbidden(
            f"cross-origin request from {_origin(seen.scheme, seen.netloc)} refused "
            f"(allowed origin: {root.scheme}://{root.netloc}, [server] root_url)"
        )


def _origin(scheme: str, netloc: str) -> str:
    """An origin as a reason may show it: printable, bounded."""
    text = f"{scheme}://{netloc}"[:200]
    return "".join(c if c.isprintable() else "?" for c in text)


def current_caller(*, sessions: bool = True, allowed: list[str] | None = None) -> Caller:
    """The caller of this request; renews the cookie after a rotation (see after_request).

    ``allowed``: the only issuers that may authenticate it (``?issuer=``).
    """
    svc = service()
    caller = svc.authn.caller(request, sessions=sessions, allowed=allowed)
    # Queued before any check can refuse the request: the rotation is stored already,
    # and a response without the new token would log the user out after the grace period.
    _queue_rotated(caller)
    check_origin(svc, caller)
    return caller


def _queue_rotated(caller: Caller) -> None:
    if caller.new_session_token and caller.session is not None:
        request.environ["authsvc.rotated"] = (caller.new_session_token, caller.session)


@bp.after_app_request
def _renew_cookie(response: Response) -> Response:
    rotated = request.environ.get("authsvc.rotated")
    if rotated is not None:
        set_session_cookie(response, service(), *rotated)
    return response


def _start_session(svc: Service, *, url: bool) -> tuple[UserRecord, str, SessionRecord]:
    return svc.authn.sign_in(
        request,
        url=url,
        user_agent=request.headers.get("User-Agent", ""),
        client_ip=request.remote_addr or "",
    )


@bp.post("/api/login/jwt")
def login_jwt() -> Response:
    svc = service()
    if not len(svc.issuers):
        raise Unauthorized("JWT authentication is disabled", token_presented=False)
    user, session_token, record = _start_session(svc, url=False)
    body = {**user.to_json(), "authModule": auth_module(record.issuer)}
    response = Response(json.dumps(body), mimetype="application/json")
    set_session_cookie(response, svc, session_token, record)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/login")
def login_url() -> Response:
    svc = service()
    target = safe_redirect_target(request.args.get("redirect_to"))
    if not any(issuer.settings.url_login for issuer in svc.issuers):
        raise Unauthorized(
            "URL login is disabled ([auth.jwt] url_login = false)", token_presented=False
        )
    _user, session_token, record = _start_session(svc, url=True)
    response = redirect(target, code=302)
    set_session_cookie(response, svc, session_token, record)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/api/user")
def current_user() -> Response:
    caller = current_caller()
    return jsonify(caller.user_json())


def _logout(svc: Service, *, state_changing_get: bool = False) -> None:
    """Revoke the cookie's session server-side; a copied cookie stops working too."""
    cookie = request.cookies.get(svc.settings.auth.login_cookie_name, "")
    if not cookie:
        raise Unauthorized("no session to log out of", token_presented=False)
    try:
        caller = svc.authn.session_client.authenticate(cookie)
    except (SessionInvalid, IdentityDisabled):
        # Expired, rotated away or disabled: still make sure the record is gone.
        record = svc.sessions.store.lookup(cookie)
        if record is not None and svc.sessions.revoke(record.id):
            user = svc.authn.reader.by_id(record.user_id)
            svc.audit("logout", user=user.login if user else "", issuer=record.issuer)
        return
    try:
        check_origin(svc, caller, state_changing=state_changing_get)
    except Forbidden:
        _queue_rotated(caller)  # the session lives on: keep its new token
        raise
    if caller.session is not None and svc.sessions.revoke(caller.session.id):
        svc.audit("logout", user=caller.user.login, issuer=caller.issuer)


@bp.post("/api/logout")
def logout_api() -> Response:
    svc = service()
    _logout(svc)
    response = jsonify({"message": "Logged out"})
    clear_session_cookie(response, svc)
    return response


@bp.get("/logout")
def logout_page() -> Response:
    """A link a page can follow: a cross-site one (another site's <img src>) is a 403."""
    svc = service()
    with contextlib.suppress(Unauthorized):
        _logout(svc, state_changing_get=True)
    response = redirect(svc.settings.auth.signout_redirect_url or "/", code=302)
    clear_session_cookie(response, svc)
    return response
