"""``sql``: sessions in the service's database (SQLite or PostgreSQL), beside the users."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from authsvc.db import RawQuery, ReadConnections
from authsvc.models import Session, User
from authsvc.plugins import PluginContext
from authsvc.sessions.base import NewSession, SessionRecord, new_token, token_hash
from authsvc.users import USER_COLUMNS, UserRecord, user_record

_COLUMNS = (
    "id", "user_id", "auth_module", "created_at", "rotated_at", "seen_at", "expires_at",
    "prev_valid_until", "user_agent", "client_ip", "subject", "token_hash", "issuer", "scope",
)  # fmt: skip


def _record(row: Any, digest: str) -> SessionRecord:
    """A SessionRecord from a row of ``_COLUMNS``; ``digest`` is the token hash looked up."""
    return SessionRecord(
        id=str(row[0]),
        user_id=row[1],
        auth_module=row[2],
        created_at=row[3],
        rotated_at=row[4],
        seen_at=row[5],
        expires_at=row[6],
        prev_valid_until=row[7],
        matched_previous=row[11] != digest,
        user_agent=row[8],
        client_ip=row[9],
        subject=row[10],
        issuer=row[12],
        scope=_scope(row[13]),
    )


def _scope(value: Any) -> tuple[str, ...] | None:
    """The JSON column as the DB-API hands it over: a list, its JSON text, or NULL."""
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return tuple(value) if value is not None else None


class SqlSessionStore:
    """SessionStore and SessionUserLookup: sessions beside the users, read with them."""

    def __init__(self, db: sessionmaker[DbSession], reads: ReadConnections) -> None:
        self.db = db
        table = Session.__table__
        users = User.__table__
        by_digest = or_(
            table.c.token_hash == bindparam("digest"),
            table.c.prev_token_hash == bindparam("digest"),
        )
        # Every request with a session cookie runs one of these: compiled once, DB-API.
        self._lookup = RawQuery(
            reads, select(*(table.c[name] for name in _COLUMNS)).where(by_digest)
        )
        self._with_user = RawQuery(
            reads,
            select(*(table.c[name] for name in _COLUMNS), *(users.c[name] for name in USER_COLUMNS))
            .select_from(table.outerjoin(users, users.c.id == table.c.user_id))
            .where(by_digest),
        )

    @classmethod
    def from_config(cls, context: PluginContext) -> SqlSessionStore:
        if context.db is None:
            raise ValueError("the sql session store needs the service's database")
        return cls(context.db, context.reads or ReadConnections(context.db.kw["bind"]))

    def create(
        self, new: NewSession, *, now: float, expires_at: float, tx: Any = None
    ) -> tuple[str, SessionRecord]:
        token = new_token()
        agent, ip, subject = new.user_agent[:255], new.client_ip[:64], new.subject[:255]
        values: dict[str, Any] = {
            "user_id": new.user_id,
            "token_hash": token_hash(token),
            "prev_token_hash": None,
            "prev_valid_until": None,
            "auth_module": new.auth_module,
            "subject": subject,
            "created_at": now,
            "rotated_at": now,
            "seen_at": now,
            "expires_at": expires_at,
            "user_agent": agent,
            "client_ip": ip,
            "issuer": new.issuer,
            "scope": list(new.scope) if new.scope is not None else None,
        }
        # A Core INSERT: every login runs it, and the ORM's unit of work costs
        # several times the statement itself.
        statement = insert(Session).values(values).returning(Session.id)
        if tx is not None:
            session_id = tx.execute(statement).scalar_one()
        else:
            with self.db.begin() as db:
                session_id = db.execute(statement).scalar_one()
        return token, SessionRecord(
            id=str(session_id),
            user_id=new.user_id,
            auth_module=new.auth_module,
            created_at=now,
            rotated_at=now,
            seen_at=now,
            expires_at=expires_at,
            user_agent=agent,
            client_ip=ip,
            subject=subject,
            issuer=new.issuer,
            scope=new.scope,
        )

    def lookup(self, token: str) -> SessionRecord | None:
        digest = token_hash(token)
        row = self._lookup.first(digest=digest)
        return None if row is None else _record(row, digest)

    def lookup_with_user(self, token: str) -> tuple[SessionRecord, UserRecord | None] | None:
        """The session and its user in one read (one round trip on PostgreSQL)."""
        digest = token_hash(token)
        row = self._with_user.first(digest=digest)
        if row is None:
            return None
        return _record(row, digest), user_record(row[len(_COLUMNS) :])

    def rotate(self, record: SessionRecord, token: str, now: float, grace: float) -> str | None:
        new = new_token()
        old = token_hash(token)
        with self.db.begin() as db:
            done = db.execute(
                update(Session)
                .where(Session.id == int(record.id), Session.token_hash == old)
                .values(
                    token_hash=token_hash(new),
                    prev_token_hash=old,
                    prev_valid_until=now + grace,
                    rotated_at=now,
                    seen_at=now,
                )
            )
        return new if done.rowcount == 1 else None  # type: ignore[attr-defined]

    def touch(self, record: SessionRecord, now: float) -> None:
        with self.db.begin() as db:
            db.execute(update(Session).where(Session.id == int(record.id)).values(seen_at=now))

    def revoke(self, session_id: str) -> bool:
        try:
            sid = int(session_id)
        except ValueError:
            return False
        with self.db.begin() as db:
            done = db.execute(delete(Session).where(Session.id == sid))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def revoke_user(self, user_id: int) -> int:
        with self.db.begin() as db:
            done = db.execute(delete(Session).where(Session.user_id == user_id))
        return int(done.rowcount)  # type: ignore[attr-defined]

    def list(self, user_id: int | None = None) -> Sequence[SessionRecord]:
        table = Session.__table__
        query = select(*(table.c[name] for name in _COLUMNS)).order_by(table.c.id)
        if user_id is not None:
            query = query.where(table.c.user_id == user_id)
        with self.db() as db:
            return [_record(row, row[11]) for row in db.execute(query)]

    def purge(self, now: float, idle: float) -> int:
        query = delete(Session).where(Session.expires_at <= now)
        if idle:
            query = delete(Session).where(
                or_(Session.expires_at <= now, Session.seen_at <= now - idle)
            )
        with self.db.begin() as db:
            done = db.execute(query)
        return int(done.rowcount)  # type: ignore[attr-defined]
