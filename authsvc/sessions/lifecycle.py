"""What a session means: idle and absolute limits, rotation with a grace period.

Stores only keep records; every rule about time lives here, driven by one
injectable clock so tests move time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from authsvc.config import AuthSettings
from authsvc.durations import describe_duration
from authsvc.errors import SessionInvalid
from authsvc.identifiers import display_name
from authsvc.sessions.base import NewSession, SessionRecord, SessionStore

# How long the token replaced by a rotation keeps working, so that requests
# already in flight with it (parallel XHRs, a second tab) do not fail.
ROTATION_GRACE = 60.0
# Activity is written at most this often; the idle limit is kept to within it.
TOUCH_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Resumed:
    record: SessionRecord
    new_token: str | None
    """Set when this request rotated the session: the response carries a new cookie."""


class SessionLifecycle:
    def __init__(
        self,
        store: SessionStore,
        settings: AuthSettings,
        clock: Callable[[], float],
        count: Callable[[str, int], None] = lambda event, n: None,
    ) -> None:
        """``count(event, n)``: authsvc_sessions_total (created, rotated, revoked, expired)."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.count = count

    def start(
        self, new: NewSession, *, end_by: float | None = None, tx: Any = None
    ) -> tuple[str, SessionRecord]:
        """A new session for ``new``, ending at the maximum lifetime or ``end_by`` if sooner
        (the token's exp, under its issuer's ``session_lifetime_from_token``)."""
        now = self.clock()
        # A client's User-Agent may hold anything (NUL, lone surrogates): stored clean.
        new = replace(new, user_agent=display_name(new.user_agent), client_ip=new.client_ip[:64])
        end = now + (self.settings.login_maximum_lifetime or 30 * 86400)
        if end_by is not None:
            end = min(end, end_by)
        started = self.store.create(new, now=now, expires_at=end, tx=tx)
        self.count("created", 1)
        return started

    def resume(
        self,
        token: str,
        admit: Callable[[SessionRecord], object] | None = None,
        found: SessionRecord | None = None,
    ) -> Resumed:
        """The live session for a cookie's token, rotating it when due; else SessionInvalid.

        ``admit`` runs before any write (rotation, touch) and may refuse by raising:
        a refused request must not rotate a session whose new token it cannot deliver.
        ``found`` is the record when the caller has read it already.
        """
        record = found or self.store.lookup(token)
        if record is None:
            raise SessionInvalid("session not found: unknown, logged out or revoked")
        now = self.clock()
        if now >= record.expires_at:
            self.count("expired", 1)
            raise SessionInvalid(
                f"session ended {describe_duration(now - record.expires_at)} ago "
                "(maximum lifetime or token expiry)"
            )
        idle = self.settings.login_maximum_inactive_lifetime
        if idle and now - record.seen_at >= idle:
            self.count("expired", 1)
            raise SessionInvalid(
                f"session idle for {describe_duration(now - record.seen_at)} "
                f"(limit {describe_duration(idle)})"
            )
        if record.matched_previous and (
            record.prev_valid_until is None or now > record.prev_valid_until
        ):
            raise SessionInvalid("session token was replaced by rotation")
        if admit is not None:
            admit(record)
        if record.matched_previous:
            return Resumed(record, None)
        interval = self.settings.token_rotation_interval
        if interval and now - record.rotated_at >= interval:
            new = self.store.rotate(record, token, now, ROTATION_GRACE)
            if new is not None:
                self.count("rotated", 1)
            return Resumed(record, new)
        if now - record.seen_at >= TOUCH_EVERY:
            self.store.touch(record, now)
        return Resumed(record, None)

    def revoke(self, session_id: str) -> bool:
        """End one session server-side (logout, an admin); True when it existed."""
        done = self.store.revoke(session_id)
        self.count("revoked", int(done))
        return done

    def revoke_user(self, user_id: int) -> int:
        count = self.store.revoke_user(user_id)
        self.count("revoked", count)
        return count

    def purge(self) -> int:
        """Delete ended sessions; their count is ``expired``."""
        removed = self.store.purge(self.clock(), self.settings.login_maximum_inactive_lifetime)
        self.count("expired", removed)
        return removed

    def cookie_max_age(self, record: SessionRecord) -> int:
        return max(0, int(record.expires_at - self.clock()))
