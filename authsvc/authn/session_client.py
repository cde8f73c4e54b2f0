"""The session-cookie client: a cookie's session, rotated when due, and its user."""

from __future__ import annotations

from collections.abc import Collection

from werkzeug.wrappers import Request

from authsvc.authn.base import Caller
from authsvc.authn.steps import refuse_disabled, refuse_issuer
from authsvc.errors import SessionInvalid
from authsvc.sessions.base import SessionRecord, SessionUserLookup
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.users import UserReader, UserRecord


class SessionClient:
    name = "session"

    def __init__(
        self,
        sessions: SessionLifecycle,
        reader: UserReader,
        cookie_name: str,
        issuers: Collection[str],
    ) -> None:
        self.sessions = sessions
        self.reader = reader
        self.cookie_name = cookie_name
        self.issuers = frozenset(issuers)
        """The enabled issuers: a session an issuer since removed started is over."""

    def credential(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie_name, "") or None

    def authenticate(self, credential: str, allowed: Collection[str] | None = None) -> Caller:
        """The caller a session cookie stands for; SessionInvalid / IdentityDisabled otherwise.

        ``allowed`` (``?issuer=``) names the issuers whose sessions may pass. The
        session's issuer and user are checked before the session is touched or
        rotated: a refused request must not rotate a session whose new token it
        cannot deliver.
        """
        found: list[UserRecord] = []
        store = self.sessions.store
        # One read where the store can give the session with its user.
        joined = (
            store.lookup_with_user(credential) if isinstance(store, SessionUserLookup) else None
        )

        def admit(record: SessionRecord) -> None:
            if record.issuer not in self.issuers:
                raise SessionInvalid(
                    f"the session was started by issuer {record.issuer!r}, which is not enabled"
                )
            refuse_issuer(record.issuer, allowed)
            user = joined[1] if joined is not None else self.reader.by_id(record.user_id)
            if user is None:
                raise SessionInvalid("the session's user no longer exists")
            refuse_disabled(user)
            found.append(user)

        if isinstance(store, SessionUserLookup) and joined is None:
            raise SessionInvalid("session not found: unknown, logged out or revoked")
        resumed = self.sessions.resume(
            credential, admit, found=joined[0] if joined is not None else None
        )
        return Caller(
            found[0], "session", session=resumed.record, new_session_token=resumed.new_token
        )
