"""The OpenAPI 3.1 description of the whole HTTP API (docs/reference.md), built once per app.

``GET /api/openapi.json`` serves it (``authsvc.views.openapi``). It describes
every endpoint whether or not this instance enables it: an endpoint that is
off (``/metrics`` with ``[metrics] enabled = false``, the ``/.well-known``
documents without ``[signing] key_file``) answers its documented 404. The
messageId enum is read from ``authsvc.errors``, the one place that defines
the ids; ``_WHEN`` says when each is sent. Tests run schemathesis against a
live ``authsvc serve`` with this document (tests/test_openapi_live.py) and
check that it lists every URL rule of the app (tests/test_docs.py).
"""

from __future__ import annotations

from typing import Any

from authsvc import __version__, errors
from authsvc.config import ROLES

Json = dict[str, Any]

JSON = "application/json"

# When each messageId is sent (CONTRACT §3's table, as implemented).
_WHEN = {
    "auth.unauthorized": (
        "No credentials at all (an empty `Bearer` counts as none); a JWT login while no "
        "issuer is enabled; `GET /login` while no issuer has `url_login`; "
        "`POST /api/logout` without a session cookie."
    ),
    "jwt.invalid": (
        "The token fails verification: signature, algorithm, kid, format, `typ`, "
        "`exp`/`nbf`/`iat`, `expect_claims`, `issuer`/`audience`, an unclean identifier, "
        "two different tokens in one request, no issuer for its `iss`, or an issuer that "
        "`?issuer=` does not allow. `reason` says which."
    ),
    "jwt.missing_claim": "No `sub`, or neither login nor email can be derived from the token.",
    "jwt.invalid_role": "`role_attribute_strict = true` and the token yields no valid role.",
    "jwt.keys_unavailable": (
        "No usable verification key: the JWKS URL fails and nothing last-good is left."
    ),
    "user.sync.signup-disabled": "The token's user is unknown and sign-up is off (`lookup_only`).",
    "user.sync.conflict": (
        "The login or email (or a link) belongs to another account and "
        "`link_existing_users = false`; also an admin-created user whose login, email or "
        "link is taken."
    ),
    "identity.disabled": "The user is disabled.",
    "session.invalid": "The session cookie is unknown, expired or revoked.",
    "auth.forbidden": (
        "Authenticated but not allowed: the admin API for a non-server-admin, `?role=`, "
        "`?group=` or `?scope=` not met, an assertion's `min_role`/`groups` not met, a "
        "cookie-authenticated state change from another origin, a cross-site `GET /logout`."
    ),
    "api.not_found": (
        "No such route, no such user id, an unknown assertion NAME, or a `/.well-known` "
        "document or `/metrics` while that feature is off."
    ),
    "api.method_not_allowed": "The route exists but not for this method (`Allow` lists those).",
    "api.bad_request": (
        "A malformed request that is no authentication failure: `?role=` naming no role, "
        "a bad `?page=`/`?perpage=`/`?query=`, a bad admin body."
    ),
    "internal": (
        "A bug: a generic message, the request id in `reason`, the details in the log only."
    ),
    "service.unavailable": (
        "The database (or Redis as the session store) is unreachable; `reason` names which."
    ),
}


def message_ids() -> dict[str, int]:
    """Every messageId of ``authsvc.errors`` with its status, in definition order."""
    ids: dict[str, int] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.AuthsvcError):
            ids.setdefault(value.message_id, value.status)
    return ids


def when(message_id: str) -> str:
    return _WHEN.get(message_id, "")


