"""``authsvc token inspect``: the JWT doctor.

Shows what a token says (header and claims, decoded without trusting them),
which issuer it routes to and why, which of that issuer's keys matches it,
and the verdict the service would give, with the same reason a client would
get. It reads no database: the identity shown is what the token maps to,
before any user lookup.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from authsvc.config import Settings
from authsvc.errors import AuthsvcError
from authsvc.issuers import Issuer, Issuers, route_explained
from authsvc.keys.base import KeyIds
from authsvc.remote_cache import make_remote_cache
from authsvc.verifier import fingerprint


def _peek(segment: str) -> Any:
    """Decode a segment for display only; nothing here is trusted."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except ValueError:
        return "(not base64url JSON)"


def _when(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
        except (OverflowError, OSError, ValueError):
            return ""
        return f"  ({stamp})"
    return ""


def _kid(kid: object) -> str:
    return repr(kid) if isinstance(kid, str) else "(none)"


def inspect_token(settings: Settings, token: str, issuer: str | None = None) -> tuple[str, bool]:
    """The doctor's report and whether the token would be accepted.

    ``issuer`` forces the issuer instead of routing by the token's ``iss``.
    """
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    lines = [f"fingerprint: {fingerprint(token)}"]
    parts = token.replace("=", "").split(".")
    header = _peek(parts[0]) if parts and parts[0] else "(empty)"
    claims = _peek(parts[1]) if len(parts) > 1 else "(missing)"
    lines += ["header:", json.dumps(header, indent=2, sort_keys=True)]
    lines += ["claims:", json.dumps(claims, indent=2, sort_keys=True)]
    if isinstance(claims, dict):
        for name in ("iat", "nbf", "exp"):
            if name in claims:
                lines.append(f"  {name} = {claims[name]}{_when(claims[name])}")
    enabled = [name for name, jwt in settings.issuers.items() if jwt.enabled]
    if not enabled:
        lines.append("verdict: cannot verify: no issuer is enabled ([auth.jwt] enabled = false)")
        return "\n".join(lines), False
    if issuer is not None and issuer not in enabled:
        lines.append(f"verdict: cannot verify: no enabled issuer {issuer!r} ({', '.join(enabled)})")
        return "\n".join(lines), False
    issuers = Issuers.build(
        settings, remote_cache=make_remote_cache(settings.remote_cache), clock=time.time
    )
    try:
        return _diagnose(issuers, token, header, issuer, lines)
    finally:
        issuers.close()


def _diagnose(
    issuers: Issuers, token: str, header: Any, forced: str | None, lines: list[str]
) -> tuple[str, bool]:
    try:
        if forced is not None:
            chosen: Issuer | None = issuers.get(forced)
            assert chosen is not None
            lines.append(f"issuer: {chosen.name} (forced with --issuer)")
        else:
            chosen, why = route_explained(token, list(issuers))
            lines.append(f"issuer: {chosen.name} ({why})")
        kid = header.get("kid") if isinstance(header, dict) else None
        key = None
        try:
            key = chosen.keys.get_key(kid if isinstance(kid, str) else None)
        except AuthsvcError as exc:
            lines.append(f"key: unavailable: {exc.reason}")
        kind = chosen.settings.key_provider
        if key is not None:
            lines.append(
                f"key: {kind} kid={_kid(key.kid)} type={key.kind} "
                f"algorithms={','.join(sorted(key.algorithms))}"
            )
        elif isinstance(chosen.keys, KeyIds):
            known = ", ".join(_kid(k) for k in chosen.keys.kids()) or "none"
            lines.append(f"key: none of the {kind} keys has kid {_kid(kid)} (keys: {known})")
        verified = chosen.verifier.verify(token)
        identity = chosen.mapper.identity(verified.claims)
    except AuthsvcError as exc:
        lines.append(f"verdict: REJECTED {exc.status} {exc.message_id}: {exc.reason}")
        return "\n".join(lines), False
    scope = f" scope={list(identity.scope)}" if identity.scope is not None else ""
    lines.append(
        f"identity: login={identity.login!r} email={identity.email!r} role={identity.role} "
        f"groups={list(identity.groups)}{scope}"
    )
    lines.append("verdict: VALID")
    return "\n".join(lines), True
