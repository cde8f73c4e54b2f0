"""One renderer for every error a client sees (CONTRACT §3), and the app's error handlers.

``error_parts`` builds the body and headers; the Flask handlers and the
forward-auth fast path both answer with it. Anything unexpected is logged
with the request id and becomes a generic 500 (and propagates under tests);
a lost database or Redis is CONTRACT §7's 503, not a 500.
"""

from __future__ import annotations

import json
import logging
import sys

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from authsvc.db import unavailable as db_unavailable
from authsvc.errors import (
    AuthsvcError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)


def error_parts(err: AuthsvcError) -> tuple[bytes, list[tuple[str, str]]]:
    """The JSON body and headers of ``err``: RFC 6750's WWW-Authenticate on a 401."""
    body = json.dumps(
        {
            "message": err.message,
            "messageId": err.message_id,
            "statusCode": err.status,
            "reason": err.reason or err.message,
        }
    ).encode()
    headers = [("Content-Type", "application/json")]
    if err.status == 401:
        if err.token_presented and err.message_id != "auth.unauthorized":
            # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E only. A reason
            # can quote claim values (CR/LF, non-Latin-1) that would break the header.
            desc = "".join(
                c if " " <= c <= "~" and c not in '"\\' else "?"
                for c in (err.reason or err.message)
            )
            headers.append(
                ("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{desc}"')
            )
        else:
            headers.append(("WWW-Authenticate", "Bearer"))
    return body, headers


def error_response(err: AuthsvcError) -> Response:
    body, headers = error_parts(err)
    return Response(body, status=err.status, headers=headers)


def outage(exc: BaseException) -> str | None:
    """``database unavailable`` / ``redis unavailable`` when ``exc`` is a lost connection."""
    if db_unavailable(exc):
        return "database unavailable"
    redis = sys.modules.get("redis")  # only loaded when Redis is configured
    if redis is not None and isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ):
        return "redis unavailable"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


class _HttpError(AuthsvcError):
    """A werkzeug HTTP error other than 404/405 (an oversized request, say)."""

    def __init__(self, exc: HTTPException) -> None:
        super().__init__(exc.description or exc.name)
        self.status = exc.code or 500  # type: ignore[misc]
        self.message = exc.name  # type: ignore[misc]
        if self.status < 500:
            self.message_id = BadRequest.message_id  # type: ignore[misc]


def failure(
    exc: Exception, *, path: str, request_id: str, propagate: bool
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers for ``exc``, logged: the one way every path reports a failure.

    A contract error is answered as it says; a lost database or Redis is the 503
    ``service.unavailable`` (driver, host and port go to the log only, CONTRACT
    §7); anything else is a bug: a generic 500 naming the request id, the
    details in the log — and, with ``propagate`` (tests), raised instead.
    """
    if isinstance(exc, AuthsvcError):
        err = exc
        level = logging.WARNING if err.status < 500 else logging.ERROR
        log.log(
            level,
            "request refused: %s",
            err.message_id,
            extra={"status": err.status, "reason": err.reason, "path": path},
        )
    elif (lost := outage(exc)) is not None:
        log.error(
            "request refused: service.unavailable",
            extra={"path": path, "reason": lost, "error": _first_line(exc)},
        )
        err = ServiceUnavailable(lost)
    elif propagate:
        raise exc
    else:
        log.exception("unexpected error", extra={"path": path})
        err = AuthsvcError(f"request id {request_id}")
    body, headers = error_parts(err)
    return err.status, body, headers


def install(app: Flask) -> None:
    def _render(exc: Exception) -> Response:
        status, body, headers = failure(
            exc,
            path=request.path,
            request_id=g.get("request_id", "-"),
            propagate=app.config["PROPAGATE_EXCEPTIONS"],
        )
        return Response(body, status=status, headers=headers)

    app.register_error_handler(AuthsvcError, _render)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.code == 404:
            return error_response(NotFound(f"no route {request.method} {request.path}"))
        if exc.code == 405:
            response = error_response(
                MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            )
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(_HttpError(exc))

    app.register_error_handler(Exception, _render)