def build_document() -> Json:
    """The document: plain JSON data, built at app build and served as it is."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authsvc",
            "version": __version__,
            "summary": "Verifies JSON Web Tokens, maps them to users and sessions.",
            "description": (
                "JSON everywhere. Every error has the body `Error`; its `messageId` is one "
                "of the ids below. A 401 carries `WWW-Authenticate` (RFC 6750). Every "
                "response carries `X-Request-Id`. A 500 (`internal`) is a bug and is not "
                "listed per operation.\n\n"
                + "\n".join(
                    f"- `{mid}` ({status}): {when(mid)}" for mid, status in message_ids().items()
                )
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "service", "description": "health, metrics, this document"},
            {"name": "sessions", "description": "login and logout"},
            {"name": "forward-auth", "description": "nginx auth_request, Traefik, Envoy"},
            {"name": "signing", "description": "authsvc as a token issuer (CONTRACT §5)"},
            {"name": "admin", "description": "server admins only"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _error_responses(),
            "headers": _headers(),
            "parameters": _parameters(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "A JWT in an issuer's `header_name` (`Authorization: Bearer ...` "
                        "in most setups; the `Bearer ` prefix is optional)."
                    ),
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "authsvc_session",
                    "description": "The session cookie (`[auth] login_cookie_name`).",
                },
                "authToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "auth_token",
                    "description": (
                        "A JWT in the query, read by issuers with `url_login = true` when "
                        "their header is empty (not by `POST /api/login/jwt`)."
                    ),
                },
            },
        },
    }


# --------------------------------------------------------------------------- helpers
def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


_REQUEST_ID = {"X-Request-Id": _ref("headers", "X-Request-Id")}
_NO_STORE = {"Cache-Control": _ref("headers", "Cache-Control-No-Store")}
AUTHENTICATED: list[Json] = [{"bearer": []}, {"session": []}, {"authToken": []}]


def _json(schema: Json, description: str, **headers: Json) -> Json:
    return {
        "description": description,
        "headers": {**_REQUEST_ID, **headers},
        "content": {JSON: {"schema": schema}},
    }


def _errors(*statuses: int) -> Json:
    return {str(status): _ref("responses", f"Error{status}") for status in statuses}


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: Json,
    *,
    description: str = "",
    security: list[Json] | None = None,
    parameters: list[Json] | None = None,
    body: Json | None = None,
) -> Json:
    op: Json = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["security"] = security if security is not None else []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["responses"] = responses
    return op


# Who a JWT or session request can be refused as, on every authenticated endpoint.
_AUTH_ERRORS = (401, 403, 409, 503)


# --------------------------------------------------------------------------- paths
def _paths() -> Json:
    verify = _op(
        "verify",
        "Forward-auth: who makes this request, and may they?",
        "forward-auth",
        {
            "200": _json(
                _ref("schemas", "VerifiedUser"),
                "The caller, as the user JSON plus `subject`, and in `X-Auth-*` headers.",
                **{name: _ref("headers", name) for name in _VERIFY_HEADERS},
                **_NO_STORE,
            ),
            **_errors(400, *_AUTH_ERRORS),
        },
        description=(
            "A JWT resolves its user exactly as a login does (lookup-only, auto sign-up, "
            "disabled) but creates no session; a session cookie works too (a JWT wins when "
            "both are sent). Gates: `?role=` (minimum role), `?group=` (any of) and "
            "`?scope=` answer 403 `auth.forbidden`; `?issuer=` lets only those issuers "
            "authenticate (else 401 `jwt.invalid`). Each forwarded claim of the issuer's "
            "`forward_claims` comes as `X-Auth-Claim-<Name>`."
        ),
        security=AUTHENTICATED,
        parameters=[_ref("parameters", p) for p in ("role", "group", "issuer", "scope")],
    )
    verify_path = {
        **verify,
        "operationId": "verifyPath",
        "summary": "Forward-auth with the original path appended (Envoy ext_authz)",
        "description": "Answers exactly as `GET /api/auth/verify`; the path is ignored.",
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "description": "Any path (Envoy appends the original request's path).",
                "schema": {"type": "string", "minLength": 1},
            },
            *verify["parameters"],
        ],
    }
    user_id = {
        "name": "user_id",
        "in": "path",
        "required": True,
        "description": "The user's id (`id` of the user JSON).",
        "schema": {"type": "integer", "minimum": 0},
    }
    admin_errors = _errors(*_AUTH_ERRORS)
    return {
        "/api/health": {
            "get": _op(
                "health",
                "Is the database reachable, are verification keys usable?",
                "service",
                {
                    "200": _json(
                        _ref("schemas", "Health"), "Healthy (keys may be `stale`).", **_NO_STORE
                    ),
                    "503": _json(
                        _ref("schemas", "Health"),
                        "The database is down, or no issuer has a usable key (`failing`).",
                        **_NO_STORE,
                    ),
                },
                description=(
                    "`keys`: `ok`, `stale` (some issuer serves last-good keys), `degraded` "
                    "(some issuer has no usable key; still 200), `failing` (none has: 503) "
                    "or `disabled` (no issuer enabled). A key file that changed and fails "
                    "the key policy is listed under `problems` (still 200)."
                ),
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "openapi",
                "This document",
                "service",
                {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics of the whole service (every worker)",
                "service",
                {
                    "200": {
                        "description": "Prometheus text format.",
                        "headers": _REQUEST_ID,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(404),
                },
                description="404 when `[metrics] enabled = false`.",
            )
        },
        "/api/login/jwt": {
            "post": _op(
                "loginJwt",
                "Start a session with a JWT",
                "sessions",
                {
                    "200": _json(
                        _ref("schemas", "User"),
                        "The user; the session cookie is set.",
                        **{"Set-Cookie": _ref("headers", "Set-Cookie-Session")},
                        **_NO_STORE,
                    ),
                    **_errors(*_AUTH_ERRORS),
                },
                description=(
                    "The JWT goes in an issuer's `header_name`. 401 `auth.unauthorized` "
                    "when no issuer is enabled."
                ),
                security=[{"bearer": []}],
            )
        },
        "/login": {
            "get": _op(
                "loginUrl",
                "Start a session with a JWT in the URL, then redirect",
                "sessions",
                {
                    "302": {
                        "description": (
                            "Redirect to `redirect_to` (a local path, else `/`), the session "
                            "cookie set. The token never appears in the redirect."
                        ),
                        "headers": {
                            **_REQUEST_ID,
                            "Location": _ref("headers", "Location"),
                            "Set-Cookie": _ref("headers", "Set-Cookie-Session"),
                            "Referrer-Policy": {
                                "required": True,
                                "schema": {"const": "no-referrer"},
                            },
                            **_NO_STORE,
                        },
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_errors(*_AUTH_ERRORS),
                },
                description=(
                    "Needs an issuer with `url_login = true` (else 401 "
                    "`auth.unauthorized`); such an issuer reads `?auth_token=` and its "
                    "`header_name`."
                ),
                parameters=[
                    {
                        "name": "auth_token",
                        "in": "query",
                        "description": "The JWT.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "redirect_to",
                        "in": "query",
                        "description": (
                            "Where to go: a local path (`/app?x=1`). Anything with a scheme, "
                            "a host, `//`, a backslash, whitespace or control characters "
                            "redirects to `/`."
                        ),
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/api/user": {
            "get": _op(
                "currentUser",
                "The caller",
                "sessions",
                {
                    "200": _json(_ref("schemas", "User"), "The caller's user JSON."),
                    **_errors(*_AUTH_ERRORS),
                },
                security=AUTHENTICATED,
            )
        },
        "/api/logout": {
            "post": _op(
                "logout",
                "End the session (server-side) and clear the cookie",
                "sessions",
                {
                    "200": _json(
                        _ref("schemas", "Message"),
                        "Logged out (also when the session had already ended).",
                        **{"Set-Cookie": _ref("headers", "Set-Cookie-Clear")},
                    ),
                    **_errors(401, 403, 503),
                },
                description=(
                    "401 `auth.unauthorized` without a session cookie; 403 `auth.forbidden` "
                    "from another origin."
                ),
                security=[{"session": []}],
            )
        },
        "/logout": {
            "get": _op(
                "logoutPage",
                "End the session, clear the cookie, redirect to `signout_redirect_url`",
                "sessions",
                {
                    "302": {
                        "description": "To `[auth] signout_redirect_url` (else `/`).",
                        "headers": {
                            **_REQUEST_ID,
                            "Location": _ref("headers", "Location"),
                            "Set-Cookie": _ref("headers", "Set-Cookie-Clear"),
                        },
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_errors(403, 503),
                },
                description=(
                    "A cross-site request (`Sec-Fetch-Site: cross-site`, or an "
                    "`Origin`/`Referer` of another origin) is a 403 and the session lives on."
                ),
                security=[{"session": []}, {}],
            )
        },
        "/api/auth/verify": {"get": verify},
        "/api/auth/verify/{path}": {"get": verify_path},
        "/api/auth/assertion/{name}": {
            "post": _op(
                "assertion",
                "An outbound assertion `[assertion.NAME]` for the caller",
                "signing",
                {
                    "200": _json(_ref("schemas", "Assertion"), "A fresh signed JWT.", **_NO_STORE),
                    **_errors(401, 403, 404, 409, 503),
                },
                description=(
                    "403 `auth.forbidden` when the caller is below the section's `min_role` "
                    "or in none of its `groups`; 404 `api.not_found` for an unknown NAME. "
                    "Cookie-authenticated calls follow the CSRF rule (same origin only)."
                ),
                security=AUTHENTICATED,
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "NAME of an `[assertion.NAME]` section.",
                        "schema": {"type": "string", "pattern": _ISSUER_NAME},
                    }
                ],
            )
        },
        "/.well-known/jwks.json": {
            "get": _op(
                "jwks",
                "The public keys authsvc signs with (current and previous)",
                "signing",
                {
                    "200": _json(
                        _ref("schemas", "Jwks"),
                        "The key set.",
                        **{"Cache-Control": _ref("headers", "Cache-Control-Public")},
                    ),
                    **_errors(404),
                },
                description="404 when signing is off (`[signing] key_file` empty).",
            )
        },
        "/.well-known/openid-configuration": {
            "get": _op(
                "openidConfiguration",
                "Discovery: authsvc's `issuer` and `jwks_uri`",
                "signing",
                {
                    "200": _json(
                        _ref("schemas", "OpenIdConfiguration"),
                        "Discovery.",
                        **{"Cache-Control": _ref("headers", "Cache-Control-Public")},
                    ),
                    **_errors(404),
                },
                description="404 when signing is off (`[signing] key_file` empty).",
            )
        },
        "/api/admin/users": {
            "get": _op(
                "listUsers",
                "Search users",
                "admin",
                {
                    "200": _json(_ref("schemas", "UserPage"), "One page of users."),
                    **_errors(400, *_AUTH_ERRORS),
                },
                security=AUTHENTICATED,
                parameters=[_ref("parameters", p) for p in ("query", "page", "perpage")],
            ),
            "post": _op(
                "createUser",
                "Create a user ahead of its first login",
                "admin",
                {
                    "200": _json(_ref("schemas", "AdminUser"), "The new user."),
                    **_errors(400, *_AUTH_ERRORS),
                },
                description=(
                    "A user with a link (`links`) signs in under `lookup_only`. 409 "
                    "`user.sync.conflict` when the login, email or a link is taken."
                ),
                security=AUTHENTICATED,
                body=_ref("schemas", "NewUser"),
            ),
        },
        "/api/admin/users/{user_id}": {
            "get": _op(
                "getUser",
                "One user",
                "admin",
                {
                    "200": _json(_ref("schemas", "AdminUser"), "The user."),
                    **_errors(404),
                    **admin_errors,
                },
                security=AUTHENTICATED,
                parameters=[user_id],
            ),
            "patch": _op(
                "patchUser",
                "Change a user (partial)",
                "admin",
                {
                    "200": _json(_ref("schemas", "AdminUser"), "The changed user."),
                    **_errors(400, 404),
                    **admin_errors,
                },
                security=AUTHENTICATED,
                parameters=[user_id],
                body=_ref("schemas", "UserPatch"),
            ),
            "delete": _op(
                "deleteUser",
                "Delete a user, its links and its sessions",
                "admin",
                {
                    "200": _json(_ref("schemas", "Deleted"), "Deleted."),
                    **_errors(404),
                    **admin_errors,
                },
                security=AUTHENTICATED,
                parameters=[user_id],
            ),
        },
        "/api/admin/users/{user_id}/sessions": {
            "delete": _op(
                "revokeSessions",
                "Revoke every session of a user",
                "admin",
                {
                    "200": _json(_ref("schemas", "SessionsRevoked"), "Revoked."),
                    **_errors(404),
                    **admin_errors,
                },
                security=AUTHENTICATED,
                parameters=[user_id],
            )
        },
        "/api/admin/keys": {
            "get": _op(
                "keys",
                "Every issuer's key source: kind, keys, fetches, errors",
                "admin",
                {
                    "200": _json(_ref("schemas", "KeySources"), "The key sources."),
                    **admin_errors,
                },
                security=AUTHENTICATED,
            )
        },
    }


# --------------------------------------------------------------------------- components
_VERIFY_HEADERS = (
    "X-Auth-User",
    "X-Auth-Email",
    "X-Auth-Name",
    "X-Auth-Role",
    "X-Auth-Groups",
    "X-Auth-Groups-Truncated",
    "X-Auth-Subject",
    "X-Auth-Issuer",
    "X-Auth-Scope",
    "X-Auth-Assertion",
)

_ISSUER_NAME = "^[a-z0-9][a-z0-9_-]{0,31}$"


def _headers() -> Json:
    def header(description: str, schema: Json | None = None, *, required: bool = True) -> Json:
        return {
            "description": description,
            "required": required,
            "schema": schema or {"type": "string"},
        }

    return {
        "X-Request-Id": header(
            "The request's id: the caller's `X-Request-Id` when sane (1-64 of `A-Za-z0-9-`), "
            "else a new one. Logs and audit lines carry it.",
            {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
        ),
        "Cache-Control-No-Store": header("Never cached.", {"const": "no-store"}),
        "Cache-Control-Public": header(
            "Cacheable for 5 minutes: a retired key stays published at least that long.",
            {"const": "public, max-age=300"},
        ),
        "Location": header("Where to go.", {"type": "string", "minLength": 1}),
        "Set-Cookie-Session": header(
            "The session cookie: `authsvc_session=...; HttpOnly; Path=/; SameSite=...` "
            "(`Secure` with `cookie_secure` or an https `root_url`)."
        ),
        "Set-Cookie-Clear": header("The session cookie, cleared (`Max-Age=0`)."),
        "WWW-Authenticate": header(
            'RFC 6750: `Bearer error="invalid_token", error_description="..."` when a token '
            "was presented, `Bearer` alone when none was.",
            {
                "type": "string",
                "pattern": '^Bearer( error="invalid_token", error_description=".*")?$',
            },
        ),
        "X-Auth-User": header("The login."),
        "X-Auth-Email": header("The email (may be empty)."),
        "X-Auth-Name": header("The display name (may be empty)."),
        "X-Auth-Role": header("The role.", {"enum": list(ROLES)}),
        "X-Auth-Groups": header(
            "The groups, comma-joined; `%` and `,` inside a name are percent-encoded. Cut "
            "at a group boundary when the X-Auth-* headers would pass 3 KiB."
        ),
        "X-Auth-Groups-Truncated": header(
            "`true` when `X-Auth-Groups` was cut.", {"const": "true"}, required=False
        ),
        "X-Auth-Subject": header(
            "The token's `sub` (for a session, the `sub` of the token that created it)."
        ),
        "X-Auth-Issuer": header(
            "NAME of the issuer that authenticated (`jwt` for `[auth.jwt]`).",
            {"type": "string", "pattern": _ISSUER_NAME},
        ),
        "X-Auth-Scope": header(
            "The token's scope, comma-joined, when the issuer has `scope_claim` and the "
            "token is scoped.",
            required=False,
        ),
        "X-Auth-Assertion": header(
            "With `[upstream_assertion] enabled`: a JWT signed with `[signing]` naming the "
            "caller (the header name is `[upstream_assertion] header_name`).",
            required=False,
        ),
    }


def _parameters() -> Json:
    def many(name: str, description: str) -> Json:
        return {
            "name": name,
            "in": "query",
            "description": description,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
        }

    return {
        "role": {
            "name": "role",
            "in": "query",
            "description": "Minimum role (403 below it; 400 when it names no role).",
            "schema": {"enum": list(ROLES)},
        },
        "group": many("group", "Groups, any of which the caller must be in (else 403)."),
        "issuer": many("issuer", "The only issuers that may authenticate (else 401)."),
        "scope": many("scope", "A scoped token must include one of these (else 403)."),
        "query": {
            "name": "query",
            "in": "query",
            "description": "Text in the login, email or name (case-insensitive); printable.",
            "schema": {"type": "string", "maxLength": 255},
        },
        "page": {
            "name": "page",
            "in": "query",
            "description": "Page number, from 1.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
        },
        "perpage": {
            "name": "perpage",
            "in": "query",
            "description": "Users per page.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
    }


def _error_responses() -> Json:
    by_status: dict[int, list[str]] = {}
    for message_id, status in message_ids().items():
        by_status.setdefault(status, []).append(message_id)
    responses = {}
    for status, ids in sorted(by_status.items()):
        if status >= 500 and status != 503:
            continue  # a bug, listed in the enum but on no operation
        headers: Json = dict(_REQUEST_ID)
        if status == 401:
            headers["WWW-Authenticate"] = _ref("headers", "WWW-Authenticate")
        responses[f"Error{status}"] = {
            "description": "; ".join(f"`{i}`: {when(i)}" for i in ids),
            "headers": headers,
            "content": {
                JSON: {
                    "schema": {
                        "allOf": [
                            _ref("schemas", "Error"),
                            {
                                "properties": {
                                    "messageId": {"enum": ids},
                                    "statusCode": {"const": status},
                                }
                            },
                        ]
                    }
                }
            },
        }
    return responses


def _schemas() -> Json:
    string = {"type": "string"}
    user = {
        "type": "object",
        "required": [
            "id",
            "login",
            "email",
            "name",
            "role",
            "isServerAdmin",
            "groups",
            "authModule",
        ],
        "properties": {
            "id": {"type": "integer"},
            "login": string,
            "email": {"type": "string", "description": "Empty when unknown."},
            "name": string,
            "role": {"enum": list(ROLES)},
            "isServerAdmin": {"type": "boolean"},
            "groups": {"type": "array", "items": string},
            "authModule": {
                "type": "string",
                "description": "`authjwt`, or `authjwt.NAME` for the issuer NAME "
                "(empty for a user not yet signed in).",
                "pattern": r"^(authjwt(\.[a-z0-9][a-z0-9_-]{0,31})?)?$",
            },
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["message", "messageId", "statusCode", "reason"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string", "description": "For people."},
                "messageId": {"enum": list(message_ids())},
                "statusCode": {"type": "integer"},
                "reason": {
                    "type": "string",
                    "description": "Exactly what failed (which claim, which kid, by how long).",
                },
            },
        },
        "User": user,
        "VerifiedUser": {
            "allOf": [
                _ref("schemas", "User"),
                {
                    "required": ["subject"],
                    "properties": {
                        "subject": {"type": "string", "description": "The token's `sub`."}
                    },
                },
            ]
        },
        "AdminUser": {
            "allOf": [
                _ref("schemas", "User"),
                {"required": ["disabled"], "properties": {"disabled": {"type": "boolean"}}},
            ]
        },
        "UserPage": {
            "type": "object",
            "required": ["totalCount", "page", "perPage", "users"],
            "properties": {
                "totalCount": {"type": "integer", "minimum": 0},
                "page": {"type": "integer", "minimum": 1},
                "perPage": {"type": "integer", "minimum": 1},
                "users": {"type": "array", "items": _ref("schemas", "AdminUser")},
            },
        },
        "NewUser": {
            "type": "object",
            "required": ["login"],
            "additionalProperties": False,
            "description": (
                "Login, email and subjects must be clean identifiers: no control or format "
                "characters, no leading or trailing whitespace, at most 255 characters."
            ),
            "properties": {
                "login": {"type": "string", "minLength": 1, "maxLength": 255},
                "email": {"type": "string", "maxLength": 255},
                "name": string,
                "role": {
                    "enum": list(ROLES),
                    "description": "Default `[users] auto_assign_role`.",
                },
                "isServerAdmin": {"type": "boolean", "default": False},
                "links": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["issuer", "subject"],
                        "additionalProperties": False,
                        "properties": {
                            "issuer": {"type": "string", "pattern": _ISSUER_NAME},
                            "subject": {"type": "string", "minLength": 1, "maxLength": 255},
                        },
                    },
                },
            },
        },
        "UserPatch": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "disabled": {"type": "boolean"},
                "role": {"enum": list(ROLES)},
                "isServerAdmin": {"type": "boolean"},
            },
        },
        "Message": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": string},
        },
        "Deleted": {
            "type": "object",
            "required": ["message", "id"],
            "properties": {"message": string, "id": {"type": "integer"}},
        },
        "SessionsRevoked": {
            "type": "object",
            "required": ["message", "count"],
            "properties": {"message": string, "count": {"type": "integer", "minimum": 0}},
        },
        "Health": {
            "type": "object",
            "required": ["database", "keys", "version"],
            "properties": {
                "database": {"enum": ["ok", "unavailable"]},
                "keys": {"enum": ["ok", "stale", "degraded", "failing", "disabled"]},
                "version": string,
                "issuers": {
                    "type": "object",
                    "description": "Each issuer's own state.",
                    "additionalProperties": {"enum": ["ok", "stale", "failing"]},
                },
                "keysError": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": string,
                    "description": "`NAME: reason` of key files that changed and were refused.",
                },
            },
        },
        "KeySources": {
            "type": "object",
            "required": ["enabled", "sources"],
            "properties": {
                "enabled": {"type": "boolean"},
                "sources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "issuer"],
                        "description": (
                            "`kind`, `issuer`, `health`, `keys` (kid, kty, algorithms); for "
                            "`jwk_set_url`: `urls`, `last_fetch`, `age`, `ttl`, `last_error`."
                        ),
                        "properties": {
                            "kind": string,
                            "issuer": {"type": "string", "pattern": _ISSUER_NAME},
                        },
                    },
                },
            },
        },
        "Assertion": {
            "type": "object",
            "required": ["assertion", "token_type", "expires_in"],
            "properties": {
                "assertion": {"type": "string", "description": "The signed JWT."},
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "minimum": 0},
            },
        },
        "Jwks": {
            "type": "object",
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kty", "kid"],
                        "properties": {"kty": string, "kid": string},
                    },
                }
            },
        },
        "OpenIdConfiguration": {
            "type": "object",
            "required": ["issuer", "jwks_uri"],
            "properties": {"issuer": string, "jwks_uri": string},
        },
    }
