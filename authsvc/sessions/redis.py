"""``redis``: sessions in Redis (``[remote_cache] connstr``), shared by every instance.

Layout: ``authsvc:sess:<id>`` a hash holding the record and its current token
hash; ``authsvc:tok:<sha256>`` → id for the current token and, for the grace
period, the previous one; ``authsvc:usess:<user id>`` the set of a user's
session ids. Every key expires with the session's absolute end, so Redis
forgets ended sessions by itself.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from typing import Any

import redis

from authsvc.plugins import PluginContext
from authsvc.remote_cache import redis_client
from authsvc.sessions.base import NewSession, SessionRecord, new_token, token_hash

_P = "authsvc:"

# Compare-and-rotate: only the request still holding the current token rotates.
_ROTATE = """
local sess = KEYS[1]
if redis.call('HGET', sess, 'token_hash') ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', sess)
if ttl <= 0 then return 0 end
redis.call('HSET', sess, 'token_hash', ARGV[2], 'prev_token_hash', ARGV[1],
           'prev_valid_until', ARGV[3], 'rotated_at', ARGV[4], 'seen_at', ARGV[4])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
redis.call('SET', KEYS[3], ARGV[5], 'PX', math.min(ttl, tonumber(ARGV[6])))
return 1
"""


_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'seen_at', ARGV[1]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(data: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in data.items()}


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisSessionStore:
    def __init__(self, client: redis.Redis, clock: Any) -> None:
        self.r = client
        self.clock = clock
        self._rotate = client.register_script(_ROTATE)
        self._touch = client.register_script(_TOUCH)

    @classmethod
    def from_config(cls, context: PluginContext) -> RedisSessionStore:
        return cls(redis_client(context.settings.remote_cache, timeout=2.0), context.clock)

    def _record(self, sid: str, d: dict[str, str], digest: str) -> SessionRecord:
        prev = d.get("prev_valid_until")
        return SessionRecord(
            id=sid,
            user_id=int(d["user_id"]),
            auth_module=d.get("auth_module", ""),
            created_at=float(d["created_at"]),
            rotated_at=float(d["rotated_at"]),
            seen_at=float(d["seen_at"]),
            expires_at=float(d["expires_at"]),
            prev_valid_until=float(prev) if prev else None,
            matched_previous=d.get("token_hash") != digest,
            user_agent=d.get("user_agent", ""),
            client_ip=d.get("client_ip", ""),
            subject=d.get("subject", ""),
            issuer=d.get("issuer", "jwt"),
            scope=tuple(json.loads(d["scope"])) if d.get("scope") else None,
        )

    def create(
        self, new: NewSession, *, now: float, expires_at: float, tx: Any = None
    ) -> tuple[str, SessionRecord]:
        token = new_token()
        digest = token_hash(token)
        sid = secrets.token_hex(12)
        ttl = _ms(expires_at - now)
        fields = {
            "user_id": str(new.user_id),
            "auth_module": new.auth_module,
            "subject": new.subject[:255],
            "created_at": repr(now),
            "rotated_at": repr(now),
            "seen_at": repr(now),
            "expires_at": repr(expires_at),
            "token_hash": digest,
            "user_agent": new.user_agent[:255],
            "client_ip": new.client_ip[:64],
            "issuer": new.issuer,
        }
        if new.scope is not None:
            fields["scope"] = json.dumps(list(new.scope))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{_P}sess:{sid}", mapping=dict(fields.items()))
        pipe.pexpire(f"{_P}sess:{sid}", ttl)
        pipe.set(f"{_P}tok:{digest}", sid, px=ttl)
        pipe.sadd(f"{_P}usess:{new.user_id}", sid)
        pipe.execute()
        return token, self._record(sid, fields, digest)

    def lookup(self, token: str) -> SessionRecord | None:
        digest = token_hash(token)
        sid = self.r.get(f"{_P}tok:{digest}")
        if sid is None:
            return None
        sid_text = _text(sid)
        data = _fields(self.r.hgetall(f"{_P}sess:{sid_text}"))
        if digest not in (data.get("token_hash"), data.get("prev_token_hash")):
            return None  # gone, or a token older than the previous one
        return self._record(sid_text, data, digest)

    def rotate(self, record: SessionRecord, token: str, now: float, grace: float) -> str | None:
        new = new_token()
        old = token_hash(token)
        done = self._rotate(
            keys=[f"{_P}sess:{record.id}", f"{_P}tok:{token_hash(new)}", f"{_P}tok:{old}"],
            args=[old, token_hash(new), repr(now + grace), repr(now), record.id, _ms(grace)],
        )
        return new if done == 1 else None

    def close(self) -> None:
        """Release the connection pool (Service.close)."""
        self.r.close()

    def touch(self, record: SessionRecord, now: float) -> None:
        # One script: a revoke between an EXISTS and an HSET would re-create the hash
        # without its fields or expiry.
        self._touch(keys=[f"{_P}sess:{record.id}"], args=[repr(now)])

    def revoke(self, session_id: str) -> bool:
        key = f"{_P}sess:{session_id}"
        d = _fields(self.r.hgetall(key))
        if not d:
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key, f"{_P}tok:{d.get('token_hash', '')}")
        if d.get("prev_token_hash"):
            pipe.delete(f"{_P}tok:{d['prev_token_hash']}")
        pipe.srem(f"{_P}usess:{d['user_id']}", session_id)
        pipe.execute()
        return True

    def revoke_user(self, user_id: int) -> int:
        ids = [_text(m) for m in self.r.smembers(f"{_P}usess:{user_id}")]
        count = sum(1 for sid in ids if self.revoke(sid))
        self.r.delete(f"{_P}usess:{user_id}")
        return count

    def list(self, user_id: int | None = None) -> Sequence[SessionRecord]:
        if user_id is not None:
            keys = [f"{_P}sess:{_text(m)}" for m in self.r.smembers(f"{_P}usess:{user_id}")]
        else:
            keys = [_text(k) for k in self.r.scan_iter(match=f"{_P}sess:*", count=500)]
        records = []
        for key in keys:
            data = _fields(self.r.hgetall(key))
            if data:
                sid = key.rsplit(":", 1)[1]
                records.append(self._record(sid, data, data.get("token_hash", "")))
        return sorted(records, key=lambda r: r.created_at)

    def purge(self, now: float, idle: float) -> int:
        """Absolute ends expire by themselves; idle sessions and stale index entries go here."""
        count = 0
        for key in self.r.scan_iter(match=f"{_P}usess:*", count=500):
            for member in self.r.smembers(key):
                sid = _text(member)
                seen = self.r.hget(f"{_P}sess:{sid}", "seen_at")
                if seen is None:
                    self.r.srem(key, member)
                elif idle and float(seen) <= now - idle:
                    count += int(self.revoke(sid))
        return count
