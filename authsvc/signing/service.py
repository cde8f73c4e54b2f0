"""``SigningService``: every signing key, the upstream assertion and the outbound assertions.

Built once by ``create_app`` and kept on the Service; ``check-config`` builds
the same key rings (without watching their files), so what ``serve`` would
refuse, ``check-config`` refuses, blamed as ``FILE [SECTION] KEY: why``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from authsvc.config import Settings, SigningKeySettings
from authsvc.plugins import StartupError
from authsvc.signing.assertions import OutboundAssertion, UpstreamAssertions
from authsvc.signing.keys import KeyRing, SigningKeyError


class SigningService:
    """What authsvc signs with. ``ring`` is ``[signing]``'s: None when signing is off
    (no JWKS, no upstream assertion; an ``[assertion.NAME]`` may still have its own key)."""

    def __init__(
        self,
        *,
        issuer: str,
        root_url: str,
        ring: KeyRing | None,
        upstream: UpstreamAssertions | None,
        assertions: Mapping[str, OutboundAssertion],
        rings: list[KeyRing],
    ) -> None:
        self.issuer = issuer
        self.root_url = root_url
        self.ring = ring
        self.upstream = upstream
        self.assertions = dict(assertions)
        self._rings = rings

    @classmethod
    def build(
        cls, settings: Settings, clock: Callable[[], float] = time.time, *, watch: bool = True
    ) -> SigningService:
        """Every configured key read and checked; StartupError listing each refusal."""
        rings, problems = _rings(settings, watch=watch)
        if problems:
            for ring in rings.values():
                ring.close()
            raise StartupError("; ".join(problems))
        signing = rings.get(None)
        upstream = None
        if settings.upstream_assertion.enabled and signing is not None:
            upstream = UpstreamAssertions(
                settings.upstream_assertion, settings.signing.issuer, signing, clock
            )
        # Without a ring of its own, an assertion signs with [signing]'s (the configuration
        # refused one that has neither).
        assertions = {
            name: OutboundAssertion(a, rings.get(name) or rings[None], clock)
            for name, a in settings.assertions.items()
        }
        return cls(
            issuer=settings.signing.issuer,
            root_url=settings.server.root_url,
            ring=signing,
            upstream=upstream,
            assertions=assertions,
            rings=list(rings.values()),
        )

    def problems(self) -> list[str]:
        """Re-read key files that were refused (their previous keys still sign): /api/health."""
        return [f"{ring.section}: {ring.problem}" for ring in self._rings if ring.problem]

    def describe(self) -> list[dict[str, Any]]:
        """Each key ring as /api/admin/keys shows it."""
        return [ring.describe() for ring in self._rings]

    def close(self) -> None:
        for ring in self._rings:
            ring.close()


def _rings(settings: Settings, *, watch: bool) -> tuple[dict[str | None, KeyRing], list[str]]:
    """Key rings by owner — None for ``[signing]``, NAME for an assertion with a key of its
    own — and every problem, blamed where the operator set the value.

    An assertion that overrides nothing shares ``[signing]``'s ring.
    """
    rings: dict[str | None, KeyRing] = {}
    problems: list[str] = []

    def build(spec: SigningKeySettings, previous: tuple[str, ...], section: str) -> KeyRing | None:
        try:
            return KeyRing(spec, previous, section=section, watch=watch)
        except SigningKeyError as exc:
            where = spec.blame.get(exc.key, section)
            problems.append(settings.problem(where, exc.key, exc.why))
            return None

    signing = settings.signing
    if signing.enabled:
        ring = build(signing.key, signing.previous_key_files, "signing")
        if ring is not None:
            rings[None] = ring
    for name, assertion in settings.assertions.items():
        if not assertion.key.key_file:
            continue  # the configuration reported it already
        if signing.enabled and assertion.key == signing.key:
            continue  # shares [signing]'s ring (or its problem)
        ring = build(assertion.key, (), assertion.section)
        if ring is not None:
            rings[name] = ring
    return rings, list(dict.fromkeys(problems))


def signing_problems(settings: Settings) -> list[str]:
    """``check-config``: every signing key built as ``serve`` builds it; each refusal."""
    rings, problems = _rings(settings, watch=False)
    for ring in rings.values():
        ring.close()
    return problems


def build_assertion(settings: Settings, name: str) -> OutboundAssertion:
    """``authsvc assertion mint NAME``: that assertion alone, its key read, no file watched."""
    assertion = settings.assertions.get(name)
    if assertion is None:
        configured = ", ".join(settings.assertions) or "none"
        raise ValueError(f"no [assertion.{name}] section (configured: {configured})")
    try:
        ring = KeyRing(assertion.key, section=assertion.section, watch=False)
    except SigningKeyError as exc:
        where = assertion.key.blame.get(exc.key, assertion.section)
        raise StartupError(settings.problem(where, exc.key, exc.why)) from None
    return OutboundAssertion(assertion, ring, time.time)
