"""Issuers: the trust sources a token may come from, each with its own keys and rules.

``[auth.jwt]`` is the issuer named ``jwt``. Each enabled issuer is built once
at start-up — its key provider, verifier, claims mapper and provisioner — and
kept on the service (never in a module global).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from authsvc.config import JWTSettings, Settings
from authsvc.identity import ClaimsMapper
from authsvc.keys.base import KeyDescription, KeyHealth, KeyProvider, KeyState
from authsvc.plugins import PluginContext, build_plugin
from authsvc.provisioning.base import UserProvisioner
from authsvc.remote_cache import RemoteCache
from authsvc.users import SyncPolicy, auth_module
from authsvc.verifier import Verifier


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
) -> Issuer:
    jwt = settings.issuers[name]
    context = PluginContext(settings, db=db, remote_cache=remote_cache, clock=clock, issuer=name)
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
        name=name,
        settings=jwt,
        keys=keys,
        verifier=Verifier(jwt, keys, clock=clock),
        mapper=ClaimsMapper(jwt, settings.users.auto_assign_role),
        provisioner=provisioner,
        policy=SyncPolicy(
            skip_role_sync=jwt.skip_role_sync,
            allow_assign_server_admin=jwt.allow_assign_server_admin,
            link_existing_users=jwt.link_existing_users,
        ),
    )


class Issuers:
    """The enabled issuers, in configuration order."""

    def __init__(self, issuers: Sequence[Issuer]) -> None:
        self._issuers = tuple(issuers)
        self._by_name = {i.name: i for i in self._issuers}

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        db: Any = None,
        remote_cache: RemoteCache | None = None,
        clock: Callable[[], float],
    ) -> Issuers:
        built: list[Issuer] = []
        try:
            for name, jwt in settings.issuers.items():
                if jwt.enabled:
                    built.append(
                        build_issuer(settings, name, db=db, remote_cache=remote_cache, clock=clock)
                    )
        except Exception:
            for issuer in built:
                issuer.close()
            raise
        return cls(built)

    def __iter__(self) -> Iterator[Issuer]:
        return iter(self._issuers)

    def __len__(self) -> int:
        return len(self._issuers)

    def get(self, name: str) -> Issuer | None:
        return self._by_name.get(name)

    def close(self) -> None:
        for issuer in self._issuers:
            issuer.close()
