"""``[log] audit = true``: one JSON line per sign-up, login, logout, revocation and admin change.

Lines go to the ``authsvc.audit`` logger as JSON whatever ``[log] format``
says, so a log shipper can pick them out by ``"audit": true``. A token is
named by its fingerprint only, never by its text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from authsvc.logs import request_id

EVENTS = ("signup", "login", "logout", "session_revoked", "admin_change")

_log = logging.getLogger("authsvc.audit")


class Audit:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(
        self,
        event: str,
        *,
        user: str,
        issuer: str = "",
        token: str = "",
        actor: str = "",
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """Record ``event`` for the login ``user``; ``token`` is a fingerprint."""
        if not self.enabled:
            return
        assert event in EVENTS, event
        line: dict[str, Any] = {
            "audit": True,
            "event": event,
            "user": user,
            "issuer": issuer,
            "request_id": request_id.get(),
            "time": _rfc3339(time.time()),
        }
        if token:
            line["token"] = token
        if event == "admin_change" or actor:
            line["actor"] = actor
        if event == "admin_change" or changes:
            line["changes"] = dict(changes or {})
        _log.info(json.dumps(line, ensure_ascii=False, default=str))


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
