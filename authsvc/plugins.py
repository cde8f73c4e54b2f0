"""Plugin loading through entry points, with stevedore's semantics in a few lines.

One entry-point group per slot; the config names the one plugin to load and
only that one is imported. Our own plugins are registered in setup.cfg exactly
as a third party's would be. A name claimed by two distributions is refused
rather than resolved silently: the slot decides who gets in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from authsvc.config import JWTSettings, Settings
    from authsvc.db import ReadConnections
    from authsvc.metrics import Metrics
    from authsvc.remote_cache import RemoteCache

GROUPS = ("authsvc.key_providers", "authsvc.provisioners", "authsvc.session_stores")


class PluginError(Exception):
    """A plugin cannot be loaded: unknown, ambiguous or broken."""


def _candidates(group: str) -> dict[str, list[tuple[str, EntryPoint]]]:
    found: dict[str, list[tuple[str, EntryPoint]]] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "?"
        bucket = found.setdefault(ep.name, [])
        # The same distribution seen twice on sys.path (e.g. an editable install
        # beside a build directory) is one claim, not two.
        if not any(d == dist and e.value == ep.value for d, e in bucket):
            bucket.append((dist, ep))
    return found


def installed_plugins(group: str) -> list[str]:
    """Names registered in ``group``, without importing any of them."""
    return sorted(_candidates(group))


def load_plugin(group: str, name: str) -> Any:
    """Import and return the object registered as ``name`` in ``group``."""
    found = _candidates(group)
    claims = found.get(name)
    if not claims:
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no plugin {name!r} in {group} (installed: {installed})")
    if len(claims) > 1:
        who = " and ".join(f"{dist} ({ep.value})" for dist, ep in claims)
        raise PluginError(f"plugin {name!r} in {group} is registered by {who}: uninstall one")
    dist, ep = claims[0]
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(f"plugin {name!r} in {group} from {dist} failed to load: {exc}") from exc


@dataclass(frozen=True)
class PluginContext:
    """What the app hands a plugin's ``from_config``: settings, shared services, and the slot.

    ``issuer`` names the issuer whose slot a key provider or provisioner fills;
    its own settings are ``jwt`` and its raw options (a third party's own keys
    included) ``options``, so every plugin blames its section precisely.
    """

    settings: Settings
    db: sessionmaker[Session] | None = None
    remote_cache: RemoteCache | None = None
    """State shared by every instance."""
    clock: Callable[[], float] = time.time
    issuer: str = "jwt"
    metrics: Metrics | None = None
    """The app's metrics: plugins may count what they do (JWKS fetches, say)."""
    reads: ReadConnections | None = None
    """Per-thread read connections to the service's database (the hot-path reads)."""

    @property
    def jwt(self) -> JWTSettings:
        """The issuer's own settings (``[auth.jwt]`` or ``[auth.jwt.NAME]``)."""
        return self.settings.issuers[self.issuer]

    @property
    def section(self) -> str:
        return self.jwt.section

    @property
    def options(self) -> Mapping[str, str]:
        """The issuer section's final string values, keys unknown to authsvc included."""
        return self.settings.raw.get(self.section, {})

    def problem(self, key: str, why: str) -> str:
        """``conf/custom.ini [auth.jwt.corp] key: why``: for the KeyError_ (or ValueError) a
        plugin raises when ``key`` of its section is unusable."""
        return self.settings.problem(self.section, key, why)


class StartupError(Exception):
    """The service cannot start; the message says why in one line."""


def build_plugin(group: str, name: str, context: PluginContext, protocol: type) -> Any:
    """Load the configured plugin of a slot and build it; a bad configuration stops start-up."""
    factory = load_plugin(group, name)
    try:
        plugin = factory.from_config(context)
    except (ValueError, OSError) as exc:  # KeyError_ is a ValueError
        raise StartupError(str(exc)) from exc
    if not isinstance(plugin, protocol):
        raise PluginError(f"plugin {name!r} in {group} does not implement {protocol.__name__}")
    return plugin
