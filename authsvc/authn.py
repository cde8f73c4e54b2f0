"""The request pipeline, in one visible order: extract → verify → map claims → provision → session.

Each step fails with its own error class. ``Authenticator.caller`` answers
"who is this request?" for every endpoint from a JWT (resolved to its user
exactly as a login does, writing only when the token changes something) or
from the session cookie. ``Authenticator.login`` does the same and starts a
session, committing user, link and session in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from authsvc.config import JWTSettings
from authsvc.errors import (
    IdentityDisabled,
    InvalidToken,
    SessionInvalid,
    Unauthorized,
    UserConflict,
)
from authsvc.identity import ClaimsMapper, Identity
from authsvc.models import User
from authsvc.provisioning.base import UserProvisioner
from authsvc.sessions.base import SessionRecord
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.users import (
    AUTH_MODULE,
    SyncPolicy,
    UserReader,
    UserRecord,
    UserStore,
    pending_changes,
)
from authsvc.verifier import VerifiedToken, Verifier, fingerprint

log = logging.getLogger(__name__)

QUERY_PARAM = "auth_token"
_T = TypeVar("_T")
_WRITE_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class JWTResult:
    token: VerifiedToken
    identity: Identity


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, and how they proved it."""

    user: UserRecord
    via: str
    """``jwt`` or ``session``."""
    jwt: JWTResult | None = None
    session: SessionRecord | None = None
    new_session_token: str | None = None
    """Set when the session rotated: the response must carry it as the new cookie."""


def strip_bearer(value: str) -> str:
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return "" if value.lower() == "bearer" else value


class JWTAuthenticator:
    """JWTs in ``header_name`` (or ``?auth_token=`` with ``url_login``) → Identity."""

    def __init__(self, settings: JWTSettings, verifier: Verifier, mapper: ClaimsMapper) -> None:
        self.settings = settings
        self.verifier = verifier
        self.mapper = mapper

    def extract(self, request: Request, *, query: bool | None = None) -> str | None:
        """The presented token, or None. Two different tokens are refused, not chosen between."""
        header = strip_bearer(request.headers.get(self.settings.header_name, ""))
        from_query = ""
        if self.settings.url_login if query is None else query:
            from_query = strip_bearer(request.args.get(QUERY_PARAM, ""))
        if header and from_query and header.rstrip("=") != from_query.rstrip("="):
            raise InvalidToken(
                f"two different tokens: one in header {self.settings.header_name}, "
                f"one in query parameter {QUERY_PARAM}"
            )
        return header or from_query or None

    def authenticate_token(self, token: str) -> JWTResult:
        try:
            verified = self.verifier.verify(token)
            identity = self.mapper.identity(verified.claims)
        except InvalidToken as exc:
            log.info("token refused", extra={"token": fingerprint(token), "reason": exc.reason})
            raise
        return JWTResult(verified, identity)

    def authenticate(self, request: Request) -> JWTResult | None:
        token = self.extract(request)
        return None if token is None else self.authenticate_token(token)


