"""``jwk_set_url`` (and ``oidc_discovery``): key sets fetched over HTTP(S), kept fresh, merged.

Each URL is a ``UrlSource`` (``url_source.py``): fetched at start-up, shared
through the remote cache, refreshed ahead of expiry, backed off and kept
last-good on its own. This provider merges their sets into one view — the
union — rebuilt whenever a source installs a set or fails and when a set
passes ``jwk_set_max_stale``, never per request: ``get_key`` reads that view
from memory (except with ``cache_ttl = 0``, Grafana's "no caching", where
every lookup fetches).

A kid that two URLs serve with different keys resolves to no key: trusting
either would let one URL's operator shadow the other's key. The same key
served twice is one key. A token naming an unknown kid may force one fetch per
source and ``jwk_set_refresh_cooldown``, gated through the remote cache so
that all instances share the cooldown, and in one flight per process.

With ``oidc_discovery = true`` the one source is the configured ``issuer``,
read through its discovery document (see ``url_source.py``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OctKey

from authsvc.config import JWTSettings
from authsvc.errors import InvalidToken, KeysUnavailable
from authsvc.keys.base import KeyError_, KeyState, VerificationKey, describe_keys, key_label
from authsvc.keys.url_source import UrlSource, iso
from authsvc.plugins import PluginContext
from authsvc.remote_cache import MemoryCache, RemoteCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _MergedView:
    """The union of the sources' usable sets, as get_key reads it; replaced whole."""

    keys: Mapping[str | None, VerificationKey]
    conflicts: Mapping[str | None, str]
    """Kids refused because two URLs serve different keys under them, with the reason."""
    refused: tuple[str, ...]
    """What the merge refused (conflicting kids, oct keys among asymmetric ones)."""
    usable: bool
    """Some source has a usable set; False means KeysUnavailable."""
    valid_until: float
    """The first moment a merged set passes jwk_set_max_stale: the view is rebuilt then."""


