"""``authsvc token inspect``: the JWT doctor.

Shows what a token says (header and claims, decoded without trusting them),
which configured key matches it, and the verdict the service would give,
with the same reason a client would get. It reads no database.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from authsvc.config import Settings
from authsvc.errors import AuthsvcError
from authsvc.identity import ClaimsMapper
from authsvc.keys.base import KeyProvider
from authsvc.plugins import PluginContext, build_plugin
from authsvc.remote_cache import make_remote_cache
from authsvc.verifier import Verifier, fingerprint


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


def inspect_token(settings: Settings, token: str) -> tuple[str, bool]:
    """The doctor's report and whether the token would be accepted."""
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
    if not settings.jwt.enabled:
        lines.append("verdict: cannot verify: [auth.jwt] enabled = false")
        return "\n".join(lines), False
    context = PluginContext(settings, remote_cache=make_remote_cache(settings.remote_cache))
    keys: KeyProvider = build_plugin(
        "authsvc.key_providers", settings.jwt.key_provider, context, KeyProvider
    )
    kid = header.get("kid") if isinstance(header, dict) else None
    try:
        key = keys.get_key(kid if isinstance(kid, str) else None)
    except AuthsvcError:
        key = None
    if key is not None:
        lines.append(
            f"key: {settings.jwt.key_provider} kid={key.kid!r} type={key.kind} "
            f"algorithms={','.join(sorted(key.algorithms))}"
        )
    else:
        lines.append(f"key: none of the {settings.jwt.key_provider} keys has kid {kid!r}")
    verifier = Verifier(settings.jwt, keys)
    try:
        verified = verifier.verify(token)
        identity = ClaimsMapper(settings.jwt, settings.users.auto_assign_role).identity(
            verified.claims
        )
    except AuthsvcError as exc:
        lines.append(f"verdict: REJECTED {exc.status} {exc.message_id}: {exc.reason}")
        return "\n".join(lines), False
    lines.append(
        f"identity: login={identity.login!r} email={identity.email!r} role={identity.role} "
        f"groups={list(identity.groups)}"
    )
    lines.append("verdict: VALID")
    return "\n".join(lines), True
