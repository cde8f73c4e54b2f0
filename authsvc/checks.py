"""What ``check-config`` checks beyond the configuration's text: the key material.

Every enabled issuer's key source is built exactly as ``serve`` builds it —
the same plugins, the same key policy — so what ``serve`` would refuse,
``check-config`` refuses, blamed as ``FILE [SECTION] KEY: why``. Keys behind
URLs (``jwk_set_url``, discovery) are fetched only with ``online``; a URL that
fails is then a problem too, though ``serve`` would start and keep retrying.
Signing keys (``[signing]``, ``[assertion.NAME]``) are local files: always built.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authsvc.config import Settings
from authsvc.issuers import hmac_only, indistinguishable
from authsvc.keys.base import KeyHealth, KeyProvider
from authsvc.plugins import PluginContext, PluginError, StartupError, build_plugin
from authsvc.remote_cache import MemoryCache
from authsvc.signing import signing_problems

REMOTE_PROVIDERS = frozenset({"jwk_set_url"})


def check_keys(settings: Settings, *, online: bool = False) -> tuple[list[str], list[str]]:
    """(problems, notes): every key-material problem, and what was not checked and why."""
    problems: list[str] = []
    notes: list[str] = []
    routed = []
    clock: Callable[[], float] = time.time
    for name, jwt in settings.issuers.items():
        if not jwt.enabled:
            continue
        if jwt.key_provider in REMOTE_PROVIDERS and not online:
            notes.append(f"[{jwt.section}] keys come from a URL: not fetched (--online fetches)")
            routed.append((jwt, False))
            continue
        context = PluginContext(settings, remote_cache=MemoryCache(clock), clock=clock, issuer=name)
        try:
            keys: KeyProvider = build_plugin(
                "authsvc.key_providers", jwt.key_provider, context, KeyProvider
            )
        except (StartupError, PluginError) as exc:
            problems.append(str(exc))
            continue
        try:
            routed.append((jwt, hmac_only(jwt, keys)))
            state = keys.health() if isinstance(keys, KeyHealth) else None
            if state is not None and state.state == "failing":
                key = "issuer" if jwt.oidc_discovery else "jwk_set_url"
                problems.append(settings.problem(jwt.section, key, state.detail))
        finally:
            close = getattr(keys, "close", None)
            if callable(close):
                close()
    why = indistinguishable(routed)
    if why is not None:
        problems.append(why)
    problems.extend(signing_problems(settings))
    return problems, notes
