"""Plugin loading through entry points, with stevedore's semantics in a few lines.

One entry-point group per slot; the config names the one plugin to load and
only that one is imported. Our own plugins are registered in setup.cfg exactly
as a third party's would be. A name claimed by two distributions is refused
rather than resolved silently: the slot decides who gets in.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

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


class PluginContext:
    """What the app hands a plugin's ``from_config``: settings and shared services.

    Kept small on purpose; a plugin reads its own options from
    ``settings.raw`` (its own section) or from the typed settings.
    """

    def __init__(
        self, settings: Any, db: Any = None, remote_cache: Any = None, clock: Any = None
    ) -> None:
        import time

        self.settings = settings
        self.db = db
        self.remote_cache = remote_cache
        """authsvc.remote_cache.RemoteCache: state shared by every instance."""
        self.clock = clock or time.time
