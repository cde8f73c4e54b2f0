"""``sql``: sessions in the service's database (SQLite or PostgreSQL), beside the users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from authsvc.models import Session
from authsvc.plugins import PluginContext
from authsvc.sessions.base import SessionRecord, new_token, token_hash


def _record(row: Session, matched_previous: bool = False) -> SessionRecord:
    return SessionRecord(
        id=str(row.id),
        user_id=row.user_id,
        auth_module=row.auth_module,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        seen_at=row.seen_at,
        expires_at=row.expires_at,
        prev_valid_until=row.prev_valid_until,
        matched_previous=matched_previous,
        user_agent=row.user_agent,
        client_ip=row.client_ip,
        subject=row.subject,
    )


class SqlSessionStore:
    def __init__(self, db: sessionmaker[DbSession]) -> None:
        self.db = db

    @classmethod
    def from_config(cls, context: PluginContext) -> SqlSessionStore:
        return cls(context.db)

    def create(
        self,
        user_id: int,
        *,
        now: float,
        expires_at: float,
        auth_module: str,
        subject: str = "",
        user_agent: str = "",
        client_ip: str = "",
        tx: Any = None,
    ) -> tuple[str, SessionRecord]:
        token = new_token()
        row = Session(
            user_id=user_id,
            token_hash=token_hash(token),
            auth_module=auth_module,
            subject=subject[:255],
            created_at=now,
            rotated_at=now,
            seen_at=now,
            expires_at=expires_at,
            user_agent=user_agent[:255],
            client_ip=client_ip[:64],
        )
        if tx is not None:
            tx.add(row)
            tx.flush()
            return token, _record(row)
        with self.db.begin() as db:
            db.add(row)
            db.flush()
            return token, _record(row)

    def lookup(self, token: str) -> SessionRecord | None:
        digest = token_hash(token)
        with self.db() as db:
            row = db.scalars(
                select(Session).where(
                    or_(Session.token_hash == digest, Session.prev_token_hash == digest)
                )
            ).first()
            if row is None:
                return None
            return _record(row, matched_previous=row.token_hash != digest)

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
        query = select(Session).order_by(Session.id)
        if user_id is not None:
            query = query.where(Session.user_id == user_id)
        with self.db() as db:
            return [_record(row) for row in db.scalars(query)]

    def purge(self, now: float, idle: float) -> int:
        query = delete(Session).where(Session.expires_at <= now)
        if idle:
            query = delete(Session).where(
                or_(Session.expires_at <= now, Session.seen_at <= now - idle)
            )
        with self.db.begin() as db:
            done = db.execute(query)
        return int(done.rowcount)  # type: ignore[attr-defined]