class Authenticator:
    """Routes a request through the JWT client and the session cookie; provisions users."""

    def __init__(
        self,
        *,
        jwt: JWTAuthenticator | None,
        provisioner: UserProvisioner | None,
        policy: SyncPolicy,
        db: sessionmaker[DbSession],
        sessions: SessionLifecycle,
        cookie_name: str,
        clock: Callable[[], float],
        reader: UserReader,
        serialize_writes: bool = False,
    ) -> None:
        self.jwt = jwt
        self.provisioner = provisioner
        self.policy = policy
        self.db = db
        self.sessions = sessions
        self.cookie_name = cookie_name
        self.clock = clock
        self.reader = reader
        self._engine = db.kw["bind"]  # the Engine the sessionmaker was built on
        # SQLite has one writer at a time; threads of one process queue on a lock
        # instead of in SQLite's busy handler, whose sleeps inflate tail latency.
        self._write_lock: Any = threading.Lock() if serialize_writes else contextlib.nullcontext()

    # ------------------------------------------------------------------ entry points
    def caller(self, request: Request, *, sessions: bool = True) -> Caller:
        """The authenticated caller, or the error saying why there is none."""
        result = self.jwt.authenticate(request) if self.jwt is not None else None
        if result is not None:
            return Caller(self.resolve(result), "jwt", jwt=result)
        cookie = request.cookies.get(self.cookie_name, "") if sessions else ""
        if cookie:
            return self.from_session(cookie)
        if self.jwt is None:
            raise Unauthorized("no credentials: log in first", token_presented=False)
        raise Unauthorized(
            f"no credentials: send a JWT in {self.jwt.settings.header_name} or a session cookie",
            token_presented=False,
        )

    def resolve(self, result: JWTResult) -> UserRecord:
        """The user a verified token stands for, provisioned as a login would; no session.

        Fast path (every forward-auth request): one DB-API read of the linked user;
        when the token would change nothing, that is the answer. Otherwise, and for
        provisioners that do not declare ``trusts_linked_users``, the full
        provisioning transaction runs.
        """
        identity = result.identity
        current = self.unchanged_linked(identity)
        if current is not None:
            return current
        return self._write(lambda tx: UserRecord.of(self._provision(tx, identity)))

    def unchanged_linked(self, identity: Identity) -> UserRecord | None:
        """The linked user when the token changes nothing on it (one read), else None.

        None also when the provisioner does not declare ``trusts_linked_users``.
        """
        if not getattr(self.provisioner, "trusts_linked_users", False):
            return None
        current = self.reader.linked(identity.subject)
        if current is None or pending_changes(current, identity, self.policy):
            return None
        if current.disabled:
            raise IdentityDisabled(f"user {current.login!r} (id {current.id}) is disabled")
        return current

    def login(
        self, result: JWTResult, *, user_agent: str = "", client_ip: str = ""
    ) -> tuple[UserRecord, str, SessionRecord]:
        """Provision the user and start a session, in one transaction.

        A linked user the token changes nothing on needs no provisioning write:
        then the session row is the transaction's only write.
        """

        def start(user_id: int, tx: Any) -> tuple[str, SessionRecord]:
            return self.sessions.start(
                user_id,
                # The claim itself: expires_at adds the verification leeway.
                token_exp=_exp(result.token),
                auth_module=AUTH_MODULE,
                subject=result.identity.subject,
                user_agent=user_agent,
                client_ip=client_ip,
                tx=tx,
            )

        def work(tx: DbSession) -> tuple[UserRecord, str, SessionRecord]:
            user = self._provision(tx, result.identity)
            return UserRecord.of(user), *start(user.id, tx)

        current = self.unchanged_linked(result.identity)
        if current is not None:
            user = current
            # Only the session row is written: a plain Core transaction suffices.
            token, record = self._write(lambda tx: start(current.id, tx), core=True)
        else:
            user, token, record = self._write(work)
        log.info(
            "login",
            extra={"user_id": user.id, "login": user.login, "token": result.token.fingerprint},
        )
        return user, token, record

    # ------------------------------------------------------------------ steps
    def _provision(self, tx: DbSession, identity: Identity) -> User:
        if self.provisioner is None:
            raise Unauthorized("JWT authentication is disabled", token_presented=False)
        user = self.provisioner.provision(identity, UserStore(tx, self.policy, self.clock))
        if user.disabled:
            raise IdentityDisabled(f"user {user.login!r} (id {user.id}) is disabled")
        return user

    def from_session(self, cookie: str) -> Caller:
        """The caller a session cookie stands for; SessionInvalid / IdentityDisabled otherwise."""
        found: list[UserRecord] = []

        def admit(record: SessionRecord) -> None:
            user = self.reader.by_id(record.user_id)
            if user is None:
                raise SessionInvalid("the session's user no longer exists")
            if user.disabled:
                raise IdentityDisabled(f"user {user.login!r} (id {user.id}) is disabled")
            found.append(user)

        resumed = self.sessions.resume(cookie, admit)
        return Caller(
            found[0], "session", session=resumed.record, new_session_token=resumed.new_token
        )

    def _write(self, work: Callable[[Any], _T], *, core: bool = False) -> _T:
        """Run ``work`` in a transaction; retry when a concurrent first login won the race.

        A unique-constraint clash means another request just created the same
        user or link: the retry finds it. SQLite's "database is locked" under
        many writers is retried the same way. Nothing partial is ever kept.
        """
        conflicted = False
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                begin = self._engine.begin if core else self.db.begin
                with self._write_lock, begin() as tx:
                    return work(tx)
            except UserConflict:
                # A concurrent first login can commit user and link between our link
                # lookup and our login/email check; a fresh transaction finds the link.
                # A real conflict repeats and is raised the second time.
                if conflicted or attempt == _WRITE_ATTEMPTS - 1:
                    raise
                conflicted = True
                continue
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise UserConflict(
                        "the user changed concurrently too often; try again"
                    ) from None
            except OperationalError as exc:
                if "locked" not in str(exc) or attempt == _WRITE_ATTEMPTS - 1:
                    raise
            time.sleep(random.uniform(0.002, 0.02) * (attempt + 1))  # noqa: S311 (jitter)
        raise AssertionError("unreachable")


def _exp(token: VerifiedToken) -> float | None:
    exp = token.claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
