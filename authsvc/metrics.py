"""Prometheus metrics: one view of the whole service, whatever ``[server] workers`` is.

Under ``authsvc serve`` every worker writes its counters and histograms to
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode, set by ``serve`` before the workers start), and a scrape — whichever
worker answers it — adds them all up: counters never jump between workers'
values. Without that directory (tests, ``create_app`` in a script) each app
counts in a registry of its own. The JWKS gauges are read live from the
answering worker's issuers at scrape time.

Envoy's ``jwt_authn`` statistics are the model: authentications by issuer
and result, JWKS fetches, verified-token cache hits and misses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SESSION_EVENTS = ("created", "rotated", "revoked", "expired")


class Metrics:
    """The collectors of one app; the increments the rest of the service calls.

    ``counting=False`` (``[metrics] enabled = false``): every increment is a no-op,
    so an operator who does not scrape pays nothing for the counters, and the
    bench can show what they cost.
    """

    def __init__(self, counting: bool = True) -> None:
        self.counting = counting
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "authsvc_http_requests_total", "HTTP requests by route and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.auth = Counter(
            "authsvc_auth_total",
            "Authentications by issuer and result (ok, or the refusal's messageId)",
            ["issuer", "result"],
            registry=r,
        )
        self.jwks_fetches = Counter(
            "authsvc_jwks_fetch_total",
            "JWKS (and discovery) fetches by issuer and result (ok or error)",
            ["issuer", "result"],
            registry=r,
        )
        self.verified_cache = Counter(
            "authsvc_verified_cache_total",
            "Verified-token cache lookups by result (hit or miss)",
            ["result"],
            registry=r,
        )
        self.sessions = Counter(
            "authsvc_sessions_total",
            "Session events: created, rotated, revoked, expired",
            ["event"],
            registry=r,
        )
        self.signups = Counter(
            "authsvc_signups_total", "Users created on first login, by issuer", ["issuer"],
            registry=r,
        )  # fmt: skip
        # Label children found once: labels() takes a lock on every call.
        self._children: dict[tuple[str, ...], Any] = {}
        self.cache_hit = self.verified_cache.labels("hit")
        self.cache_miss = self.verified_cache.labels("miss")
        self._session_events = {event: self.sessions.labels(event) for event in SESSION_EVENTS}
        self._gauges: list[Collector] = []

    def _child(self, counter: Counter, *labels: str) -> Any:
        key = (counter._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def authenticated(self, issuer: str, result: str) -> None:
        if self.counting:
            self._child(self.auth, issuer or "none", result).inc()

    def jwks_fetched(self, issuer: str, ok: bool) -> None:
        if self.counting:
            self._child(self.jwks_fetches, issuer, "ok" if ok else "error").inc()

    def session(self, event: str, count: int = 1) -> None:
        if count and self.counting:
            self._session_events[event].inc(count)

    def signed_up(self, issuer: str) -> None:
        if self.counting:
            self._child(self.signups, issuer).inc()

    def add_gauges(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Gauges read at scrape time (the JWKS ones): in every view, multiprocess or not."""
        collector = _Live(collect)
        self._gauges.append(collector)
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The text a scrape gets: the whole service's counters, this worker's live gauges."""
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        for collector in self._gauges:
            registry.register(collector)
        return generate_latest(registry)


class _Live(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def jwks_gauges(described: Iterable[tuple[str, dict[str, Any]]]) -> list[Metric]:
    """``authsvc_jwks_keys{issuer}`` and ``authsvc_jwks_age_seconds{issuer}`` from each
    issuer's /api/admin/keys description (age only for fetched key sets)."""
    keys = GaugeMetricFamily("authsvc_jwks_keys", "Usable keys per issuer", labels=["issuer"])
    age = GaugeMetricFamily(
        "authsvc_jwks_age_seconds",
        "Seconds since the issuer's key set was last fetched",
        labels=["issuer"],
    )
    for issuer, description in described:
        keys.add_metric([issuer], len(description.get("keys") or ()))
        if description.get("age") is not None:
            age.add_metric([issuer], float(description["age"]))
    return [keys, age]
