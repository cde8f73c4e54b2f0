"""The admin API (CONTRACT §3): users, their sessions, and the key sources. Server admins only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import IntegrityError

from authsvc.errors import BadRequest, Forbidden, NotFound, UserConflict
from authsvc.models import User
from authsvc.service import Service, service
from authsvc.users import (
    NewUser,
    admin_json,
    create_user,
    find_user,
    search_users,
    update_user,
)
from authsvc.views.login import current_caller

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


def _require_server_admin() -> Service:
    """The service, once the caller is a server admin (``g.actor`` names them for audit)."""
    caller = current_caller()
    if not caller.user.is_server_admin:
        raise Forbidden(
            f"user {caller.user.login!r} is not a server admin (an admin grants it with "
            f"'authsvc users set-server-admin {caller.user.login} true', or a token's role "
            "ServerAdmin does under allow_assign_server_admin = true)"
        )
    # For the audit log: who acts, through which issuer, with which token (its fingerprint).
    g.actor = caller.user.login
    g.actor_issuer = caller.issuer
    g.actor_token = caller.jwt.token.fingerprint if caller.jwt is not None else ""
    return service()


def _audit(event: str, user: str, changes: dict[str, Any]) -> None:
    service().audit(
        event,
        user=user,
        issuer=g.actor_issuer,
        token=g.actor_token,
        actor=g.actor,
        changes=changes,
    )


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"?{name}= must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"?{name}= must be from {lo} to {hi}")
    return value


def _load(svc: Service, db: Any, user_id: int) -> User:
    user = find_user(db, user_id) if user_id < 2**63 else None  # SQLite: 64-bit ids at most
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


@bp.get("/users")
def list_users() -> Response:
    svc = _require_server_admin()
    page = _int_arg("page", 1, 1, 1_000_000)
    per_page = _int_arg("perpage", 100, 1, 1000)
    query = request.args.get("query", "")
    if len(query) > 255 or not query.isprintable():
        raise BadRequest("?query= must be at most 255 printable characters")
    with svc.db() as db:
        total, users = search_users(db, query, page, per_page)
        body = [admin_json(u) for u in users]
    return jsonify({"totalCount": total, "page": page, "perPage": per_page, "users": body})


_NEW_USER_FIELDS = {"login", "email", "name", "role", "isServerAdmin", "links"}


@bp.post("/users")
def create() -> Response:
    """A user made ahead of its first login (StarRocks' CREATE USER ... IDENTIFIED WITH jwt)."""
    svc = _require_server_admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object body")
    unknown = set(body) - _NEW_USER_FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("login", "email", "name", "role"):
        if name in body and not isinstance(body[name], str):
            raise BadRequest(f"{name} must be a string")
    if not body.get("login"):
        raise BadRequest("login is required")
    if "isServerAdmin" in body and not isinstance(body["isServerAdmin"], bool):
        raise BadRequest("isServerAdmin must be true or false")
    links = body.get("links", [])
    if not isinstance(links, list) or not all(
        isinstance(link, dict)
        and set(link) == {"issuer", "subject"}
        and all(isinstance(v, str) for v in link.values())
        for link in links
    ):
        raise BadRequest('links must be a list of {"issuer": "...", "subject": "..."}')
    new = NewUser(
        login=body["login"],
        email=body.get("email", ""),
        name=body.get("name", ""),
        role=body.get("role", svc.settings.users.auto_assign_role),
        is_server_admin=body.get("isServerAdmin", False),
        links=tuple((link["issuer"], link["subject"]) for link in links),
    )
    try:
        with svc.db.begin() as db:
            result = admin_json(create_user(db, new, clock=svc.clock))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    except IntegrityError:  # a concurrent create won: the same answer as a read would give
        raise UserConflict("the login, email or a link belongs to another account") from None
    _audit("admin_change", new.login, {"created": body})
    return jsonify(result)


@bp.delete("/users/<int:user_id>")
def delete(user_id: int) -> Response:
    """The user, its links and its sessions."""
    svc = _require_server_admin()
    with svc.db() as db:
        login = _load(svc, db, user_id).login
    svc.sessions.revoke_user(user_id)
    with svc.db.begin() as db:
        db.delete(_load(svc, db, user_id))
    _audit("admin_change", login, {"deleted": True})
    return jsonify({"message": "User deleted", "id": user_id})


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Response:
    svc = _require_server_admin()
    with svc.db() as db:
        return jsonify(admin_json(_load(svc, db, user_id)))


@bp.patch("/users/<int:user_id>")
def patch_user(user_id: int) -> Response:
    svc = _require_server_admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object body")
    unknown = set(body) - {"disabled", "role", "isServerAdmin"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("disabled", "isServerAdmin"):
        if name in body and not isinstance(body[name], bool):
            raise BadRequest(f"{name} must be true or false")
    if "role" in body and not isinstance(body["role"], str):
        raise BadRequest("role must be a string")
    with svc.db.begin() as db:
        user = _load(svc, db, user_id)
        try:
            update_user(
                db,
                user,
                clock=svc.clock,
                disabled=body.get("disabled"),
                role=body.get("role"),
                is_server_admin=body.get("isServerAdmin"),
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        result = admin_json(user)
    _audit("admin_change", result["login"], body)
    return jsonify(result)


@bp.delete("/users/<int:user_id>/sessions")
def revoke_sessions(user_id: int) -> Response:
    svc = _require_server_admin()
    with svc.db() as db:
        login = _load(svc, db, user_id).login
    count = svc.sessions.revoke_user(user_id)
    _audit("session_revoked", login, {"count": count})
    return jsonify({"message": "Sessions revoked", "count": count})


@bp.get("/keys")
def keys() -> Response:
    svc = _require_server_admin()
    sources = [issuer.describe() for issuer in svc.issuers]
    signing = svc.signing.describe() if svc.signing is not None else []
    return jsonify({"enabled": bool(sources), "sources": sources, "signing": signing})
