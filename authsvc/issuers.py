"""Issuers: the trust sources a token may come from, each with its own keys and rules.

``[auth.jwt]`` is the issuer named ``jwt``. Each enabled issuer is built once
at start-up — its key provider, verifier, claims mapper and provisioner — and
kept on the service (never in a module global).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OctKey

from authsvc.config import JWTSettings, Settings
from authsvc.errors import InvalidToken
from authsvc.identity import ClaimsMapper
from authsvc.keys.base import KeyDescription, KeyHealth, KeyIds, KeyProvider, KeyState
from authsvc.metrics import Metrics
from authsvc.plugins import PluginContext, StartupError, build_plugin
from authsvc.provisioning.base import UserProvisioner
from authsvc.remote_cache import RemoteCache
from authsvc.users import SyncPolicy, auth_module
from authsvc.verifier import MAX_TOKEN_BYTES, Verifier


@dataclass(frozen=True, eq=False)
class Issuer:
    """One enabled issuer and everything built for it."""

    name: str
    settings: JWTSettings
    keys: KeyProvider
    verifier: Verifier
    mapper: ClaimsMapper
    provisioner: UserProvisioner
    policy: SyncPolicy
    hmac_only: bool = False
    """Verifies HS* tokens only (``hmac_secret``, or a configured set of ``oct`` keys):
    routing tells it from an issuer with asymmetric keys by the token's ``alg``."""

    @property
    def auth_module(self) -> str:
        """``authjwt`` for ``[auth.jwt]``, ``authjwt.NAME`` for a named issuer."""
        return auth_module(self.name)

    def health(self) -> KeyState:
        if isinstance(self.keys, KeyHealth):
            return self.keys.health()
        return KeyState("ok")

    def describe(self) -> dict[str, Any]:
        """What /api/admin/keys shows of this issuer's key source."""
        described = (
            self.keys.describe() if isinstance(self.keys, KeyDescription) else {"kind": "unknown"}
        )
        described["issuer"] = self.name
        described["health"] = self.health().state
        return described

    def close(self) -> None:
        close = getattr(self.keys, "close", None)
        if callable(close):
            close()


def build_issuer(
    settings: Settings,
    name: str,
    *,
    db: Any,
    remote_cache: RemoteCache | None,
    clock: Callable[[], float],
    metrics: Metrics | None = None,
) -> Issuer:
    jwt = settings.issuers[name]
    context = PluginContext(
        settings, db=db, remote_cache=remote_cache, clock=clock, issuer=name, metrics=metrics
    )
    keys = build_plugin("authsvc.key_providers", jwt.key_provider, context, KeyProvider)
    try:
        provisioner = build_plugin(
            "authsvc.provisioners", jwt.user_provisioner, context, UserProvisioner
        )
    except Exception:
        close = getattr(keys, "close", None)
        if callable(close):
            close()
        raise
    return Issuer(
        hmac_only=hmac_only(jwt, keys),
        name=name,
        settings=jwt,
        keys=keys,
        verifier=Verifier(
            jwt,
            keys,
            clock=clock,
            on_cache=(
                (metrics.cache_hit.one, metrics.cache_miss.one)
                if metrics is not None and metrics.counting
                else None
            ),
        ),
        mapper=ClaimsMapper(jwt, settings.users.auto_assign_role),
        provisioner=provisioner,
        policy=SyncPolicy(
            skip_role_sync=jwt.skip_role_sync,
            allow_assign_server_admin=jwt.allow_assign_server_admin,
            link_existing_users=jwt.link_existing_users,
        ),
    )


def hmac_only(jwt: JWTSettings, keys: KeyProvider) -> bool:
    """Does the issuer verify HS* tokens only (routing's alg family)?"""
    if jwt.hmac_secret:
        return True
    if not (jwt.jwk_set_file or jwt.jwk_set_value) or not isinstance(keys, KeyIds):
        return False  # a fetched set may change; it counts as asymmetric
    found = [keys.get_key(kid) for kid in keys.kids()]
    return bool(found) and all(k is not None and isinstance(k.key, OctKey) for k in found)


def route(token: str, candidates: Sequence[Issuer]) -> Issuer:
    """CONTRACT §4's routing among the issuers whose header carried the token.

    Unverified data only *chooses*: the token's ``iss`` picks the issuers that
    list it (else those listing none), then its ``alg`` family picks between an
    HMAC-only issuer and an asymmetric one. The chosen issuer alone verifies it.
    """
    return _route(token, candidates, explain=False)[0]


