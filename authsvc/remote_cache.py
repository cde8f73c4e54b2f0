"""``[remote_cache]``: state shared by every instance of the service.

Four verbs are enough for what we share (JWKS documents, kid-miss cooldowns):
``get``, ``set``, ``delete``, and ``add`` — set only if absent — which is the
cooldown and lock primitive (Redis ``SET NX PX``). ``memory`` keeps the state
in the app (one instance); ``redis`` shares it. A failing Redis must never fail
a verification: its operations then fall back to per-process memory, with a
warning, until Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from authsvc.config import RemoteCacheSettings

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

KEY_PREFIX = "authsvc:"
# Redis sits on the request path (kid misses): fail fast, then leave it alone for a while.
_SOCKET_TIMEOUT = 0.5
_RETRY_AFTER = 5.0


@runtime_checkable
class RemoteCache(Protocol):
    """Bytes under string keys, each with a time to live in seconds (> 0)."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float) -> None: ...

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Store ``value`` only if ``key`` is absent; True when this call stored it."""

    def delete(self, key: str) -> None: ...


class MemoryCache:
    """One process's cache: thread-safe, expiring by the injected clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._sweep_at = 1024

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key, self._clock())

    def set(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            now = self._clock()
            self._data[key] = (value, now + ttl)
            self._sweep(now)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._data[key] = (value, now + ttl)
            self._sweep(now)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._data[key]
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        # Expired entries nobody reads again are dropped now and then, in amortised O(1).
        if len(self._data) < self._sweep_at:
            return
        for key in [k for k, (_, expires) in self._data.items() if now >= expires]:
            del self._data[key]
        self._sweep_at = max(1024, 2 * len(self._data))


def redis_client(settings: RemoteCacheSettings, *, timeout: float) -> Redis:
    """A client for ``[remote_cache] connstr``: the remote cache's and the session store's."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise RuntimeError(
            "[remote_cache] type = redis needs the redis package: pip install 'authsvc[redis]'"
        ) from None
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password or None,
        ssl=settings.redis_ssl,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One immediate retry covers a pooled connection that Redis closed meanwhile.
        retry=Retry(NoBackoff(), 1),
    )


class RedisCache:
    """Redis shared by every instance; keys prefixed ``authsvc:``.

    When Redis fails, each operation falls back to a per-process MemoryCache
    (so a cooldown still holds in this process) and Redis is left alone for a
    few seconds instead of costing a timeout on every call.
    """

    def __init__(
        self, settings: RemoteCacheSettings, clock: Callable[[], float] = time.time
    ) -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._client = redis_client(settings, timeout=_SOCKET_TIMEOUT)
        self._where = f"redis at {settings.redis_host}:{settings.redis_port} db {settings.redis_db}"
        self._clock = clock
        self._local = MemoryCache(clock)
        self._down_until = 0.0

    def get(self, key: str) -> bytes | None:
        value = self._call("get", lambda: self._client.get(KEY_PREFIX + key))
        if value is _FALLBACK:
            return self._local.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: float) -> None:
        done = self._call("set", lambda: self._client.set(KEY_PREFIX + key, value, px=_ms(ttl)))
        if done is _FALLBACK:
            self._local.set(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        done = self._call(
            "add", lambda: self._client.set(KEY_PREFIX + key, value, px=_ms(ttl), nx=True)
        )
        if done is _FALLBACK:
            return self._local.add(key, value, ttl)
        return bool(done)

    def delete(self, key: str) -> None:
        self._local.delete(key)
        self._call("delete", lambda: self._client.delete(KEY_PREFIX + key))

    def close(self) -> None:
        self._client.close()

    def _call(self, verb: str, op: Callable[[], object]) -> object:
        """Run ``op`` against Redis, or answer _FALLBACK when Redis is (recently) failing."""
        if self._down_until and self._clock() < self._down_until:
            return _FALLBACK
        try:
            result = op()
        except self._errors as exc:
            if not self._down_until:
                log.warning(
                    "remote cache: %s failed on %s, using this process's memory: %s",
                    verb,
                    self._where,
                    exc,
                )
            self._down_until = self._clock() + _RETRY_AFTER
            return _FALLBACK
        if self._down_until:
            log.info("remote cache: %s answers again", self._where)
            self._down_until = 0.0
        return result


class _Fallback:
    pass


_FALLBACK = _Fallback()


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def make_remote_cache(
    settings: RemoteCacheSettings, clock: Callable[[], float] = time.time
) -> RemoteCache:
    """The ``[remote_cache]`` of one app: built once at start-up, shared by its plugins."""
    if settings.type == "redis":
        return RedisCache(settings, clock)
    return MemoryCache(clock)
