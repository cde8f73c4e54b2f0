"""``jwk_set_url``: a JSON Web Key Set fetched over HTTP(S) and kept fresh in the background.

``get_key`` reads memory only (except with ``cache_ttl = 0``, Grafana's "no
caching", where every lookup fetches). A daemon thread refreshes the set
ahead of its expiry; while the URL fails it retries with exponential backoff
capped at 30 s and the last good set keeps serving until ``jwk_set_max_stale``
after its last successful fetch. A token naming an unknown kid may force one
fetch per ``jwk_set_refresh_cooldown``, gated through the remote cache so that
all instances share the cooldown, and in one flight per process.

Nothing but a 200 whose body is a usable JWKS replaces the set: error pages,
HTML, invalid JSON and oversized bodies are recorded as the last error and
never cached. Every fetched document is stored in the remote cache, where the
other instances pick it up before fetching themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from authsvc import __version__
from authsvc.config import JWTSettings
from authsvc.durations import describe_duration
from authsvc.errors import KeysUnavailable
from authsvc.keys.base import KeyError_, KeyState, VerificationKey
from authsvc.keys.jwks import parse_key_set
from authsvc.plugins import PluginContext
from authsvc.remote_cache import MemoryCache, RemoteCache

log = logging.getLogger(__name__)

_REFRESH_AHEAD = 0.8
"""Refresh once this fraction of the TTL has passed, so that a fresh set is ready in time."""
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_MIN_TTL = 10.0
"""A Cache-Control max-age below this is raised to it: max-age=0 must not mean a busy loop."""
_MAX_SLEEP = 1.0
"""The refresher re-reads the (injectable) clock at least this often."""
_MISS_QUIET = 1.0
"""After a kid miss found nothing, further misses skip the shared state this long."""
_MAX_AGE = re.compile(r'(?:^|[,\s])max-age\s*=\s*"?(\d+)', re.IGNORECASE)


@dataclass(frozen=True)
class _KeySet:
    """One accepted key set; replaced whole, never changed in place."""

    keys: Mapping[str | None, VerificationKey]
    jwks: Mapping[str | None, Any]
    """The JWK objects as published, to keep a key's identity across refreshes."""
    refused: tuple[str, ...]
    digest: str
    fetched_at: float
    ttl: float
    usable_until: float


class _FetchError(Exception):
    """A fetch that produced no usable key set; the message says why."""


