"""The authentication service: a request through the clients, then the post-auth steps.

``AuthnService.caller`` answers "who is this request?" for every endpoint:
the JWT clients first (one per issuer), then the session cookie. A JWT's
identity goes through the post-auth steps (``steps.POST_AUTH``) exactly as a
login's does, writing only when the token changes something; ``login`` adds
the session, committing user, link and session in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker
from werkzeug.wrappers import Request

from authsvc.audit import Audit
from authsvc.authn.base import Caller, JWTResult
from authsvc.authn.jwt_client import JWTClient
from authsvc.authn.session_client import SessionClient
from authsvc.authn.steps import (
    POST_AUTH,
    Login,
    refuse_disabled,
    refuse_issuer,
    session_for,
    start_session,
)
from authsvc.errors import AuthsvcError, InvalidToken, Unauthorized, UserConflict
from authsvc.issuers import Issuers, route
from authsvc.lru import LRUCache
from authsvc.metrics import Metrics
from authsvc.sessions.base import SessionRecord
from authsvc.sessions.lifecycle import SessionLifecycle
from authsvc.users import UserReader, UserRecord, UserStore, pending_changes

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_WRITE_ATTEMPTS = 8
# Routing decisions among several issuers remembered per (token, issuers that found
# it): a repeated token is not decoded again to choose. Bounded like every per-token cache.
_ROUTES_MAX_ENTRIES = 10_000
_ROUTES_MAX_BYTES = 16 * 1024 * 1024


class AuthnService:
    def __init__(
        self,
        *,
        issuers: Issuers,
        db: sessionmaker[DbSession],
        sessions: SessionLifecycle,
        cookie_name: str,
        clock: Callable[[], float],
        reader: UserReader,
        audit: Audit,
        metrics: Metrics,
        serialize_writes: bool = False,
    ) -> None:
        self.issuers = issuers
        self.audit = audit
        self.metrics = metrics
        self.jwt_clients = [JWTClient(issuer) for issuer in issuers]
        self._client_of = {client.issuer.name: client for client in self.jwt_clients}
        self._routes: LRUCache[tuple[str, ...], str] = LRUCache(
            _ROUTES_MAX_ENTRIES, _ROUTES_MAX_BYTES
        )
        self.session_client = SessionClient(
            sessions, reader, cookie_name, [issuer.name for issuer in issuers]
        )
        self.db = db
        self.sessions = sessions
        self.clock = clock
        self.reader = reader
        self._engine = db.kw["bind"]  # the Engine the sessionmaker was built on
        # SQLite has one writer at a time; threads of one process queue on a lock
        # instead of in SQLite's busy handler, whose sleeps inflate tail latency.
        self._write_lock: Any = threading.Lock() if serialize_writes else contextlib.nullcontext()

    # ------------------------------------------------------------------ entry points
    def caller(
        self,
        request: Request,
        *,
        sessions: bool = True,
        allowed: Collection[str] | None = None,
    ) -> Caller:
        """The authenticated caller, or the error saying why there is none.

        ``allowed`` names the only issuers that may authenticate the request
        (``?issuer=``), checked before anything is provisioned or rotated.
        """
        with self._counted() as chosen:
            caller = self._caller(request, sessions, allowed, chosen)
            chosen.append(caller.issuer)
            return caller

    def sign_in(
        self, request: Request, *, url: bool, user_agent: str = "", client_ip: str = ""
    ) -> tuple[UserRecord, str, SessionRecord]:
        """The login endpoints: the request's JWT, the post-auth steps and a new session.

        ``url``: ``GET /login``, where issuers with ``url_login`` also read ``?auth_token=``.
        """
        with self._counted() as chosen:
            result = self.authenticate_jwt(request, query=None if url else False, chosen=chosen)
            if result is None:
                headers = " or ".join(sorted({c.header_name for c in self.jwt_clients}))
                raise Unauthorized(
                    "no token: pass it as ?auth_token="
                    if url
                    else f"no token: send a JWT in {headers}",
                    token_presented=False,
                )
            return self.login(result, user_agent=user_agent, client_ip=client_ip)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[list[str]]:
        """authsvc_auth_total{issuer,result}: the block appends the issuer once it is known."""
        chosen: list[str] = []
        try:
            yield chosen
        except AuthsvcError as exc:
            self.metrics.authenticated(chosen[-1] if chosen else "", exc.message_id)
            raise
        self.metrics.authenticated(chosen[-1] if chosen else "", "ok")

    def _caller(
        self,
        request: Request,
        sessions: bool,
        allowed: Collection[str] | None,
        chosen: list[str],
    ) -> Caller:
        result = self.authenticate_jwt(request, allowed=allowed, chosen=chosen)
        if result is not None:
            return Caller(self.resolve(result), "jwt", jwt=result)
        cookie = self.session_client.credential(request) if sessions else None
        if cookie:
            return self.session_client.authenticate(cookie, allowed)
        if not self.jwt_clients:
            raise Unauthorized("no credentials: log in first", token_presented=False)
        headers = " or ".join(sorted({c.header_name for c in self.jwt_clients}))
        raise Unauthorized(
            f"no credentials: send a JWT in {headers} or a session cookie",
            token_presented=False,
        )

    def authenticate_jwt(
        self,
        request: Request,
        *,
        query: bool | None = None,
        allowed: Collection[str] | None = None,
        chosen: list[str] | None = None,
    ) -> JWTResult | None:
        """The request's JWT verified by the one issuer it routes to; None when it has none.

        Every issuer's client reads its header (and query); two different tokens
        are refused; ``issuers.route`` chooses among the issuers that found the
        token, on unverified data, and only the chosen one verifies it.
        """
        # Issuers sharing a header read it once (several issuers on one header is the
        # common case: routing then chooses among them).
        read: dict[tuple[str, bool], str | None] = {}
        presented = []
        for client in self.jwt_clients:
            key = (client.header_name.lower(), client.reads_query(query))
            if key not in read:
                read[key] = client.credential(request, query=query)
            if token := read[key]:
                presented.append((client, token))
        if not presented:
            return None
        token = presented[0][1]
        if any(t.rstrip("=") != token.rstrip("=") for _, t in presented):
            headers = ", ".join(sorted({c.header_name for c, _ in presented}))
            raise InvalidToken(f"two different tokens in one request (in {headers})")
        candidates = [client.issuer for client, _ in presented]
        if len(candidates) == 1:
            # One candidate: routing only checks its issuer list (a cheap decode); not
            # remembered, so that a stream of new tokens adds nothing to the heap.
            name = route(token, candidates).name
        else:
            route_key = (token, *(client.name for client, _ in presented))
            remembered = self._routes.get(route_key)
            if remembered is None:  # a refusal raises here and is not remembered
                remembered = route(token, candidates).name
                self._routes.put(route_key, remembered, len(token) + 256)
            name = remembered
        if chosen is not None:
            chosen.append(name)  # for the metrics, whatever follows
        refuse_issuer(name, allowed)
        return self._client_of[name].authenticate(token)

    def resolve(self, result: JWTResult) -> UserRecord:
        """The user a verified token stands for, provisioned as a login would; no session.

        Fast path (every forward-auth request): one DB-API read of the linked user;
        when the token would change nothing, that is the answer. Otherwise, and for
        provisioners that do not declare ``trusts_linked_users``, the post-auth
        steps run in one transaction.
        """
        current = self.unchanged_linked(result)
        if current is not None:
            return current
        login = self._write(lambda tx: self._post_auth(tx, result))
        self._committed(login)
        return login.record()

    def unchanged_linked(self, result: JWTResult) -> UserRecord | None:
        """The linked user when the token changes nothing on it (one read), else None.

        None also when the issuer's provisioner does not declare ``trusts_linked_users``.
        """
        issuer = result.issuer
        if not getattr(issuer.provisioner, "trusts_linked_users", False):
            return None
        current = self.reader.linked(result.identity.subject, issuer.name)
        if current is None or pending_changes(current, result.identity, issuer.policy):
            return None
        refuse_disabled(current)
        return current

    def login(
        self, result: JWTResult, *, user_agent: str = "", client_ip: str = ""
    ) -> tuple[UserRecord, str, SessionRecord]:
        """The post-auth steps and a session, in one transaction.

        A linked user the token changes nothing on needs no provisioning write:
        then the session row is the transaction's only write.
        """
        current = self.unchanged_linked(result)
        if current is not None:
            user = current
            # Only the session row is written: a plain Core transaction suffices.
            token, record = self._write(
                lambda tx: session_for(
                    result,
                    current.id,
                    self.sessions,
                    user_agent=user_agent,
                    client_ip=client_ip,
                    tx=tx,
                ),
                core=True,
            )
        else:

            def work(tx: DbSession) -> Login:
                login = self._post_auth(tx, result)
                start_session(
                    login, self.sessions, user_agent=user_agent, client_ip=client_ip, tx=tx
                )
                return login

            login = self._write(work)
            self._committed(login)
            assert login.session is not None
            user = login.record()
            token, record = login.session
        log.info(
            "login",
            extra={
                "user_id": user.id,
                "login": user.login,
                "issuer": result.issuer.name,
                "token": result.token.fingerprint,
            },
        )
        self.audit(
            "login", user=user.login, issuer=result.issuer.name, token=result.token.fingerprint
        )
        return user, token, record

    def _committed(self, login: Login) -> None:
        """What follows a committed post-auth transaction: a sign-up is recorded."""
        if login.signed_up:
            result = login.result
            self.metrics.signed_up(result.issuer.name)
            self.audit(
                "signup",
                user=login.record().login,
                issuer=result.issuer.name,
                token=result.token.fingerprint,
            )

    # ------------------------------------------------------------------ steps
    def _post_auth(self, tx: DbSession, result: JWTResult) -> Login:
        issuer = result.issuer
        login = Login(result, UserStore(tx, issuer.policy, self.clock, issuer=issuer.name))
        for step in POST_AUTH:
            step(login)
        return login

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
