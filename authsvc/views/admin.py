"""The admin API (CONTRACT §3): users, their sessions, and the key sources. Server admins only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from authsvc.errors import BadRequest, Forbidden, NotFound
from authsvc.models import User
from authsvc.service import Service, service
from authsvc.users import admin_json, find_user, search_users, update_user
from authsvc.views.login import current_caller

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


def _require_server_admin() -> Service:
    caller = current_caller()
    if not caller.user.is_server_admin:
        raise Forbidden(f"user {caller.user.login!r} is not a server admin")
    return service()


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
    user = find_user(db, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


@bp.get("/users")
def list_users() -> Response:
    svc = _require_server_admin()
    page = _int_arg("page", 1, 1, 1_000_000)
    per_page = _int_arg("perpage", 100, 1, 1000)
    with svc.db() as db:
        total, users = search_users(db, request.args.get("query", ""), page, per_page)
        body = [admin_json(u) for u in users]
    return jsonify({"totalCount": total, "page": page, "perPage": per_page, "users": body})


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
    return jsonify(result)


@bp.delete("/users/<int:user_id>/sessions")
def revoke_sessions(user_id: int) -> Response:
    svc = _require_server_admin()
    with svc.db() as db:
        _load(svc, db, user_id)
    count = svc.sessions.store.revoke_user(user_id)
    return jsonify({"message": "Sessions revoked", "count": count})


@bp.get("/keys")
def keys() -> Response:
    svc = _require_server_admin()
    sources = [issuer.describe() for issuer in svc.issuers]
    return jsonify({"enabled": bool(sources), "sources": sources})