def route_explained(token: str, candidates: Sequence[Issuer]) -> tuple[Issuer, str]:
    """``route``, and why it chose that issuer (for ``token inspect``)."""
    return _route(token, candidates, explain=True)


def _route(token: str, candidates: Sequence[Issuer], *, explain: bool) -> tuple[Issuer, str]:
    # The explanation is only built for the doctor: on every request it would cost
    # more than the routing itself.
    remaining = list(candidates)
    iss: object = None
    why = ["the only issuer that takes it"]
    if any(c.settings.issuer for c in remaining):
        iss = _unverified(token, 1).get("iss")
        listed = [c for c in remaining if isinstance(iss, str) and iss in c.settings.issuer]
        remaining = listed or [c for c in remaining if not c.settings.issuer]
        if explain:
            shown = f"'{_printable(iss)}'" if isinstance(iss, str) else "(none)"
            why = [
                f"its issuer list holds the token's iss {shown}"
                if listed
                else f"no issuer lists the token's iss {shown}, and it lists none"
            ]
    if len(remaining) > 1:
        alg = _unverified(token, 0).get("alg")
        hmac = isinstance(alg, str) and alg.startswith("HS")
        remaining = [c for c in remaining if c.hmac_only == hmac]
        if explain:
            shown = _printable(alg) if isinstance(alg, str) else "(none)"
            kind = "HMAC issuer" if hmac else "issuer with asymmetric keys"
            why.append(f"alg {shown} picks the {kind}")
    if len(remaining) == 1:
        return remaining[0], "; ".join(why)
    names = ", ".join(c.name for c in candidates)
    if not remaining:
        if iss is None:
            iss = _unverified(token, 1).get("iss")
        shown = f"'{_printable(iss)}'" if isinstance(iss, str) else "(none)"
        raise InvalidToken(f"issuer {shown} is not trusted here (issuers: {names})")
    raise InvalidToken(
        f"the token fits several issuers ({', '.join(c.name for c in remaining)}); "
        "give them issuer lists that tell them apart"
    )


def _unverified(token: str, index: int) -> dict[str, Any]:
    """Segment ``index`` of a compact token as JSON, for routing only: {} when it is not."""
    if len(token) > MAX_TOKEN_BYTES:
        return {}
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    segment = parts[index].rstrip("=")
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:200])


def indistinguishable(issuers: Sequence[tuple[JWTSettings, bool]]) -> str | None:
    """Why two issuers sharing a header cannot be told apart by routing, or None.

    ``issuers`` are (settings, HMAC-only) pairs. Start-up refuses such a pair:
    steps 3 and 4 of the routing could not choose between them.
    """
    for i, (a, a_hmac) in enumerate(issuers):
        for b, b_hmac in issuers[i + 1 :]:
            if a.header_name.lower() != b.header_name.lower():
                continue
            shared = set(a.issuer) & set(b.issuer)
            if shared:
                why = f"both accept issuer {sorted(shared)[0]!r}"
            elif a.issuer or b.issuer or a_hmac != b_hmac:
                continue
            else:
                kind = "HMAC" if a_hmac else "asymmetric"
                why = f"neither sets issuer and both have {kind} keys"
            return (
                f"issuers {a.name!r} ([{a.section}]) and {b.name!r} ([{b.section}]) both read "
                f"header {a.header_name} and cannot be told apart: {why}"
            )
    return None


class Issuers:
    """The enabled issuers, in configuration order."""

    def __init__(self, issuers: Sequence[Issuer]) -> None:
        self._issuers = tuple(issuers)
        self._by_name = {i.name: i for i in self._issuers}
        why = indistinguishable([(i.settings, i.hmac_only) for i in self._issuers])
        if why is not None:
            raise StartupError(why)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        db: Any = None,
        remote_cache: RemoteCache | None = None,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> Issuers:
        built: list[Issuer] = []
        try:
            for name, jwt in settings.issuers.items():
                if jwt.enabled:
                    built.append(
                        build_issuer(
                            settings,
                            name,
                            db=db,
                            remote_cache=remote_cache,
                            clock=clock,
                            metrics=metrics,
                        )
                    )
            return cls(built)
        except Exception:
            for issuer in built:
                issuer.close()
            raise

    def __iter__(self) -> Iterator[Issuer]:
        return iter(self._issuers)

    def __len__(self) -> int:
        return len(self._issuers)

    def get(self, name: str) -> Issuer | None:
        return self._by_name.get(name)

    def close(self) -> None:
        for issuer in self._issuers:
            issuer.close()
