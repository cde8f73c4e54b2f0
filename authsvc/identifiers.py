"""What a login, email, subject or group name may be, and when two of them are one.

CONTRACT §7: what a proxy and an upstream are told must name exactly one
account. So identifiers are clean or refused — no control characters (C0,
C1, DEL), no Unicode format characters (category Cf: zero-width spaces,
bidi overrides), no lone surrogates, no surrounding whitespace, at most 255
characters — and two identifiers are the same when their NFKC case-folds
are equal (``alice``/``Alice``, ``Éve``/``éve``, fullwidth ``bob``/``bob``).
"""

from __future__ import annotations

import hashlib
import unicodedata

MAX_LENGTH = 255
_REFUSED_CATEGORIES = {"Cc": "a control character", "Cf": "a format character"}


def problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier, or None when it can.

    Called on every request for each identifier a token carries: the common
    case (printable, trimmed, short) is decided by three C-speed checks.
    """
    if len(value) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters ({len(value)})"
    if not value:
        return "is empty"
    if value.isprintable():
        # Printable excludes Cc, Cf, Cs and every separator but the ASCII space.
        if value[0] == " " or value[-1] == " ":
            return "has leading or trailing whitespace"
        return None
    for char in value:
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            return f"holds {_REFUSED_CATEGORIES[category]} (U+{ord(char):04X})"
        if category == "Cs":
            return f"holds a lone surrogate (U+{ord(char):04X})"
    if value[0].isspace() or value[-1].isspace():
        return "has leading or trailing whitespace"
    return None  # interior separators (a no-break space, say) are characters like any other


def display_name(value: str) -> str:
    """A display name with what an identifier may not hold removed, cut to 255 characters."""
    if not value.isprintable():
        value = "".join(
            c for c in value if c.isprintable() or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
        )
    return value.strip()[:MAX_LENGTH]


def fold(value: str) -> str:
    """The NFKC case-fold of ``value``: equal for identifiers that name one account."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def unique_key(value: str) -> str:
    """What the database's unique index holds for an identifier: a hash of its fold.

    A hash, not the fold itself: NFKC can expand a 255-character login many
    times over, past what a unique index entry may hold.
    """
    return hashlib.sha256(fold(value).encode("utf-8", "surrogatepass")).hexdigest()
