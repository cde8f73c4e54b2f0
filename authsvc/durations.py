"""Durations as operators write them (``30s``, ``10m``, ``1h30m``) and as reasons say them.

Shared by the configuration (reading), the verifier, the key providers and
the session rules (describing): none of them imports another for it.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``6h``, ``7d``, ``2w`` (or sums like ``1h30m``) → seconds; ``0`` is 0."""
    t = text.strip()
    if t == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNIT_SECONDS[m[2]]
        pos = m.end()
    if pos == 0 or pos != len(t):
        raise ValueError("expected a duration like 30s, 10m, 6h, 7d or 2w (or 0)")
    return total


def describe_duration(seconds: float) -> str:
    """``3m12s``-style durations for reasons a person reads."""
    s = int(abs(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    if s or not parts:
        parts.append(f"{s}s")
    return "".join(parts)