class JwksUrlProvider:
    """Keys from ``jwk_set_url`` (one URL or several) or ``oidc_discovery``: KeyProvider,
    KeyPresence, KeyHealth, KeyIds, UnknownKidRefresh and KeyDescription."""

    def __init__(
        self,
        settings: JWTSettings,
        cache: RemoteCache,
        clock: Callable[[], float] = time.time,
        on_fetch: Callable[[bool], object] | None = None,
    ) -> None:
        self._issuer = settings.name
        self._discovery = settings.oidc_discovery
        self._kind = "oidc_discovery" if self._discovery else "jwk_set_url"
        self._label = f"{self._kind}[{settings.name}]"
        self._cache_ttl = settings.cache_ttl
        self._no_cache = settings.cache_ttl <= 0
        self._clock = clock
        self._merge_lock = threading.Lock()
        self._view = _MergedView({}, {}, (), usable=False, valid_until=math.inf)
        urls = settings.issuer[:1] if self._discovery else settings.jwk_set_url
        self._sources = tuple(
            UrlSource(
                url,
                settings,
                cache,
                clock,
                self._merge,
                discovery=self._discovery,
                on_fetch=on_fetch,
            )
            for url in urls
        )

    @classmethod
    def from_config(cls, context: PluginContext) -> JwksUrlProvider:
        """Fetch every source once; a failing URL is not a start-up error, a bad setting is."""
        jwt: JWTSettings = context.jwt
        if jwt.oidc_discovery:
            if len(jwt.issuer) != 1:
                raise KeyError_(
                    context.problem("issuer", "oidc_discovery = true needs exactly one issuer URL")
                )
            if jwt.jwk_set_url:
                raise KeyError_(context.problem("jwk_set_url", "must be empty with oidc_discovery"))
        elif not jwt.jwk_set_url:
            raise KeyError_(context.problem("jwk_set_url", "not set"))
        if jwt.tls_client_ca and jwt.tls_skip_verify_insecure:
            raise KeyError_(
                context.problem(
                    "tls_skip_verify_insecure", "cannot be true while tls_client_ca is set"
                )
            )
        if jwt.jwk_set_timeout <= 0:
            raise KeyError_(
                context.problem("jwk_set_timeout", "expected a duration above 0, like 10s")
            )
        cache = context.remote_cache
        if cache is None:
            cache = MemoryCache(context.clock)
        metrics = context.metrics
        provider = cls(
            jwt,
            cache,
            context.clock,
            on_fetch=None if metrics is None else lambda ok: metrics.jwks_fetched(jwt.name, ok),
        )
        if jwt.tls_skip_verify_insecure:
            for source in provider._sources:
                log.warning(
                    "%s: tls_skip_verify_insecure = true, its certificate is not verified",
                    source.label,
                )
        provider._start()
        return provider

    def _start(self) -> None:
        """The first fetch of every source, side by side: start-up waits for the slowest only."""
        if len(self._sources) == 1:
            self._sources[0].start()
            return
        threads = [
            threading.Thread(target=s.start, name=f"jwks-first-fetch {s.label}", daemon=True)
            for s in self._sources
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # ------------------------------------------------------------------ KeyProvider
    def get_key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid`` from the merged view; KeysUnavailable once no source has a
        usable set.

        Called on every request: no I/O, except with cache_ttl = 0 where each lookup fetches.
        """
        if self._no_cache:
            return self._fetch_and_lookup(kid)
        now = self._clock()
        for source in self._sources:
            source.nudge_if_due(now)
        view = self._view
        if now >= view.valid_until or not view.usable:
            # Also when unusable: a source may have installed a set a moment ago, its
            # re-merge still on the way (the failure path only; a usable view is read as is).
            view = self._merge()
        if not view.usable:
            raise KeysUnavailable(self._unavailable_reason(now))
        return view.keys.get(kid)

    def holds(self, key: VerificationKey) -> bool:
        """Memory only: is ``key`` still in the merged view (for verified-token cache hits)."""
        view = self._current_view()
        return view.usable and view.keys.get(key.kid) is key

    def refresh(self) -> None:
        """Fetch every source now, bypassing the cooldown; KeysUnavailable names each failure."""
        failed = [source for source in self._sources if not source.refresh()]
        if failed:
            raise KeysUnavailable(
                "; ".join(
                    f"cannot fetch the key set from {s.display_url}: {s.last_error[0]}"
                    for s in failed
                )
            )

    # ------------------------------------------------------------------ optional abilities
    def on_unknown_kid(self, kid: str | None) -> VerificationKey | None:
        """After a miss: each source in turn adopts the shared set or fetches, under its
        cooldown, until one brings the kid.

        A kid that two URLs serve with different keys raises InvalidToken naming both, so
        that the 401's reason says why the token's key is refused.
        """
        key = self._peek(kid)
        if key is None and not self._no_cache:  # with cache_ttl = 0 get_key has just fetched
            for source in self._sources:
                key = source.on_unknown_kid(kid, self._peek)
                if key is not None:
                    break
        if key is None:
            conflict = self._current_view().conflicts.get(kid)
            if conflict is not None:
                raise InvalidToken(conflict)
        return key

    def kids(self) -> list[str | None]:
        return list(self._current_view().keys)

    def health(self) -> KeyState:
        """``ok``; ``stale`` while some source serves its last good set or has none (the
        others serving); ``failing`` when no source has a usable set."""
        now = self._clock()
        if len(self._sources) == 1:
            return self._sources[0].health(now)
        if not self._current_view().usable:
            return KeyState("failing", self._unavailable_reason(now))
        troubled = [state.detail for s in self._sources if (state := s.health(now)).state != "ok"]
        if troubled:
            return KeyState("stale", "; ".join(troubled))
        return KeyState("ok")

    def describe(self) -> dict[str, Any]:
        """What /api/admin/keys shows.

        One source: its own fields (``url``, ``keys``, ``refused``, ``last_fetch``, ``age``,
        ``ttl``, ``last_error``, ``last_error_at``, and with discovery ``discovery`` and
        ``jwks_uri``). Several: each source's fields under ``fetches``, and at the top
        ``url`` as configured (space-separated), ``keys`` the merged set, ``refused`` every
        source's refusals (prefixed by its URL) and the merge's, ``last_fetch``/``age`` of
        the oldest set in use, ``ttl`` the shortest, ``last_error``/``last_error_at`` the
        latest error of any source (prefixed by its URL).
        """
        now = self._clock()
        head: dict[str, Any] = {
            "kind": self._kind,
            "issuer": self._issuer,
            "urls": [s.display_url for s in self._sources],
            "state": self.health().state,
        }
        if len(self._sources) == 1:
            own = self._sources[0].describe(now)
            own.pop("state")
            return {**head, **own}
        view = self._current_view()
        fetches = [s.describe(now) for s in self._sources]
        sets = [s.key_set for s in self._sources if s.key_set is not None]
        oldest = min((k.fetched_at for k in sets), default=None)
        errors: list[tuple[float, str]] = []
        for source in self._sources:
            error, at = source.last_error
            if error and at is not None:
                errors.append((at, f"{source.display_url}: {error}"))
        latest = max(errors, default=None)
        return {
            **head,
            "url": " ".join(head["urls"]),
            "keys": describe_keys(view.keys.values()),
            "refused": [
                f"{s.display_url}: {line}"
                for s in self._sources
                for line in (s.key_set.refused if s.key_set is not None else ())
            ]
            + list(view.refused),
            "last_fetch": iso(oldest) if oldest is not None else None,
            "age": round(now - oldest) if oldest is not None else None,
            "ttl": min((k.ttl for k in sets), default=self._cache_ttl),
            "last_error": latest[1] if latest else None,
            "last_error_at": iso(latest[0]) if latest else None,
            "fetches": fetches,
        }

    def close(self) -> None:
        """Stop the refreshers and release the HTTP connections."""
        for source in self._sources:
            source.close()

    # ------------------------------------------------------------------ the merged view
    def _current_view(self) -> _MergedView:
        view = self._view
        if self._clock() >= view.valid_until:
            view = self._merge()
        return view

    def _peek(self, kid: str | None) -> VerificationKey | None:
        view = self._current_view()
        return view.keys.get(kid) if view.usable else None

    def _merge(self) -> _MergedView:
        """Rebuild the union of the usable sets. Memory only; rare (a set changed or expired)."""
        with self._merge_lock:
            now = self._clock()
            previous = self._view
            served: dict[str | None, list[tuple[UrlSource, VerificationKey]]] = {}
            usable = False
            valid_until = math.inf
            for source in self._sources:
                key_set, until = source.key_set, source.usable_until()
                if key_set is None or now >= until:
                    continue
                usable = True
                valid_until = min(valid_until, until)
                for kid, key in key_set.keys.items():
                    served.setdefault(kid, []).append((source, key))
            keys: dict[str | None, VerificationKey] = {}
            conflicts: dict[str | None, str] = {}
            for kid, offers in served.items():
                first = offers[0][1]
                why = next((w for _, other in offers[1:] if (w := _differs(first, other))), "")
                if why:
                    urls = " and ".join(source.display_url for source, _ in offers)
                    name = f"kid {kid!r}" if kid is not None else "the key without kid"
                    conflicts[kid] = f"{name} is served by {urls} with {why}; refused"
                else:
                    keys[kid] = first
            refused = list(conflicts.values())
            # One URL's oct keys beside another's asymmetric ones would be a mixed set.
            if len({isinstance(k.key, OctKey) for k in keys.values()}) > 1:
                for kid in [kid for kid, k in keys.items() if isinstance(k.key, OctKey)]:
                    del keys[kid]
                    refused.append(
                        f"{key_label(kid)}: a symmetric (oct) key beside asymmetric keys of "
                        "another URL; refused"
                    )
            view = _MergedView(keys, conflicts, tuple(refused), usable, valid_until)
            for line in refused:
                if line not in previous.refused:
                    log.warning("%s: %s", self._label, line)
            self._view = view
            return view

    def _fetch_and_lookup(self, kid: str | None) -> VerificationKey | None:
        """cache_ttl = 0: every source fetches for this lookup (each unless backing off)."""
        for source in self._sources:
            source.fetch_for_lookup()
        view = self._current_view()
        if not view.usable:
            raise KeysUnavailable(self._unavailable_reason(self._clock()))
        return view.keys.get(kid)

    def _unavailable_reason(self, now: float) -> str:
        reasons = [source.unavailable_reason(now) for source in self._sources]
        if len(reasons) == 1:
            return reasons[0]
        return "no URL of jwk_set_url has a usable key set: " + "; ".join(reasons)


def _differs(a: VerificationKey, b: VerificationKey) -> str:
    """Why two keys under one kid are not the same key ("" when they are)."""
    if a is b:
        return ""
    if a.key.thumbprint() != b.key.thumbprint():
        return "different keys"
    if a.algorithms != b.algorithms:
        return "different algorithms for the same key"
    return ""
