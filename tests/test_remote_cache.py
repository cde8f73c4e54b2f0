"""``[remote_cache]``: memory and real Redis behave alike; a dead Redis degrades, never fails."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from authsvc.config import RemoteCacheSettings, Settings
from authsvc.remote_cache import MemoryCache, RedisCache, RemoteCache, make_remote_cache

SettingsFactory = Callable[..., Settings]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def redis_settings(
    make_settings: SettingsFactory, db: int, addr: str = f"{REDIS_HOST}:{REDIS_PORT}"
) -> RemoteCacheSettings:
    connstr = f"addr={addr},db={db}"
    return make_settings({"remote_cache": {"type": "redis", "connstr": connstr}}).remote_cache


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, make_settings: SettingsFactory) -> Iterator[RemoteCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    db = request.getfixturevalue("redis_db")
    made = make_remote_cache(redis_settings(make_settings, db))
    assert isinstance(made, RedisCache)
    yield made
    made.close()


def test_get_set_delete(cache: RemoteCache) -> None:
    assert cache.get("a") is None
    cache.set("a", b"one", 60)
    assert cache.get("a") == b"one"
    cache.set("a", b"two", 60)
    assert cache.get("a") == b"two"
    cache.delete("a")
    assert cache.get("a") is None
    cache.delete("never-set")


def test_add_only_when_absent(cache: RemoteCache) -> None:
    assert cache.add("gate", b"1", 60) is True
    assert cache.add("gate", b"2", 60) is False
    assert cache.get("gate") == b"1"
    cache.delete("gate")
    assert cache.add("gate", b"3", 60) is True


def test_values_expire_after_ttl(cache: RemoteCache) -> None:
    cache.set("short", b"x", 0.2)
    assert cache.add("gate", b"1", 0.2) is True
    wait_until(lambda: cache.get("short") is None, "the value to expire")
    wait_until(lambda: cache.add("gate", b"2", 60), "the gate to reopen")


def test_one_add_wins_among_concurrent_callers(cache: RemoteCache) -> None:
    barrier = threading.Barrier(50)
    wins: list[bool] = []

    def contend() -> None:
        barrier.wait()
        wins.append(cache.add("cooldown", b"1", 60))

    threads = [threading.Thread(target=contend) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert len(wins) == 50


def test_memory_cache_follows_the_injected_clock() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock)
    cache.set("k", b"v", 30)
    assert cache.add("gate", b"1", 30) is True
    clock.advance(29.9)
    assert cache.get("k") == b"v"
    assert cache.add("gate", b"1", 30) is False
    clock.advance(0.1)
    assert cache.get("k") is None
    assert cache.add("gate", b"1", 30) is True


def test_memory_cache_sweeps_expired_entries() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock)
    for i in range(1000):
        cache.set(f"old{i}", b"x", 1)
    clock.advance(2)
    for i in range(100):
        cache.set(f"new{i}", b"x", 60)
    assert len(cache._data) < 200


def test_two_memory_caches_share_nothing() -> None:
    a, b = MemoryCache(), MemoryCache()
    a.set("k", b"v", 60)
    assert a.add("gate", b"1", 60)
    assert b.get("k") is None
    assert b.add("gate", b"1", 60)


@pytest.mark.redis
def test_redis_keys_are_prefixed_and_expire_in_redis(
    make_settings: SettingsFactory, redis_db: int
) -> None:
    cache = RedisCache(redis_settings(make_settings, redis_db))
    raw = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    try:
        cache.set("jwks:abc", b"doc", 30)
        cache.add("jwks-cooldown:abc", b"1", 1.5)
        assert raw.get("authsvc:jwks:abc") == b"doc"
        assert 29_000 < raw.pttl("authsvc:jwks:abc") <= 30_000
        assert 1_000 < raw.pttl("authsvc:jwks-cooldown:abc") <= 1_500
        assert raw.get("jwks:abc") is None
    finally:
        cache.close()
        raw.close()


@pytest.mark.redis
def test_two_redis_caches_share_state(make_settings: SettingsFactory, redis_db: int) -> None:
    a = RedisCache(redis_settings(make_settings, redis_db))
    b = RedisCache(redis_settings(make_settings, redis_db))
    try:
        a.set("doc", b"v", 60)
        assert b.get("doc") == b"v"
        assert a.add("gate", b"1", 60) is True
        assert b.add("gate", b"1", 60) is False
    finally:
        a.close()
        b.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_redis_degrades_to_process_memory(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = RedisCache(redis_settings(make_settings, 0, f"127.0.0.1:{_closed_port()}"), clock)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="authsvc.remote_cache"):
            assert cache.get("doc") is None
            cache.set("doc", b"v", 60)
            assert cache.get("doc") == b"v"
            assert cache.add("gate", b"1", 60) is True
            assert cache.add("gate", b"1", 60) is False
            cache.delete("doc")
            assert cache.get("doc") is None
        assert time.monotonic() - started < 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one warning per outage, not one per call"
        assert "using this process's memory" in warnings[0].getMessage()
        assert f"127.0.0.1:{cache._client.connection_pool.connection_kwargs['port']}" in (
            warnings[0].getMessage()
        )
        # Redis is tried again after a while, and still fails quietly.
        clock.advance(10)
        assert cache.add("gate", b"1", 60) is False
    finally:
        cache.close()


def test_make_remote_cache_builds_the_configured_type(make_settings: SettingsFactory) -> None:
    assert isinstance(make_remote_cache(make_settings().remote_cache), MemoryCache)
    built = make_remote_cache(redis_settings(make_settings, 3))
    assert isinstance(built, RedisCache)
    assert isinstance(built, RemoteCache)
    built.close()
