"""One place a ``jwk_set_url`` key set is fetched from: a URL, or an issuer's OpenID discovery.

Each source is fetched, shared, refreshed, backed off, kept last-good and
reported on its own, so that one failing URL of several never holds the
others back; ``JwksUrlProvider`` (``jwks_url.py``) merges what they hold.

A source's refresher thread fetches ahead of the set's expiry; while the
source fails it retries with exponential backoff capped at 30 s, and its last
good set keeps serving until ``jwk_set_max_stale`` after its last successful
fetch. Nothing but a 200 whose body is a usable key set replaces the set:
error pages, HTML, invalid JSON and oversized bodies are recorded as the last
error and never cached. Every accepted document is stored in the remote
cache under keys namespaced by issuer, where the other instances pick it up
before fetching themselves.

A body starting with ``-----BEGIN`` is a PEM public key or certificate: a
one-key set whose kid is ``key_id`` (identity providers that publish a
"public key URL" rather than a JWKS).

With OpenID discovery the source first reads
``ISSUER/.well-known/openid-configuration`` (OpenID Connect Discovery §4:
appended to the issuer, path kept), whose ``issuer`` member must equal the
configured issuer exactly, then the key set at its ``jwks_uri``; both are
re-read on every refresh, so a provider that moves its keys is followed.
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
from authsvc.config import JWTSettings, is_loopback
from authsvc.durations import describe_duration
from authsvc.keys.base import (
    KeyError_,
    KeyState,
    VerificationKey,
    allowed_algorithms,
    describe_keys,
    key_label,
)
from authsvc.keys.jwks import parse_key_set
from authsvc.keys.pem import load_pem_key
from authsvc.remote_cache import RemoteCache

# One logger for the whole jwk_set_url key source, whichever module logs.
log = logging.getLogger("authsvc.keys.jwks_url")

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
_PEM = b"-----BEGIN"
DISCOVERY_PATH = "/.well-known/openid-configuration"

KeyLookup = Callable[[str | None], VerificationKey | None]


@dataclass(frozen=True)
class KeySet:
    """One accepted key set; replaced whole, never changed in place."""

    keys: Mapping[str | None, VerificationKey]
    published: Mapping[str | None, Any]
    """Each key as published (JWK object, or the PEM's digest), to keep its identity across
    refreshes: an unchanged key stays the same object, so verified tokens stay cached."""
    refused: tuple[str, ...]
    digest: str
    fetched_at: float
    ttl: float
    usable_until: float
    jwks_uri: str
    """Where the keys were read: the URL itself, or the ``jwks_uri`` discovery named."""


class _FetchError(Exception):
    """A fetch that produced no usable key set; the message says why."""


class UrlSource:
    """One URL of ``jwk_set_url`` (or the issuer URL with ``oidc_discovery``) and its key set.

    ``on_change`` is called (without any lock of ours held but this source's flight) whenever
    the source installs a set or records a failure, so the provider can re-merge in time.
    """

    def __init__(
        self,
        url: str,
        settings: JWTSettings,
        cache: RemoteCache,
        clock: Callable[[], float],
        on_change: Callable[[], object],
        *,
        discovery: bool = False,
        on_fetch: Callable[[bool], object] | None = None,
    ) -> None:
        """``on_fetch(ok)`` is told of every fetch's outcome (authsvc_jwks_fetch_total)."""
        self.url = url
        self.discovery = discovery
        self.display_url = without_credentials(url)
        # OpenID Connect Discovery §4: the well-known path is appended to the issuer as given.
        self.document_url = (url[:-1] if url.endswith("/") else url) + DISCOVERY_PATH
        kind = "oidc_discovery" if discovery else "jwk_set_url"
        self.label = f"{kind}[{settings.name}] {self.display_url}"
        """How log lines name this source: the key source, the issuer, the URL."""
        self._issuer_name = settings.name
        self._algorithms = settings.algorithms
        self._key_id = settings.key_id or None
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
        self._on_change = on_change
        self._on_fetch = on_fetch or (lambda ok: None)
        # Namespaced by issuer: two issuers naming the same URL share nothing by accident
        # (their algorithms, cooldowns and key_id may differ).
        url_id = _digest(url.encode())
        prefix = "oidc" if discovery else "jwks"
        self._doc_key = f"{prefix}:{settings.name}:{url_id}"
        self._cooldown_key = f"{prefix}-cooldown:{settings.name}:{url_id}"
        self._session = requests.Session()

        # Written only under _flight; read without a lock (each read takes one reference).
        self._flight = threading.Lock()
        self._set: KeySet | None = None
        self._jwks_uri: str | None = None if discovery else url
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

    # ------------------------------------------------------------------ what the provider reads
    @property
    def key_set(self) -> KeySet | None:
        return self._set

    def usable_until(self) -> float:
        """Until when this source's set may serve: -inf without one.

        With cache_ttl = 0 a set whose latest fetch succeeded is current whatever
        jwk_set_max_stale says (every lookup fetches again).
        """
        keys = self._set
        if keys is None:
            return -math.inf
        if self._no_cache and not self._failures:
            return math.inf
        return keys.usable_until

    def start(self) -> None:
        """The first fetch; a failing URL is not a start-up error. Never raises."""
        try:
            with self._flight:
                # When our own fetch fails, another instance's last good set will do.
                if not self._fetch_locked() and not self._no_cache:
                    self._adopt_shared(fresh_only=False)
        except Exception as exc:  # a bug must not stop start-up: it shows as this source failing
            log.exception("%s: first fetch failed", self.label)
            with self._flight:
                self._record_failure(f"internal error: {exc!r}")
        if not self._no_cache:
            self._ensure_thread()

    def refresh(self) -> bool:
        """Fetch now, bypassing the cooldown; False (and the last error says why) on failure."""
        with self._flight:
            return self._fetch_locked()

    def nudge_if_due(self, now: float) -> None:
        """Called on every request: wakes the refresher once the refresh is due. Memory only."""
        if now >= self._due:
            self._nudge()

    def fetch_for_lookup(self) -> None:
        """cache_ttl = 0: fetch for this lookup, unless a failure's backoff is pending."""
        if self._failures and self._clock() < self._retry_at:
            return
        ticket = self._fetch_seq
        with self._flight:
            # A fetch that began after we arrived is as good as our own.
            if self._done_seq <= ticket:
                self._fetch_locked()

    def on_unknown_kid(self, kid: str | None, lookup: KeyLookup) -> VerificationKey | None:
        """After a miss: adopt the shared set, else fetch if the shared cooldown allows.

        ``lookup`` reads the provider's merged view (a kid may come from another source).
        Concurrent callers wait for the one fetch in flight and look again.
        """
        if self._clock() < self._quiet_until:
            return lookup(kid)
        ticket = self._fetch_seq
        with self._flight:
            key = lookup(kid)
            if key is not None or self._done_seq > ticket or self._clock() < self._quiet_until:
                return key  # the fetch we waited for has answered, whatever it brought
            if self._adopt_shared(fresh_only=False):
                key = lookup(kid)
                if key is not None:
                    return key
            if self._cooldown <= 0 or self._cache.add(self._cooldown_key, b"1", self._cooldown):
                log.info("%s: kid %.64r is not in the key set, fetching it", self.label, kid)
                self._fetch_locked()
                key = lookup(kid)
                if key is not None:
                    return key
            self._quiet_until = self._clock() + min(self._cooldown, _MISS_QUIET)
            return None

    def health(self, now: float) -> KeyState:
        keys = self._set
        if keys is None:
            return KeyState("failing", self.unavailable_reason(now))
        if self._no_cache and not self._failures:
            return KeyState("ok")  # the next lookup fetches a fresh set
        if now >= keys.usable_until:
            return KeyState("failing", self.unavailable_reason(now))
        # With cache_ttl = 0 every lookup fetches: the set is stale once a fetch failed.
        if not self._no_cache and now < keys.fetched_at + keys.ttl:
            return KeyState("ok")
        detail = (
            f"serving the key set fetched {describe_duration(now - keys.fetched_at)} ago "
            f"from {self.display_url}"
        )
        if self._failures:
            detail += f"; last error: {self._last_error}"
        return KeyState("stale", detail)

    def unavailable_reason(self, now: float) -> str:
        keys = self._set
        if keys is None:
            return f"cannot fetch the key set from {self.display_url}: {self._last_error}"
        return (
            f"the last good key set from {self.display_url} is "
            f"{describe_duration(now - keys.fetched_at)} old, past jwk_set_max_stale "
            f"({describe_duration(self._max_stale)}); last error: {self._last_error or 'none'}"
        )

    @property
    def last_error(self) -> tuple[str, float | None]:
        return self._last_error, self._last_error_at

    def describe(self, now: float) -> dict[str, Any]:
        """This source's part of /api/admin/keys: its own keys, fetch times and errors."""
        keys = self._set
        described: dict[str, Any] = {
            "url": self.display_url,
            "state": self.health(now).state,
            "keys": describe_keys(keys.keys.values() if keys is not None else ()),
            "refused": list(keys.refused) if keys is not None else [],
            "last_fetch": iso(keys.fetched_at) if keys is not None else None,
            "age": round(now - keys.fetched_at) if keys is not None else None,
            "ttl": keys.ttl if keys is not None else self._cache_ttl,
            "last_error": self._last_error or None,
            "last_error_at": iso(self._last_error_at) if self._last_error_at else None,
        }
        if self.discovery:
            described["discovery"] = without_credentials(self.document_url)
            described["jwks_uri"] = without_credentials(self._jwks_uri) if self._jwks_uri else None
        return described

    def close(self) -> None:
        """Stop the refresher and release the HTTP connections."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * self._timeout + 1)
        self._session.close()

    # ------------------------------------------------------------------ fetching (under _flight)
    def _fetch_locked(self) -> bool:
        """One fetch; installs and shares the set, or records why not. Caller holds _flight."""
        self._fetch_seq += 1
        seq = self._fetch_seq
        try:
            document: bytes | None = None
            ttl = self._cache_ttl
            if self.discovery:
                document, ttl, _ = self._download(self.document_url, "discovery document")
                jwks_uri = self._jwks_uri = self._jwks_uri_from(document)
            else:
                jwks_uri = self.url
            stage = "jwks_uri" if self.discovery else ""
            # The bearer token goes where it was configured for: the URL, or the issuer's
            # origin; a document naming another host must not collect it.
            body, jwks_ttl, content_type = self._download(
                jwks_uri, stage, authorized=_origin(jwks_uri) == _origin(self.document_url)
            )
            try:
                keys = self._build(body, self._clock(), min(ttl, jwks_ttl), jwks_uri)
            except KeyError_ as exc:
                raise _FetchError(
                    self._in_stage(
                        stage,
                        jwks_uri,
                        f"the response is not a usable key set "
                        f"({content_type or 'no Content-Type'}): {exc}",
                    )
                ) from None
        except _FetchError as exc:
            self._on_fetch(False)
            self._record_failure(str(exc))
            return False
        finally:
            self._done_seq = seq
        self._on_fetch(True)
        self._install(keys)
        if not self._no_cache:
            meta = json.dumps({"fetched_at": keys.fetched_at, "ttl": keys.ttl}).encode()
            lifetime = keys.usable_until - keys.fetched_at
            if document is not None:
                self._cache.set(self._doc_key, meta + b"\n" + document, lifetime)
            self._cache.set(self._jwks_key(jwks_uri), meta + b"\n" + body, lifetime)
        return True

    def _jwks_key(self, jwks_uri: str) -> str:
        """The shared key set's cache key: the URL's own (a discovered jwks_uri is a URL too)."""
        return f"jwks:{self._issuer_name}:{_digest(jwks_uri.encode())}"

    def _in_stage(self, stage: str, url: str, error: str) -> str:
        """With discovery, say which of the two documents failed."""
        return f"{stage} {without_credentials(url)}: {error}" if stage else error

    def _download(
        self, url: str, stage: str, *, authorized: bool = True
    ) -> tuple[bytes, float, str]:
        """GET ``url``: the body (at most jwk_set_max_bytes), its TTL, its Content-Type."""
        try:
            return self._get(url, authorized)
        except _FetchError as exc:
            raise _FetchError(self._in_stage(stage, url, str(exc))) from None

    def _get(self, url: str, authorized: bool) -> tuple[bytes, float, str]:
        headers = {"User-Agent": f"authsvc/{__version__}", "Accept": "application/json"}
        authorization = self._authorization() if authorized else None
        if authorization:
            headers["Authorization"] = authorization
        deadline = time.monotonic() + self._timeout
        try:
            with self._session.get(
                url, headers=headers, timeout=self._timeout, verify=self._verify, stream=True
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(
                        f"HTTP {response.status_code} {response.reason or ''}".strip()
                    )
                if url.startswith("https:") and not response.url.startswith("https:"):
                    raise _FetchError(
                        f"redirected from https to {without_credentials(response.url)}"
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

    def _jwks_uri_from(self, document: bytes) -> str:
        """The discovery document's ``jwks_uri``, once its ``issuer`` is exactly ours."""
        stage = f"discovery document {without_credentials(self.document_url)}"
        try:
            parsed = json.loads(document)
        except (ValueError, RecursionError) as exc:
            raise _FetchError(f"{stage}: not JSON: {_short(exc)}") from None
        if not isinstance(parsed, dict):
            raise _FetchError(f"{stage}: not a JSON object")
        issuer = parsed.get("issuer")
        if issuer != self.url:
            # A document for another issuer would let its keys sign for ours (OIDC Discovery §4.3).
            shown = _show(issuer) if "issuer" in parsed else "missing"
            raise _FetchError(
                f"{stage}: its issuer {shown} is not the configured issuer {self.url!r} "
                "(they must be equal exactly)"
            )
        uri = parsed.get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            raise _FetchError(f"{stage}: no jwks_uri (expected a URL string)")
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise _FetchError(f"{stage}: jwks_uri {_show(uri)} is not an https:// URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise _FetchError(
                f"{stage}: jwks_uri {without_credentials(uri)} must be https:// "
                f"(http only to a loopback host, not {parts.hostname})"
            )
        return uri

    def _build(self, body: bytes, fetched_at: float, ttl: float, jwks_uri: str) -> KeySet:
        """Parse a JWKS, or a PEM key or certificate; unchanged keys keep their identity."""
        published: dict[str | None, Any]
        if body.lstrip().startswith(_PEM):
            kid = self._key_id
            key = self._pem_key(body, kid)
            parsed_keys = {kid: key}
            published = {kid: _digest(body)}
            refused: tuple[str, ...] = ()
        else:
            try:
                document = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise KeyError_(f"not JSON: {_short(exc)}") from None
            parsed = parse_key_set(document, self._algorithms)
            # Keys the allow-list leaves unusable are dropped and named, like refused ones
            # (CONTRACT §6: a warning; only a set left with no key is a failure).
            dropped = parsed.refused + parsed.skipped
            if not parsed.keys:
                raise KeyError_(
                    "no usable key in the set" + (": " + "; ".join(dropped) if dropped else "")
                )
            parsed_keys = dict(parsed.keys)
            published = {
                raw.get("kid"): raw for raw in document["keys"] if isinstance(raw, Mapping)
            }
            refused = dropped
        current = self._set
        keys: dict[str | None, VerificationKey] = {}
        for kid, new in parsed_keys.items():
            old = current.keys.get(kid) if current is not None else None
            same = (
                old is not None
                and current is not None
                and current.published.get(kid) == (published[kid])
            )
            keys[kid] = old if same and old is not None else new
        return KeySet(
            keys=keys,
            published={kid: published[kid] for kid in keys},
            refused=refused,
            digest=_digest(body),
            fetched_at=fetched_at,
            ttl=ttl,
            usable_until=fetched_at + max(ttl, self._max_stale),
            jwks_uri=jwks_uri,
        )

    def _pem_key(self, body: bytes, kid: str | None) -> VerificationKey:
        """A PEM public key or certificate at a URL: a one-key set, under the key policy."""
        label = key_label(kid)
        if b"PRIVATE KEY-----" in body:
            raise KeyError_(f"{label}: is a private key; publish the public key")
        try:
            key = load_pem_key(body, kid)
        except KeyError_ as exc:
            raise KeyError_(f"{label}: {exc}") from None
        return VerificationKey(kid, key, allowed_algorithms(key, kid, self._algorithms))

    def _install(self, keys: KeySet) -> None:
        previous = self._set
        self._set = keys
        if self._failures:
            log.info("%s: answers again", self.label)
        self._failures = 0
        self._retry_at = 0.0
        if previous is None or previous.digest != keys.digest:
            for line in keys.refused:
                log.warning("%s: %s; key dropped", self.label, line)
            log.info(
                "%s: key set holds %s", self.label, ", ".join(repr(k) for k in keys.keys) or "none"
            )
        self._on_change()

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
        log.warning("%s: fetch failed: %s; %s", self.label, error, serving)
        self._on_change()

    def _read_shared(self, cache_key: str) -> tuple[float, float, bytes] | None:
        """A document another instance shared: (fetched_at, ttl, body), or None."""
        stored = self._cache.get(cache_key)
        if stored is None:
            return None
        meta_line, _, body = stored.partition(b"\n")
        try:
            meta = json.loads(meta_line)
            return float(meta["fetched_at"]), float(meta["ttl"]), body
        except (ValueError, KeyError, TypeError):
            log.warning("remote cache: %s: the shared key set is unreadable", self.label)
            return None

    def _adopt_shared(self, *, fresh_only: bool) -> bool:
        """Take the set another instance fetched and shared, if it is newer than ours."""
        jwks_uri = self.url
        if self.discovery:
            shared_document = self._read_shared(self._doc_key)
            if shared_document is None:
                return False
            try:  # checked as if just fetched: the shared document is no more trusted
                jwks_uri = self._jwks_uri_from(shared_document[2])
            except _FetchError as exc:
                log.warning("remote cache: %s: %s", self.label, exc)
                return False
        shared = self._read_shared(self._jwks_key(jwks_uri))
        if shared is None:
            return False
        fetched_at, ttl, body = shared
        if fresh_only and self._clock() >= fetched_at + _REFRESH_AHEAD * ttl:
            return False
        current = self._set
        digest = _digest(body)
        if current is not None:
            if fetched_at < current.fetched_at or (
                fetched_at == current.fetched_at and digest == current.digest
            ):
                return False
            if digest == current.digest and jwks_uri == current.jwks_uri:
                # The same set, fetched again elsewhere.
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
            keys = self._build(body, fetched_at, ttl, jwks_uri)
        except KeyError_ as exc:
            log.warning("remote cache: %s: the shared key set: %s", self.label, exc)
            return False
        self._install(keys)
        self._jwks_uri = jwks_uri
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
                target=self._run, name=f"jwks-refresh {self.label}", daemon=True
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
                log.exception("%s: refresh failed", self.label)
                with self._flight:
                    self._record_failure(f"internal error: {exc!r}")


def without_credentials(url: str) -> str:
    """The URL as shown to people: no user:password, no query (it may carry a key)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _show(value: Any) -> str:
    """A value from a fetched document, in a reason: quoted, printable, bounded."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


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