class JwksUrlProvider:
    """Keys from ``[auth.jwt] jwk_set_url``: KeyProvider, KeyHealth, KeyIds,
    UnknownKidRefresh and KeyDescription."""

    def __init__(
        self,
        settings: JWTSettings,
        cache: RemoteCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = settings.jwk_set_url
        self._display_url = _without_credentials(settings.jwk_set_url)
        self._algorithms = settings.algorithms
        self._cache_ttl = settings.cache_ttl
        self._no_cache = settings.cache_ttl <= 0
        self._cooldown = settings.jwk_set_refresh_cooldown
        self._max_stale = settings.jwk_set_max_stale
        self._timeout = settings.jwk_set_timeout
        self._max_bytes = settings.jwk_set_max_bytes
        self._token_file = settings.jwk_set_bearer_token_file
        self._verify: bool | str = settings.tls_client_ca or not settings.tls_skip_verify_insecure
        self._cache = cache
        self._clock = clock
        url_id = hashlib.sha256(self._url.encode()).hexdigest()
        self._doc_key = f"jwks:{url_id}"
        self._cooldown_key = f"jwks-cooldown:{url_id}"
        self._session = requests.Session()

        # Written only under _flight; read without a lock (each read takes one reference).
        self._flight = threading.Lock()
        self._set: _KeySet | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._last_error_at: float | None = None
        self._quiet_until = 0.0
        self._fetch_seq = 0
        self._done_seq = 0

        self._due = math.inf
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    @classmethod
    def from_config(cls, context: PluginContext) -> JwksUrlProvider:
        """Fetch the set once; a failing URL is not a start-up error, a bad setting is."""
        jwt: JWTSettings = context.jwt
        if not jwt.jwk_set_url:
            raise KeyError_(f"[{context.section}] jwk_set_url: not set")
        if jwt.tls_client_ca and jwt.tls_skip_verify_insecure:
            raise KeyError_(
                f"[{context.section}] tls_skip_verify_insecure: "
                "cannot be true while tls_client_ca is set"
            )
        if jwt.jwk_set_timeout <= 0:
            raise KeyError_(
                f"[{context.section}] jwk_set_timeout: expected a duration above 0, like 10s"
            )
        cache = context.remote_cache
        if cache is None:
            cache = MemoryCache(context.clock)
        provider = cls(jwt, cache, context.clock)
        if jwt.tls_skip_verify_insecure:
            log.warning(
                "jwk_set_url %s: tls_skip_verify_insecure = true, its certificate is not verified",
                provider._display_url,
            )
        with provider._flight:
            # When our own fetch fails, another instance's last good set will do.
            if not provider._fetch_locked() and not provider._no_cache:
                provider._adopt_shared(fresh_only=False)
        if not provider._no_cache:
            provider._ensure_thread()
        return provider

    # ------------------------------------------------------------------ KeyProvider
    def get_key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid`` from memory; KeysUnavailable once no usable set is left.

        Called on every request: no I/O, except with cache_ttl = 0 where each lookup fetches.
        """
        if self._no_cache:
            return self._fetch_and_lookup(kid)
        keys = self._set
        now = self._clock()
        if now >= self._due:
            self._nudge()
        if keys is None or now >= keys.usable_until:
            raise KeysUnavailable(self._unavailable_reason(keys, now))
        return keys.keys.get(kid)

    def holds(self, key: VerificationKey) -> bool:
        """Memory only: is ``key`` still in a usable set (for verified-token cache hits)."""
        keys = self._set
        if keys is None or (not self._no_cache and self._clock() >= keys.usable_until):
            return False
        return keys.keys.get(key.kid) is key

    def refresh(self) -> None:
        """Fetch the set now, bypassing the cooldown; raises KeysUnavailable saying why not."""
        with self._flight:
            if self._fetch_locked():
                return
        raise KeysUnavailable(
            f"cannot fetch the key set from {self._display_url}: {self._last_error}"
        )

    # ------------------------------------------------------------------ optional abilities
    def on_unknown_kid(self, kid: str | None) -> VerificationKey | None:
        """After a miss: adopt the shared set, else fetch if the shared cooldown allows.

        Concurrent callers wait for the one fetch in flight and look again.
        """
        if self._no_cache:  # get_key has just fetched
            return self._peek(kid)
        if self._clock() < self._quiet_until:
            return self._peek(kid)
        ticket = self._fetch_seq
        with self._flight:
            key = self._peek(kid)
            if key is not None or self._done_seq > ticket or self._clock() < self._quiet_until:
                return key  # the fetch we waited for has answered, whatever it brought
            if self._adopt_shared(fresh_only=False):
                key = self._peek(kid)
                if key is not None:
                    return key
            if self._cooldown <= 0 or self._cache.add(self._cooldown_key, b"1", self._cooldown):
                log.info(
                    "jwk_set_url %s: kid %.64r is not in the key set, fetching it",
                    self._display_url,
                    kid,
                )
                self._fetch_locked()
                key = self._peek(kid)
                if key is not None:
                    return key
            self._quiet_until = self._clock() + min(self._cooldown, _MISS_QUIET)
            return None

    def kids(self) -> list[str | None]:
        keys = self._set
        return list(keys.keys) if keys is not None else []

    def health(self) -> KeyState:
        keys = self._set
        now = self._clock()
        if keys is None:
            return KeyState("failing", self._unavailable_reason(keys, now))
        if self._no_cache and not self._failures:
            return KeyState("ok")  # the next lookup fetches a fresh set
        if now >= keys.usable_until:
            return KeyState("failing", self._unavailable_reason(keys, now))
        # With cache_ttl = 0 every lookup fetches: the set is stale once a fetch failed.
        if not self._no_cache and now < keys.fetched_at + keys.ttl:
            return KeyState("ok")
        detail = (
            f"serving the key set fetched {describe_duration(now - keys.fetched_at)} ago "
            f"from {self._display_url}"
        )
        if self._failures:
            detail += f"; last error: {self._last_error}"
        return KeyState("stale", detail)

    def describe(self) -> dict[str, Any]:
        keys = self._set
        now = self._clock()
        return {
            "kind": "jwk_set_url",
            "url": self._display_url,
            "state": self.health().state,
            "keys": [
                {"kid": k.kid, "kty": k.kind, "algorithms": sorted(k.algorithms)}
                for k in (keys.keys.values() if keys is not None else ())
            ],
            "refused": list(keys.refused) if keys is not None else [],
            "last_fetch": _iso(keys.fetched_at) if keys is not None else None,
            "age": round(now - keys.fetched_at) if keys is not None else None,
            "ttl": keys.ttl if keys is not None else self._cache_ttl,
            "last_error": self._last_error or None,
            "last_error_at": _iso(self._last_error_at) if self._last_error_at else None,
        }

    def close(self) -> None:
        """Stop the refresher and release the HTTP connections."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._timeout + 1)
        self._session.close()

    # ------------------------------------------------------------------ lookups
    def _peek(self, kid: str | None) -> VerificationKey | None:
        keys = self._set
        if keys is None or self._clock() >= keys.usable_until:
            return None
        return keys.keys.get(kid)

    def _fetch_and_lookup(self, kid: str | None) -> VerificationKey | None:
        """cache_ttl = 0: fetch for this lookup, unless a failure's backoff is pending."""
        if not self._failures or self._clock() >= self._retry_at:
            ticket = self._fetch_seq
            with self._flight:
                # A fetch that began after we arrived is as good as our own.
                if self._done_seq <= ticket:
                    self._fetch_locked()
        keys = self._set
        now = self._clock()
        # The latest fetch succeeded: its set is current, whatever jwk_set_max_stale says.
        if keys is None or (self._failures and now >= keys.usable_until):
            raise KeysUnavailable(self._unavailable_reason(keys, now))
        return keys.keys.get(kid)

    def _unavailable_reason(self, keys: _KeySet | None, now: float) -> str:
        if keys is None:
            return f"cannot fetch the key set from {self._display_url}: {self._last_error}"
        return (
            f"the last good key set from {self._display_url} is "
            f"{describe_duration(now - keys.fetched_at)} old, past jwk_set_max_stale "
            f"({describe_duration(self._max_stale)}); last error: {self._last_error or 'none'}"
        )

    # ------------------------------------------------------------------ fetching (under _flight)
    def _fetch_locked(self) -> bool:
        """One fetch; installs and shares the set, or records why not. Caller holds _flight."""
        self._fetch_seq += 1
        seq = self._fetch_seq
        try:
            body, ttl, content_type = self._download()
            try:
                keys = self._build(body, self._clock(), ttl)
            except KeyError_ as exc:
                raise _FetchError(
                    f"the response is not a usable key set ({content_type or 'no Content-Type'}): "
                    f"{exc}"
                ) from None
        except _FetchError as exc:
            self._record_failure(str(exc))
            return False
        finally:
            self._done_seq = seq
        self._install(keys)
        if not self._no_cache:
            meta = json.dumps({"fetched_at": keys.fetched_at, "ttl": keys.ttl}).encode()
            self._cache.set(self._doc_key, meta + b"\n" + body, keys.usable_until - keys.fetched_at)
        return True

    def _download(self) -> tuple[bytes, float, str]:
        """GET the URL: the body (at most jwk_set_max_bytes), its TTL, its Content-Type."""
        headers = {"User-Agent": f"authsvc/{__version__}", "Accept": "application/json"}
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        deadline = time.monotonic() + self._timeout
        try:
            with self._session.get(
                self._url,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(
                        f"HTTP {response.status_code} {response.reason or ''}".strip()
                    )
                if self._url.startswith("https:") and not response.url.startswith("https:"):
                    raise _FetchError(
                        f"redirected from https to {_without_credentials(response.url)}"
                    )
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > self._max_bytes:
                    raise _FetchError(self._too_large())
                body = bytearray()
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _FetchError(self._too_large())
                    if time.monotonic() > deadline:
                        raise _FetchError(
                            "the response took longer than jwk_set_timeout "
                            f"({describe_duration(self._timeout)})"
                        )
                return (
                    bytes(body),
                    self._ttl(response.headers),
                    response.headers.get("Content-Type", ""),
                )
        except requests.Timeout:
            raise _FetchError(
                f"no answer within jwk_set_timeout ({describe_duration(self._timeout)})"
            ) from None
        except requests.exceptions.SSLError as exc:
            raise _FetchError(f"TLS error: {_root_cause(exc)}") from None
        except requests.ConnectionError as exc:
            raise _FetchError(f"connection failed: {_root_cause(exc)}") from None
        except requests.RequestException as exc:
            raise _FetchError(f"request failed: {_root_cause(exc)}") from None

    def _too_large(self) -> str:
        return f"the response is larger than jwk_set_max_bytes ({self._max_bytes} bytes)"

    def _authorization(self) -> str | None:
        """Re-read before every fetch: the token file is rotated under us (Kubernetes)."""
        if not self._token_file:
            return None
        try:
            token = Path(self._token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _FetchError(
                f"cannot read jwk_set_bearer_token_file {self._token_file}: {exc.strerror or exc}"
            ) from None
        if not token:
            raise _FetchError(f"jwk_set_bearer_token_file {self._token_file} is empty")
        return token if token[:7].lower() == "bearer " else f"Bearer {token}"

    def _ttl(self, headers: Mapping[str, str]) -> float:
        """cache_ttl, shortened by the response's Cache-Control max-age (less its Age)."""
        match = _MAX_AGE.search(headers.get("Cache-Control", ""))
        if not match:
            return self._cache_ttl
        age = headers.get("Age", "").strip()
        fresh = int(match[1]) - (int(age) if age.isdigit() else 0)
        return min(self._cache_ttl, max(float(fresh), _MIN_TTL))

    def _build(self, body: bytes, fetched_at: float, ttl: float) -> _KeySet:
        """Parse a JWKS; unchanged keys keep their identity, so verified tokens stay cached."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyError_(f"not JSON: {exc}") from None
        parsed = parse_key_set(document, self._algorithms)
        if not parsed.keys:
            raise KeyError_(
                "no usable key in the set"
                + (": " + "; ".join(parsed.refused) if parsed.refused else "")
            )
        published = {raw.get("kid"): raw for raw in document["keys"] if isinstance(raw, Mapping)}
        current = self._set
        keys: dict[str | None, VerificationKey] = {}
        for kid, key in parsed.keys.items():
            old = current.keys.get(kid) if current is not None else None
            same = (
                old is not None and current is not None and current.jwks.get(kid) == published[kid]
            )
            keys[kid] = old if same and old is not None else key
        return _KeySet(
            keys=keys,
            jwks={kid: published[kid] for kid in keys},
            refused=parsed.refused,
            digest=hashlib.sha256(body).hexdigest(),
            fetched_at=fetched_at,
            ttl=ttl,
            usable_until=fetched_at + max(ttl, self._max_stale),
        )

    def _install(self, keys: _KeySet) -> None:
        previous = self._set
        self._set = keys
        if self._failures:
            log.info("jwk_set_url %s: answers again", self._display_url)
        self._failures = 0
        self._retry_at = 0.0
        if previous is None or previous.digest != keys.digest:
            for line in keys.refused:
                log.warning("jwk_set_url %s: %s; key dropped", self._display_url, line)
            log.info(
                "jwk_set_url %s: key set holds %s",
                self._display_url,
                ", ".join(repr(k) for k in keys.keys),
            )

    def _record_failure(self, error: str) -> None:
        now = self._clock()
        self._failures += 1
        self._last_error = error
        self._last_error_at = now
        self._retry_at = now + min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** min(self._failures - 1, 16))
        keys = self._set
        serving = (
            f"serving the key set fetched {describe_duration(now - keys.fetched_at)} ago"
            if keys is not None and now < keys.usable_until
            else "no usable key set"
        )
        log.warning("jwk_set_url %s: fetch failed: %s; %s", self._display_url, error, serving)

    def _adopt_shared(self, *, fresh_only: bool) -> bool:
        """Take the set another instance fetched and shared, if it is newer than ours."""
        stored = self._cache.get(self._doc_key)
        if stored is None:
            return False
        meta_line, _, body = stored.partition(b"\n")
        try:
            meta = json.loads(meta_line)
            fetched_at, ttl = float(meta["fetched_at"]), float(meta["ttl"])
        except (ValueError, KeyError, TypeError):
            log.warning("remote cache: the shared key set of %s is unreadable", self._display_url)
            return False
        if fresh_only and self._clock() >= fetched_at + _REFRESH_AHEAD * ttl:
            return False
        current = self._set
        digest = hashlib.sha256(body).hexdigest()
        if current is not None:
            if fetched_at < current.fetched_at or (
                fetched_at == current.fetched_at and digest == current.digest
            ):
                return False
            if digest == current.digest:  # the same set, fetched again elsewhere
                self._install(
                    replace(
                        current,
                        fetched_at=fetched_at,
                        ttl=ttl,
                        usable_until=fetched_at + max(ttl, self._max_stale),
                    )
                )
                return True
        try:
            keys = self._build(body, fetched_at, ttl)
        except KeyError_ as exc:
            log.warning("remote cache: the shared key set of %s: %s", self._display_url, exc)
            return False
        self._install(keys)
        return True

    # ------------------------------------------------------------------ the refresher
    def _next_due(self) -> float:
        keys = self._set
        due = keys.fetched_at + _REFRESH_AHEAD * keys.ttl if keys is not None else -math.inf
        return max(due, self._retry_at) if self._failures else due

    def _nudge(self) -> None:
        """A request saw the refresh due: wake the refresher (restarting it after a fork)."""
        if self._wake.is_set() or self._stop.is_set():
            return
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"jwks-refresh {self._display_url}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            due = self._next_due()
            if now < due:
                self._due = due
                self._wake.wait(min(due - now, _MAX_SLEEP))
                self._wake.clear()
                continue
            self._due = math.inf
            try:
                with self._flight:
                    # A kid miss or another instance may have refreshed the set meanwhile.
                    if self._clock() >= self._next_due() and not self._adopt_shared(
                        fresh_only=True
                    ):
                        self._fetch_locked()
            except Exception as exc:  # the refresher must outlive any bug
                log.exception("jwk_set_url %s: refresh failed", self._display_url)
                with self._flight:
                    self._record_failure(f"internal error: {exc!r}")


def _without_credentials(url: str) -> str:
    """The URL as shown to people: no user:password, no query (it may carry a key)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests error, without urllib3's wrapping."""
    reason: BaseException = exc
    for _ in range(8):
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, BaseException):
            inner = (
                reason.args[0]
                if reason.args and isinstance(reason.args[0], BaseException)
                else None
            )
        if inner is None or inner is reason:
            break
        reason = inner
    return str(reason)[:300]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
