"""Hostile tokens against the whole service: CONTRACT §3 and §7, property-based.

Tokens are correctly signed with a real ES256 key (kid ``hostile``) around
claims sets and JOSE headers built from every JSON type and many hostile
strings, numbers and shapes: control, format and zero-width characters, lone
surrogates, NUL, NBSP, huge and negative numbers, ``1e308`` and ``-0.0``,
very long strings, nesting hundreds of levels deep, duplicate member names
(also spelled with escapes), and forged or unsigned tokens. Each token goes
to ``GET /api/auth/verify``, ``POST /api/login/jwt``, ``GET /api/user`` and
``/api/auth/verify`` again (the verified-token fast path), and the answers are
held to the contract:

- the status is 200, 401, 403 or 409, never a 5xx (the app propagates
  exceptions under test: an exception is a 500 in production); the four
  endpoints agree, since a JWT resolves its user exactly as a login does;
- every error has the contract's body and a known messageId of its status,
  a 401 a RFC 6750 ``WWW-Authenticate``; no answer carries the raw token;
- every 200 names the account the database holds: the user JSON and the
  ``X-Auth-*`` headers equal the stored row (as exact strings), the token's
  ``sub`` is linked to that row, and across the run no two accounts are
  presented with one login or email (NFKC case-fold) -- unless the first
  was renamed away from it by a later token of its own, which Grafana's
  sync allows;
- where the contract decides (identifiers, dates, ``typ``, ``crit``, kid,
  duplicate members, signatures, missing ``sub``/login), a token is refused
  with 401 and the right messageId; a clean token is accepted, or refused
  with a 409 that the database justifies;
- at the end the database holds clean identifiers, unique by NFKC case-fold.

Generated tokens come in four kinds (mostly valid with a few hostile
members, fully random, duplicate members, forged); ``KNOWN_FAULTS`` adds one
token per defect class §7 names, checked on every run whatever the
generator reaches. Everything runs on SQLite, and (marker ``postgres``) on
PostgreSQL with a quarter of the examples.

Profiles: ``ci`` (default; fixed seed, bounded) and ``long``
(``AUTHSVC_HYPOTHESIS=long``, a local soak, random seed). Each test builds
one app, so its database persists across the examples of the run; a
failure can depend on that state, which is why the verdict on a refused
token is one assertion whatever came instead (200 or 409).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from flask import Flask
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from sqlalchemy import func, select
from tokens import NOW, FakeClock, b64u, forge

from authsvc.models import AuthLink, Session, User

# ------------------------------------------------------------------------------------ settings
_SUPPRESSED = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]
settings.register_profile(
    "ci",
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "long",
    max_examples=20_000,
    derandomize=False,
    deadline=None,
    database=None,
    suppress_health_check=_SUPPRESSED,
    print_blob=True,
)
PROFILE = settings.get_profile(os.environ.get("AUTHSVC_HYPOTHESIS", "ci"))


def profile(share: float) -> settings:
    """The selected profile with ``share`` of its examples (at least 10)."""
    return settings(PROFILE, max_examples=max(10, int(PROFILE.max_examples * share)))


# ------------------------------------------------------------------------------------ the app
HEADER = "X-JWT-Assertion"
KID = "hostile"
LEEWAY = 60
TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
JWT_SETTINGS = {
    "enabled": "true",
    "header_name": HEADER,
    "auto_sign_up": "true",
    "username_claim": "login",
    "email_claim": "email",
    "groups_attribute_path": "groups",
    "role_attribute_path": "role",
}
ENDPOINTS = (
    ("GET", "/api/auth/verify"),
    ("POST", "/api/login/jwt"),
    ("GET", "/api/user"),
    ("GET", "/api/auth/verify"),  # now a verified token: the forward-auth fast path
)
USER_KEYS = {"id", "login", "email", "name", "role", "isServerAdmin", "groups", "authModule"}
ERROR_KEYS = {"message", "messageId", "statusCode", "reason"}
MESSAGE_STATUS = {
    "auth.unauthorized": 401,
    "jwt.invalid": 401,
    "jwt.missing_claim": 401,
    "jwt.invalid_role": 403,
    "jwt.keys_unavailable": 503,
    "user.sync.signup-disabled": 401,
    "user.sync.conflict": 409,
    "identity.disabled": 401,
    "session.invalid": 401,
    "auth.forbidden": 403,
    "api.not_found": 404,
    "api.method_not_allowed": 405,
    "internal": 500,
    "service.unavailable": 503,
    "api.bad_request": 400,
}
ALLOWED_STATUSES = {200, 401, 403, 409}
INVALID, MISSING = "jwt.invalid", "jwt.missing_claim"
# RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
WWW_AUTHENTICATE = re.compile(
    r'Bearer error="invalid_token", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
)
# nginx's default 4 KiB proxy buffer: X-Auth-* together stay within 3 KiB (CONTRACT §7).
HEADER_BUDGET = 3 * 1024
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class Keys:
    signer: ECKey
    other: ECKey
    jwks_file: Path
    jwks_text: bytes
    public_pem: bytes


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    signer = ECKey.generate_key("P-256")
    public = {**signer.as_dict(private=False), "kid": KID, "alg": "ES256", "use": "sig"}
    text = json.dumps({"keys": [public]}).encode()
    path = tmp_path_factory.mktemp("hostile") / "jwks.json"
    path.write_bytes(text)
    return Keys(signer, ECKey.generate_key("P-256"), path, text, signer.as_pem(private=False))


def build_app(make_app: Callable[..., Flask], keys: Keys, **sections: dict[str, str]) -> Flask:
    jwt = {**JWT_SETTINGS, "jwk_set_file": str(keys.jwks_file)}
    return make_app({"auth.jwt": jwt, **sections}, clock=FakeClock(NOW))


# ------------------------------------------------------------------------------------ JSON text
def shorten(text: str, limit: int = 2000) -> str:
    """``text``, or its head and tail around a note of what was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...<{len(text) - limit} more characters>...{text[-limit // 2 :]}"


class _Opaque:
    def __repr__(self) -> str:
        return "OPAQUE"


OPAQUE: Any = _Opaque()
"""The value of a fragment the oracle does not read (too deep, or holding one that is)."""


@dataclass(frozen=True, repr=False)
class J:
    """A JSON fragment as sent (``text``), with what the oracle needs to know about it.

    ``text`` is a str; on the wire it is UTF-8 with ``surrogatepass``, so a raw
    lone surrogate in it makes the token invalid UTF-8 (``invalid``).
    """

    text: str
    kind: str  # null bool int float str list dict
    value: Any = OPAQUE
    depth: int = 0
    members: tuple[tuple[str, str, J], ...] = ()
    """An object's members in order: (name, name as spelled, value)."""
    top_dup: bool = False
    """A member name appears twice in this object."""
    nested_dup: bool = False
    """A member name appears twice in an object inside this one."""
    exotic: bool = False
    """Where RFC 8259 lets a parser set limits (size, depth, range) or leaves it undefined."""
    invalid: bool = False
    """Not JSON text at all (NaN, leading zeros, raw control characters, bad UTF-8)."""

    def __repr__(self) -> str:
        return f"J({shorten(self.text)!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How Hypothesis shows a falsifying example: the text alone."""
        printer.text(repr(self))

    def get(self, name: str) -> J | None:
        found = [value for member, _, value in self.members if member == name]
        return found[-1] if found else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def leaf(value: Any) -> J:
    """A scalar, spelled by ``json.dumps(..., ensure_ascii=True)`` (so ``\\ud800`` survives)."""
    exotic = False
    if isinstance(value, int) and not isinstance(value, bool):
        exotic = abs(value) > 2**53
    elif isinstance(value, str):
        exotic = len(value) > 1024 or _has_surrogate(value)
    return J(json.dumps(value, ensure_ascii=True), _kind(value), value, exotic=exotic)


def spell(name: str, style: int) -> str:
    """A JSON string for ``name``: escaped ASCII, raw UTF-8, or each unit as ``\\uXXXX``."""
    if style == 0:
        return json.dumps(name, ensure_ascii=True)
    if style == 1:
        return json.dumps(name, ensure_ascii=False)
    units = name.encode("utf-16-le", "surrogatepass")
    return (
        '"' + "".join(f"\\u{units[i + 1]:02x}{units[i]:02x}" for i in range(0, len(units), 2)) + '"'
    )


def string(value: str, style: int = 0) -> J:
    base = leaf(value)
    return J(
        spell(value, style),
        "str",
        value,
        exotic=base.exotic,
        invalid=style == 1 and _has_surrogate(value),
    )


def arr(items: Sequence[J]) -> J:
    known = all(i.value is not OPAQUE for i in items)
    depth = 1 + max((i.depth for i in items), default=0)
    return J(
        "[" + ",".join(i.text for i in items) + "]",
        "list",
        [i.value for i in items] if known else OPAQUE,
        depth,
        nested_dup=any(i.top_dup or i.nested_dup for i in items),
        exotic=depth > 8 or len(items) > 100 or any(i.exotic for i in items),
        invalid=any(i.invalid for i in items),
    )


def obj(members: Iterable[tuple[str, str, J]]) -> J:
    members = tuple(members)
    names = [name for name, _, _ in members]
    values = [value for _, _, value in members]
    top_dup = len(set(names)) != len(names)
    known = not top_dup and all(v.value is not OPAQUE for v in values)
    depth = 1 + max((v.depth for v in values), default=0)
    return J(
        "{" + ",".join(f"{spelled}:{v.text}" for _, spelled, v in members) + "}",
        "dict",
        {n: v.value for n, _, v in members} if known else OPAQUE,
        depth,
        members,
        top_dup=top_dup,
        nested_dup=any(v.top_dup or v.nested_dup for v in values),
        exotic=depth > 8
        or len(members) > 100
        or any(v.exotic for v in values)
        or any(leaf(name).exotic for name in names),
        # A raw (style 1) lone surrogate in a name is not UTF-8 on the wire.
        invalid=any(v.invalid for v in values)
        or any(_has_surrogate(spelled) for _, spelled, _ in members),
    )


def plain(**members: J) -> list[tuple[str, str, J]]:
    return [(name, spell(name, 0), value) for name, value in members.items()]


def deep(depth: int, shape: str, inner: J) -> J:
    """``inner`` nested ``depth`` levels deep, built as text (no recursion anywhere here)."""
    opens = {"list": ["["], "dict": ['{"a":'], "mixed": ["[", '{"a":']}[shape]
    pieces = [opens[i % len(opens)] for i in range(depth)]
    closes = "".join("]" if p == "[" else "}" for p in reversed(pieces))
    return J(
        "".join(pieces) + inner.text + closes,
        "list" if pieces[0] == "[" else "dict",
        OPAQUE,
        depth + inner.depth,
        nested_dup=inner.top_dup or inner.nested_dup,
        exotic=True,
        invalid=inner.invalid,
    )


def wide(count: int, inner: J) -> J:
    """An array of ``count`` copies of ``inner``."""
    return J(
        "[" + ",".join([inner.text] * count) + "]",
        "list",
        OPAQUE,
        inner.depth + 1,
        nested_dup=inner.top_dup or inner.nested_dup,
        exotic=True,
        invalid=inner.invalid,
    )


LITERALS = (
    J("NaN", "float", invalid=True),
    J("Infinity", "float", invalid=True),
    J("-Infinity", "float", invalid=True),
    J("1e999", "float", math.inf, exotic=True),
    J("-1e999", "float", -math.inf, exotic=True),
    J("1" + "0" * 5000, "int", 10**5000, exotic=True),
    J("-" + "9" * 400, "int", -(10**400 - 1), exotic=True),
    J("-0", "int", 0),
    J("-0.0", "float", -0.0),
    J("1E+2", "float", 100.0),
    J("1e-400", "float", 0.0, exotic=True),
    J(f"{NOW + 3600}.0", "float", float(NOW + 3600)),
    J(f"{NOW + 3600}e0", "float", float(NOW + 3600)),
    J("01", "int", invalid=True),
    J("+1", "int", invalid=True),
    J(".5", "float", invalid=True),
    J("1.", "float", invalid=True),
    J("0x10", "int", invalid=True),
    J("'a'", "str", invalid=True),
    J('"a\tb"', "str", invalid=True),  # a raw control character inside a string
    J('"\\x41"', "str", invalid=True),
    J('"\\u00"', "str", invalid=True),
    J("undefined", "null", invalid=True),
    J("True", "bool", invalid=True),
)

# ------------------------------------------------------------------------------------ strategies
HOSTILE_CHARS = (
    "\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x80", "\x85", "\x9f",
    "\u00a0", "\u00ad", "\u061c", "\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u202e",
    "\u2028", "\u2029", "\u2060", "\u2066", "\u3000", "\ufeff", "\ufff9", "\ufffd", "\U000e0001",
    "\ud800", "\udbff", "\udc00", "\udfff",
    "\u0130", "\u0131", "\u00df", "\u1e9e", "\ufb01", "\u212a", "\u2126", "\uff21", "\uff41",
    "\u00e9", "e\u0301", "\u01c5", "\u03a3", "\u03c2", "\u0345", "\U0001f600", "\U0001d400",
    "\u2460", "\u4e2d", "\u0416", "\u05d0", "\u0627", "\u0301",
    "%", ",", '"', "\\", "/", "<", "=", " ", "@", ".", "a", "A", "z", "0",
)  # fmt: skip
LOGINS = (
    "alice", "Alice", "ALICE", "\uff41lice", "\u0430lice", "al\u0130ce", "bob", "Bob",
    "b\u00f6b", "bo\u0308b", "stra\u00dfe", "STRASSE", "strasse", "\ufb01le", "file", "FILE",
    "\u212aelvin", "kelvin", "\u00c9ve", "\u00e9ve", "E\u0301ve", "e\u0301ve", "admin", "Admin",
    "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427", "a b", "a\u00a0b", "a\u3000b",
    "a,b", "a%2Cb", "\u4e2d\u6587", "x" * 255, "\u00df" * 255, "\ufb03" * 255,
)  # fmt: skip
EMAILS = (
    "a@x.io", "A@X.IO", "a@\uff58.io", "alice@example.com", "ALICE@EXAMPLE.COM",
    "stra\u00dfe@x.io", "strasse@x.io", "b@x.io", "\u00e9ve@x.io", "E\u0301VE@X.IO",
)  # fmt: skip
SUBJECTS = ("s1", "s2", "s3", "S1", "s4", "\u00e9", "e\u0301", "s" * 255)
CLAIM_NAMES = (
    "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "login", "email", "name", "groups",
    "role", "typ", "crit", "kid", "alg", "", "__proto__", "Sub", "SUB", "\u017fub", "sub\x00",
)  # fmt: skip
ROLES = ("Viewer", "Editor", "Admin", "ServerAdmin", "GrafanaAdmin", "admin", "Admin\x00", "None")

chars = st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters(exclude_categories=()))
short_text = st.lists(chars, max_size=10).map("".join)
long_text = st.builds(
    lambda unit, count, edge: (unit * count)[:count] + edge,
    st.sampled_from(["a", "\u00e9", "\U0001f600", "\u00df", "\ufb03", "\u00a0", "ab ", "\x00"]),
    st.sampled_from([254, 255, 256, 257, 1000, 4000, 70_000]),
    st.sampled_from(["", " ", "\u200b", "a"]),
)
edge_text = st.builds(
    lambda pre, core, post: pre + core + post,
    st.sampled_from(["", " ", "\u00a0", "\u3000", "\t", "\u200b", "\ufeff"]),
    st.sampled_from(LOGINS),
    st.sampled_from(["", " ", "\u00a0", "\u2028", "\n", "\x00", "\u200d"]),
)
texts = st.one_of(short_text, long_text, edge_text, st.sampled_from(LOGINS + EMAILS))
strings = st.builds(string, texts, st.sampled_from([0, 0, 0, 1, 2]))

numbers = st.one_of(
    st.integers(),
    st.integers(-100_000, 100_000).map(lambda d: NOW + d),
    st.sampled_from(
        [0, -1, 1, 10**12 - 1, 10**12, -(10**12), 10**30, -(10**30), 2**53 + 1, 2**63, 2**64]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, -0.0, 5e-324, 1.7976931348623157e308, NOW + 0.5, 1e12]),
)
scalars = st.one_of(
    st.just(leaf(None)),
    st.booleans().map(leaf),
    numbers.map(leaf),
    strings,
    st.sampled_from(LITERALS),
)
names = st.builds(
    lambda name, style: (name, spell(name, style)),
    st.one_of(st.sampled_from(CLAIM_NAMES), texts),
    st.sampled_from([0, 0, 1, 2]),
)


def _object(pairs: list[tuple[tuple[str, str], J]]) -> J:
    return obj((name, spelled, value) for (name, spelled), value in pairs)


nested = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(arr),
        st.lists(st.tuples(names, kids), max_size=4).map(_object),
    ),
    max_leaves=12,
)
deeply = st.builds(
    deep,
    st.one_of(st.integers(1, 1000), st.sampled_from([63, 64, 65, 100, 500, 999, 1000])),
    st.sampled_from(["list", "dict", "mixed"]),
    scalars,
)
small_scalars = st.one_of(
    st.just(leaf(None)),
    st.booleans().map(leaf),
    numbers.map(leaf),
    st.builds(string, short_text),
)
# Wide, not long: the copies are small, so that a token stays within a few hundred KiB.
widely = st.builds(wide, st.sampled_from([101, 1000, 5000]), small_scalars)
json_values = st.one_of(scalars, nested, deeply, widely)
# Every JSON type but the one a member wants; a present null is not an absent member.
wrong_types = st.sampled_from([leaf(None), leaf(True), leaf(0), leaf(1.5), arr([]), obj([])])
identifier_values = st.one_of(
    strings, st.sampled_from(LOGINS + EMAILS).map(leaf), wrong_types, json_values
)
date_values = st.one_of(numbers.map(leaf), st.sampled_from(LITERALS), wrong_types, json_values)
group_lists = st.one_of(
    st.lists(st.one_of(strings, st.sampled_from(LOGINS).map(leaf), json_values), max_size=6).map(
        arr
    ),
    # Many clean groups: X-Auth-Groups must be cut at a group boundary, and say so.
    st.builds(
        lambda n, stem: arr([leaf(f"{stem}{i}") for i in range(n)]),
        st.integers(0, 400),
        st.sampled_from(["g", "%,", "\u00e9quipe-", "a" * 200]),
    ),
)
HOSTILE_CLAIMS: dict[str, st.SearchStrategy[J]] = {
    "login": identifier_values,
    "email": identifier_values,
    "sub": st.one_of(identifier_values, st.sampled_from(SUBJECTS).map(leaf)),
    "name": identifier_values,
    "groups": st.one_of(group_lists, wrong_types, json_values),
    "role": st.one_of(st.sampled_from(ROLES).map(leaf), wrong_types, json_values),
    "aud": st.one_of(strings, st.lists(strings, max_size=3).map(arr), wrong_types, json_values),
    "iss": identifier_values,
    "jti": identifier_values,
    "exp": date_values,
    "nbf": date_values,
    "iat": date_values,
}
HOSTILE_HEADER: dict[str, st.SearchStrategy[J]] = {
    "typ": st.one_of(
        st.sampled_from(["JWT", "jwt", "at+JWT", "application/jwt", "logout+jwt", "JOSE", ""]).map(
            leaf
        ),
        wrong_types,
        json_values,
    ),
    "crit": st.one_of(st.lists(strings, max_size=3).map(arr), wrong_types, json_values),
    "kid": st.one_of(
        st.sampled_from([KID, "Hostile", KID + " ", KID + "\x00"]).map(leaf), wrong_types, strings
    ),
    "cty": st.one_of(st.just(leaf("JWT")), json_values),
    "jku": st.just(leaf("https://attacker.example/jwks.json")),
    "b64": st.sampled_from([leaf(False), leaf(True)]),
}


HOSTILE_FIELDS = [("header", name) for name in sorted(HOSTILE_HEADER)] * 2 + [
    ("claims", name) for name in sorted(HOSTILE_CLAIMS)
]


@dataclass(frozen=True)
class Case:
    """One token to send: its header and payload, and how it is signed (``""``: honestly)."""

    header: J
    payload: J | bytes
    forgery: str = ""


# Small pools, so that accounts meet: the same login or email under another case,
# normalization or subject.
subjects = st.one_of(st.sampled_from(SUBJECTS), st.integers(0, 30).map(lambda n: f"u{n}"))
logins = st.one_of(
    st.sampled_from(LOGINS),
    st.builds(
        lambda stem, n: f"{stem}{n}", st.sampled_from(["user", "User", "USER"]), st.integers(0, 30)
    ),
)
emails = st.one_of(
    st.sampled_from(EMAILS),
    st.builds(
        lambda stem, n: f"{stem}{n}@x.io", st.sampled_from(["user", "User"]), st.integers(0, 30)
    ),
)


@st.composite
def mostly_valid(draw: st.DrawFn) -> Case:
    """Valid sub/exp/iat/login/email, then hostile values in some claims and header fields.

    Mostly a single hostile field, so that no other refusal hides what the service
    makes of it; sometimes several, sometimes none.
    """
    if draw(st.booleans()):
        # An account of its own, which a clean token reaches with a 200.
        n = draw(st.integers(0, 30))
        sub, login, email = f"own{n}", f"Own{n}", f"own{n}@x.io"
    else:
        sub, login, email = draw(subjects), draw(logins), draw(emails)
    claims = {
        "sub": leaf(sub),
        "iat": leaf(NOW),
        "exp": leaf(NOW + 3600),
        "login": leaf(login),
        "email": leaf(email),
    }
    header = {"alg": leaf("ES256"), "kid": leaf(KID)}
    if draw(st.booleans()):
        header["typ"] = leaf("JWT")
    if draw(st.integers(0, 2)):
        fields = [draw(st.sampled_from(HOSTILE_FIELDS))]
    else:
        fields = draw(st.lists(st.sampled_from(HOSTILE_FIELDS), unique=True, max_size=5))
    for place, name in fields:
        target, values = (header, HOSTILE_HEADER) if place == "header" else (claims, HOSTILE_CLAIMS)
        if draw(st.integers(0, 5)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(values[name])
    claim_members = plain(**claims)
    if draw(st.integers(0, 3)) == 0:
        claim_members = draw(st.permutations(claim_members))
    return Case(obj(plain(**header)), obj(claim_members))


raw_payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"sub"',
            b"\xef\xbb\xbf" + json.dumps({"sub": "s1", "exp": NOW + 3600}).encode(),
            b'{"sub":"s1","exp":' + str(NOW + 3600).encode() + b',"login":"\xff"}',
            b'{"sub":"s1","exp":' + str(NOW + 3600).encode() + b',"login":"\xed\xa0\x80"}',
            b'{"sub":"s1"} trailing',
            json.dumps({"sub": "s1", "exp": NOW + 3600, "login": "x"}).encode("utf-16"),
        ]
    ),
)


@st.composite
def fully_random(draw: st.DrawFn) -> Case:
    """Random header members around alg/kid (or a random header), and a random payload."""
    if draw(st.integers(0, 7)) == 0:
        header = draw(json_values)
    else:
        extra = draw(st.lists(st.tuples(names, json_values), max_size=4))
        header = obj([*plain(alg=leaf("ES256"), kid=leaf(KID)), *_object(extra).members])
    choice = draw(st.integers(0, 9))
    payload: J | bytes
    if choice == 0:
        payload = draw(raw_payloads)
    elif choice == 1:
        payload = draw(json_values)
    else:
        extra = draw(st.lists(st.tuples(names, json_values), max_size=8))
        base = plain(sub=leaf(draw(subjects)), exp=leaf(NOW + 3600))
        kept = base[: draw(st.integers(0, 2))]
        payload = obj([*kept, *_object(extra).members])
    return Case(header, payload)


def _with_duplicate(target: J, name: str, spelled: str, value: J, first: bool) -> J:
    extra = (name, spelled, value)
    return obj((extra, *target.members) if first else (*target.members, extra))


@st.composite
def duplicated(draw: st.DrawFn) -> Case:
    """A mostly valid token with a member name given twice, in the header or the claims.

    The second spelling may be escaped (``"s\\u0075b"``): equal names once decoded.
    """
    case = draw(mostly_valid())
    assert isinstance(case.payload, J)
    in_header = draw(st.integers(0, 3)) == 0
    target = case.header if in_header else case.payload
    if not target.members:
        target = obj(
            plain(alg=leaf("ES256"), kid=leaf(KID)) if in_header else plain(sub=leaf("s1"))
        )
    where = draw(st.sampled_from(["top", "top", "top", "nested"]))
    if where == "top":
        name = draw(st.sampled_from([m[0] for m in target.members]))
        spelled = spell(name, draw(st.sampled_from([0, 2])))
        value = draw(
            st.one_of(
                st.just(next(v for n, _, v in target.members if n == name)),
                st.sampled_from(["admin", "root", "s2", "ES256", "none", KID]).map(leaf),
                scalars,
            )
        )
        target = _with_duplicate(target, name, spelled, value, draw(st.booleans()))
    else:
        inner = obj([*plain(a=leaf(1)), ("a", spell("a", 2), leaf(2))])
        holder = draw(st.sampled_from(["groups", "name", "x-nested"]))
        target = obj((*target.members, (holder, spell(holder, 0), inner)))
    if in_header:
        return Case(target, case.payload)
    return Case(case.header, target)


FORGERIES = (
    "bitflip",
    "other-key",
    "swapped-payload",
    "swapped-header",
    "der-signature",
    "zero-signature",
    "order-signature",
    "random-signature",
    "truncated-signature",
    "empty-signature",
    "no-signature-segment",
    "alg-none",
    "hs256-jwks",
    "hs256-pem",
)


@st.composite
def forged(draw: st.DrawFn) -> Case:
    """A well-formed token (mostly valid, or random) whose signature is not the key's."""
    case = draw(st.one_of(mostly_valid(), mostly_valid(), fully_random()))
    method = draw(st.sampled_from(FORGERIES))
    if method in ("bitflip", "random-signature", "alg-none"):
        method = f"{method}:{draw(st.integers(0, 2**16))}"
    return Case(case.header, case.payload, method)


# ------------------------------------------------------------------------------------ tokens
def payload_bytes(payload: J | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.text.encode("utf-8", "surrogatepass")


def _b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def make_token(case: Case, keys: Keys) -> str:
    h = b64u(case.header.text.encode("utf-8", "surrogatepass"))
    p = b64u(payload_bytes(case.payload))
    token = forge(keys.signer, h, p, alg="ES256")
    if not case.forgery:
        return token
    method, _, arg = case.forgery.partition(":")
    signature = _b64d(token.rsplit(".", 1)[1])
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    n = int(arg or 0)
    if method == "bitflip":
        flipped = bytearray(signature)
        flipped[n % 64] ^= 1 << (n // 64 % 8)
        return f"{h}.{p}.{b64u(bytes(flipped))}"
    if method == "other-key":
        return forge(keys.other, h, p, alg="ES256")
    if method == "swapped-payload":
        admin = {"sub": "admin", "exp": NOW + 3600, "login": "admin", "email": "root@x.io"}
        return f"{h}.{b64u(json.dumps(admin).encode())}.{b64u(signature)}"
    if method == "swapped-header":
        return (
            f"{b64u_text({'alg': 'ES256', 'kid': KID, 'typ': 'JWT', 'x': 1})}.{p}.{b64u(signature)}"
        )
    if method == "der-signature":
        return f"{h}.{p}.{b64u(encode_dss_signature(r, s))}"
    if method == "zero-signature":  # CVE-2022-21449 ("psychic signatures")
        return f"{h}.{p}.{b64u(bytes(64))}"
    if method == "order-signature":
        return f"{h}.{p}.{b64u(P256_ORDER.to_bytes(32, 'big') * 2)}"
    if method == "random-signature":
        return f"{h}.{p}.{b64u(hashlib.sha512(str(n).encode()).digest())}"
    if method == "truncated-signature":
        return f"{h}.{p}.{b64u(signature[:-1])}"
    if method == "empty-signature":
        return f"{h}.{p}."
    if method == "no-signature-segment":
        return f"{h}.{p}"
    if method == "alg-none":
        alg = ("none", "None", "NONE", "nOnE")[n % 4]
        unsigned = b64u_text({"alg": alg, "kid": KID, "typ": "JWT"})
        return f"{unsigned}.{p}." + ("" if n // 4 % 2 else b64u(signature))
    if method in ("hs256-jwks", "hs256-pem"):
        secret = keys.jwks_text if method == "hs256-jwks" else keys.public_pem
        hs = b64u_text({"alg": "HS256", "kid": KID, "typ": "JWT"})
        mac = hmac.new(secret, f"{hs}.{p}".encode(), hashlib.sha256).digest()
        return f"{hs}.{p}.{b64u(mac)}"
    raise AssertionError(case.forgery)


def b64u_text(header: dict[str, Any]) -> str:
    return b64u(json.dumps(header).encode())


# ------------------------------------------------------------------------------------ the oracle
def fold(value: str) -> str:
    """CONTRACT §7: two logins (emails) are one when their NFKC case-folds are equal."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def identifier_problem(value: str) -> str | None:
    """Why CONTRACT §7 refuses ``value`` as a login, email, subject or group name."""
    if len(value) > 255:
        return f"longer than 255 characters ({len(value)})"
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs"):
            return f"holds U+{ord(char):04X} (category {category})"
    if value and (value[0].isspace() or value[-1].isspace()):
        return "leading or trailing whitespace"
    return None


@dataclass
class Verdict:
    """What the contract says about a token, before it is sent.

    ``refusals``: why it must be refused, each with the messageIds allowed and the
    claim the reason must name. ``unsettled``: what the contract leaves to the
    implementation (parser limits, unregistered header fields, near-boundary
    dates, odd types of ``iss``/``jti``/``aud``), which may be refused as
    ``jwt.invalid`` or not. With neither, the token is clean: it must be
    accepted (200) or lose to an existing account (409).
    """

    refusals: list[tuple[str, frozenset[str], str | None]] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    subject: str | None = None
    login: str = ""
    email: str = ""

    def refuse(self, why: str, ids: Iterable[str] = (INVALID,), claim: str | None = None) -> None:
        self.refusals.append((why, frozenset(ids), claim))

    def leave(self, why: str) -> None:
        self.unsettled.append(why)

    @property
    def acceptable(self) -> bool:
        return not self.refusals and not self.unsettled


def _number(value: J) -> float | int | None:
    if value.kind in ("int", "float") and value.value is not OPAQUE:
        return value.value  # type: ignore[no-any-return]
    return None


def judge(case: Case) -> Verdict:
    v = Verdict()
    if case.forgery:
        v.refuse(f"forged ({case.forgery})")
        return v
    _judge_header(case.header, v)
    if isinstance(case.payload, bytes):
        _judge_raw_payload(case.payload, v)
    else:
        _judge_claims(case.payload, v)
    return v


def _judge_header(header: J, v: Verdict) -> None:
    if header.invalid or header.kind != "dict":
        v.refuse("header is not a JSON object")
        return
    if header.top_dup:
        v.refuse("header has a duplicate member")
    if header.nested_dup or header.exotic:
        v.leave("header: nested duplicates, or values past parser limits or with lone surrogates")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if alg is None or alg.value != "ES256" or alg.kind != "str":
        v.refuse("alg is not ES256")
    if kid is None:
        v.leave("no kid")  # the JWKS's only key may or may not be meant
    elif kid.kind != "str" or kid.value != KID:
        v.refuse("kid is not the key's")
    if typ is not None and (typ.kind != "str" or typ.value.lower() not in TOKEN_TYPES):
        v.refuse("typ is not a token type")
    if header.get("crit") is not None:
        v.refuse("crit names extensions nobody implements")  # RFC 7515 §4.1.11
    if extra := {name for name, _, _ in header.members} - {"alg", "kid", "typ"}:
        v.leave(f"header members {sorted(extra)}")


def _judge_raw_payload(data: bytes, v: Verdict) -> None:
    v.leave("raw payload")
    if data.startswith(b"\xef\xbb\xbf"):
        return  # RFC 8259 §8.1: a parser MAY ignore a byte order mark
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError):
        v.refuse("payload is not UTF-8 JSON")
        return
    except ValueError:
        return  # a limit of Python's, not of JSON
    if not isinstance(value, dict):
        v.refuse("payload is not a JSON object")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _judge_claims(claims: J, v: Verdict) -> None:
    if claims.invalid or claims.kind != "dict":
        v.refuse("payload is not a JSON object")
        return
    if claims.top_dup:
        v.refuse("claims have a duplicate member")
    if claims.nested_dup or claims.exotic:
        v.leave("claims: nested duplicates, or values past parser limits or with lone surrogates")
    sub = claims.get("sub")
    if sub is None or sub.kind != "str" or not sub.value:
        v.refuse("no sub", (MISSING, INVALID) if sub is not None else (MISSING,))
    elif (why := identifier_problem(sub.value)) is not None:
        v.refuse(f"sub {why}", claim="sub")
    else:
        v.subject = sub.value
    _judge_dates(claims, v)
    for name in ("iss", "jti"):
        value = claims.get(name)
        if value is not None and value.kind != "str":
            v.leave(f"{name} is not a string")
    aud = claims.get("aud")
    if aud is not None and not (
        aud.kind == "str"
        or (
            aud.kind == "list"
            and aud.value is not OPAQUE
            and all(isinstance(a, str) for a in aud.value)
        )
    ):
        v.leave("aud is not a string or array of strings")
    for name in ("login", "email"):
        value = claims.get(name)
        text = value.value if value is not None and value.kind == "str" else ""
        if text and (why := identifier_problem(text)) is not None:
            v.refuse(f"{name} {why}", claim=name)
        setattr(v, name, text)
    if not v.login and not v.email:
        v.refuse("neither login nor email", (MISSING,))
    _judge_groups(claims.get("groups"), v)


def _judge_dates(claims: J, v: Verdict) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None:
            if name == "exp":
                v.refuse("no exp (require_exp = true)")
            continue
        number = _number(value)
        if value.kind == "bool" or number is None:
            if value.kind in ("int", "float"):
                v.leave(f"{name} is an unreadable number")
            else:
                v.refuse(f"{name} is not a number", claim=name)
            continue
        if not abs(number) < 10**12:
            v.refuse(f"{name} is out of range", claim=name)
        elif name == "exp" and number < NOW - 2 * LEEWAY:
            v.refuse("expired")
        elif name == "exp" and number < NOW + 1:
            v.leave("exp within the leeway")
        elif name == "nbf" and number > NOW + 2 * LEEWAY:
            v.refuse("not valid yet")
        elif name in ("nbf", "iat") and number > NOW:
            v.leave(f"{name} in the future")


def _judge_groups(groups: J | None, v: Verdict) -> None:
    if groups is None or groups.kind not in ("str", "list"):
        return
    if groups.kind == "str" or groups.value is OPAQUE:
        v.leave("groups is a string or unreadable")
        return
    for group in groups.value:
        if isinstance(group, str):
            if not group:
                v.leave("an empty group name")
            elif (why := identifier_problem(group)) is not None:
                v.refuse(f"a group name {why}", claim="groups")


# ------------------------------------------------------------------------------------ the checks
@dataclass
class Harness:
    """Sends cases to one app and checks every answer; remembers what a run has shown."""

    app: Flask
    keys: Keys
    stats: Counter[str] = field(default_factory=Counter)
    login_owner: dict[str, int] = field(default_factory=dict)
    email_owner: dict[str, int] = field(default_factory=dict)
    note: Callable[[str], None] = note
    """Where the details of the example at hand go: Hypothesis's ``note``, shown on failure."""

    def __post_init__(self) -> None:
        self.client = self.app.test_client(use_cookies=False)
        self.svc = self.app.extensions["authsvc"]

    def check(self, case: Case) -> None:
        token = make_token(case, self.keys)
        verdict = judge(case)
        if len(token) > 8 * 1024:
            verdict.leave("a token of more than 8 KiB")  # RFC 8259 §9: parsers may set limits
        self.note(f"token ({len(token)} bytes): {shorten(token, 600)}")
        self.note(f"verdict: {shorten(repr(verdict))}")
        before = self.counts() if case.forgery else None
        answers = []
        for method, path in ENDPOINTS:
            answers.append(self.send(method, path, token))
        seen = {(r.status_code, (r.get_json(silent=True) or {}).get("messageId")) for r in answers}
        self.note(f"answers: {[(r.status_code, r.get_data()[:500]) for r in answers]}")
        for (method, path), response in zip(ENDPOINTS, answers, strict=True):
            self.check_answer(method, path, response, token, verdict)
        assert len(seen) == 1, f"the endpoints disagree on one token: {sorted(seen, key=str)}"
        status, message_id = seen.pop()
        self.stats[f"{status} {message_id or ''}".strip()] += 1
        if verdict.refusals:
            self.stats["must refuse"] += 1
        elif verdict.acceptable:
            self.stats["must accept"] += 1
        if before is not None:
            assert self.counts() == before, "a forged token changed the database"

    def send(self, method: str, path: str, token: str) -> Any:
        try:
            return self.client.open(path, method=method, headers={HEADER: token})
        except Exception as exc:
            text = str(exc)
            raise AssertionError(
                f"{method} {path} raised {type(exc).__name__} (a 500 in production): "
                f"{text[:300]}{'...' if len(text) > 300 else ''}"
            ) from exc

    def counts(self) -> tuple[int, ...]:
        with self.svc.db() as db:
            return tuple(
                db.scalar(select(func.count()).select_from(model)) or 0
                for model in (User, AuthLink, Session)
            )

    # -------------------------------------------------------------- one answer
    def check_answer(
        self, method: str, path: str, response: Any, token: str, verdict: Verdict
    ) -> None:
        where = f"{method} {path}"
        status = response.status_code
        assert status in ALLOWED_STATUSES, (
            f"{where} answered {status}: {response.get_data()[:500]!r}"
        )
        assert token.encode() not in response.get_data(), f"{where}: the raw token is in the body"
        for name, value in response.headers.items():
            assert token not in value, f"{where}: the raw token is in the {name} header"
        body = response.get_json(silent=True)
        if status != 200:
            self.check_error(where, response, body)
        if verdict.refusals:
            self.check_refused(where, status, body, verdict)
        elif status != 200:
            if verdict.acceptable:
                assert status == 409 and body["messageId"] == "user.sync.conflict", (
                    f"{where} refused a clean token with {status} {body['messageId']}: "
                    f"{shorten(body['reason'])!r}"
                )
                self.check_conflict(where, verdict)
        else:
            self.check_accepted(where, path, response, body, verdict)

    def check_error(self, where: str, response: Any, body: Any) -> None:
        """CONTRACT §3's error body, a messageId of this status, RFC 6750's challenge."""
        status = response.status_code
        assert isinstance(body, dict) and set(body) == ERROR_KEYS, f"{where}: error body {body!r}"
        message_id = body["messageId"]
        assert MESSAGE_STATUS.get(message_id) == status == body["statusCode"], (
            f"{where}: {status} with messageId {message_id!r}, statusCode {body['statusCode']!r}"
        )
        assert isinstance(body["message"], str) and body["message"], f"{where}: {body}"
        assert isinstance(body["reason"], str) and body["reason"], f"{where}: {body}"
        if status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            assert WWW_AUTHENTICATE.fullmatch(challenge), f"{where}: WWW-Authenticate {challenge!r}"

    def check_refused(self, where: str, status: int, body: Any, verdict: Verdict) -> None:
        """A token the contract refuses: 401 with the messageId of (one of) its faults.

        One assertion whatever came instead (a 200, or a 409 when the account is taken),
        so that Hypothesis sees one failure however the database stands.
        """
        allowed = frozenset().union(*(ids for _, ids, _ in verdict.refusals))
        if verdict.unsettled:
            allowed |= {INVALID}
        got = "accepted it" if status == 200 else f"answered {status} {body['messageId']}"
        assert status == 401 and body["messageId"] in allowed, (
            f"{where} {got}; the contract refuses it with 401 {' or '.join(sorted(allowed))}: "
            f"{[why for why, _, _ in verdict.refusals]}"
        )
        if len(verdict.refusals) == 1 and not verdict.unsettled and verdict.refusals[0][2]:
            claim = verdict.refusals[0][2]
            assert claim in body["reason"], (
                f"{where}: reason {shorten(body['reason'])!r} names no {claim!r}"
            )

    def check_accepted(
        self, where: str, path: str, response: Any, body: Any, verdict: Verdict
    ) -> None:
        expected_keys = USER_KEYS | {"subject"} if path == "/api/auth/verify" else USER_KEYS
        assert isinstance(body, dict) and set(body) == expected_keys, f"{where}: body {body!r}"
        if path == "/api/login/jwt":
            cookie = response.headers.get("Set-Cookie", "")
            assert cookie.startswith("authsvc_session="), f"{where}: no session cookie"
        user = self.check_user(where, body, body.get("subject", verdict.subject), verdict)
        if path == "/api/auth/verify":
            self.check_headers(where, response, user, body["subject"])
            self.remember("X-Auth-User", self.login_owner, user.login, user.id, "login")
            self.remember("X-Auth-Email", self.email_owner, user.email or "", user.id, "email")

    def check_conflict(self, where: str, verdict: Verdict) -> None:
        """A 409 on a clean token: another account must hold its login or email."""
        login = verdict.login or verdict.email
        with self.svc.db() as db:
            mine = db.scalar(
                select(AuthLink.user_id).where(
                    AuthLink.provider == "jwt", AuthLink.subject == verdict.subject
                )
            )
            holders = [
                u
                for u in db.scalars(select(User)).all()
                if u.id != mine
                and (
                    fold(u.login) == fold(login)
                    or (verdict.email and u.email and fold(u.email) == fold(verdict.email))
                )
            ]
        assert holders, f"{where}: 409 but no other account holds {login!r} or {verdict.email!r}"

    def check_user(self, where: str, body: dict[str, Any], subject: Any, verdict: Verdict) -> User:
        """The user JSON is the stored row, and the row is the one the token's sub is linked to."""
        with self.svc.db() as db:
            user: User | None = db.get(User, body["id"])
            linked = db.scalar(
                select(AuthLink.user_id).where(
                    AuthLink.provider == "jwt", AuthLink.subject == subject
                )
            )
            assert user is not None, f"{where}: user {body['id']} is not in the database"
            db.expunge(user)
        stored = {
            "id": user.id,
            "login": user.login,
            "email": user.email or "",
            "name": user.name,
            "role": user.role,
            "isServerAdmin": user.is_server_admin,
            "groups": list(user.groups or []),
        }
        shown = {k: body[k] for k in stored}
        assert shown == stored, f"{where}: body {shown!r} is not the stored user {stored!r}"
        if subject is not None:  # unknown only for raw payloads the oracle does not read
            assert linked == user.id, (
                f"{where}: sub {subject!r} is linked to {linked}, not {user.id}"
            )
        if verdict.subject is not None:
            assert subject == verdict.subject, f"{where}: subject {subject!r}"
            wanted = verdict.login or verdict.email
            assert user.login == wanted, (
                f"{where}: login {shorten(user.login)!r}, token says {shorten(wanted)!r}"
            )
            if verdict.email:
                assert user.email == verdict.email, (
                    f"{where}: email {user.email!r}, token says {verdict.email!r}"
                )
        return user

    def check_headers(self, where: str, response: Any, user: User, subject: str) -> None:
        """X-Auth-* are the account's exact values; groups encoded, cut only over budget."""
        expected = {
            "X-Auth-User": user.login,
            "X-Auth-Email": user.email or "",
            "X-Auth-Name": user.name,
            "X-Auth-Role": user.role,
            "X-Auth-Subject": subject,
        }
        shown = {name: response.headers.get(name) for name in expected}
        assert shown == expected, f"{where}: headers {shown!r}, account {expected!r}"
        groups = [g.replace("%", "%25").replace(",", "%2C") for g in user.groups or []]
        header = response.headers.get("X-Auth-Groups")
        truncated = response.headers.get("X-Auth-Groups-Truncated")
        x_auth = [(k, v) for k, v in response.headers.items() if k.lower().startswith("x-auth-")]
        size = sum(len(k) + len(v.encode()) + 4 for k, v in x_auth)
        if truncated is None:
            assert header == ",".join(groups), f"{where}: X-Auth-Groups {header!r} for {groups!r}"
            return
        assert truncated == "true", f"{where}: X-Auth-Groups-Truncated {truncated!r}"
        assert header is not None, f"{where}: X-Auth-Groups-Truncated without X-Auth-Groups"
        kept = header.split(",") if header else []
        assert kept == groups[: len(kept)] and len(kept) < len(groups), (
            f"{where}: X-Auth-Groups {header!r} is not a cut of {groups!r}"
        )
        full = size - len(header.encode()) + len(",".join(groups).encode())
        full -= len("X-Auth-Groups-Truncated") + len(truncated) + 4
        assert full > HEADER_BUDGET, f"{where}: groups cut though all fit ({full} bytes)"
        assert size <= HEADER_BUDGET or not kept, f"{where}: X-Auth-* take {size} bytes"

    def remember(
        self, header: str, owners: dict[str, int], value: str, user_id: int, column: str
    ) -> None:
        """No two accounts are ever presented under one login (email), by NFKC case-fold.

        A value moves to another account only when its previous holder was renamed
        away from it (a later token of that account changed its login or email).
        """
        if not value:
            return
        key = fold(value)
        previous = owners.get(key)
        if previous is not None and previous != user_id:
            with self.svc.db() as db:
                other = db.get(User, previous)
                held = getattr(other, column) if other is not None else None
            assert held is None or fold(held) != key, (
                f"{header} {value!r} names user {user_id}, and user {previous} "
                f"(still holding {held!r}) was presented under it too"
            )
            self.stats[f"{column} handed over after a rename"] += 1
        owners[key] = user_id

    # -------------------------------------------------------------- the end
    def check_database(self) -> None:
        """Stored identifiers are clean and unique by NFKC case-fold (CONTRACT §7)."""
        with self.svc.db() as db:
            users = db.scalars(select(User).order_by(User.id)).all()
            subjects = db.scalars(select(AuthLink.subject)).all()
        for column in ("login", "email"):
            seen: dict[str, tuple[int, str]] = {}
            for user in users:
                value = getattr(user, column)
                if not value:
                    continue
                assert identifier_problem(value) is None, f"user {user.id}: {column} {value!r}"
                other = seen.setdefault(fold(value), (user.id, value))
                assert other[0] == user.id, (
                    f"users {other[0]} and {user.id} share a {column}: {other[1]!r} / {value!r}"
                )
        for user in users:
            for group in user.groups or []:
                assert identifier_problem(group) is None, f"user {user.id}: group {group!r}"
            assert len(user.name) <= 255, f"user {user.id}: name of {len(user.name)} characters"
            assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in user.name), (
                f"user {user.id}: name {user.name!r}"
            )
        for subject in subjects:
            assert identifier_problem(subject) is None, f"subject {subject!r}"
        self.stats["users"] = len(users)
        print(f"\n{self.app.extensions['authsvc'].engine.dialect.name}: {dict(self.stats)}")


# ------------------------------------------------------------------------------------ the tests
def _one_fault(i: int, place: str, name: str, value: J) -> Case:
    """A valid token of its own account (sub, login and email ``k<i>``) but for one member."""
    claims = plain(
        sub=leaf(f"k{i}"),
        iat=leaf(NOW),
        exp=leaf(NOW + 3600),
        login=leaf(f"k{i}"),
        email=leaf(f"k{i}@x.io"),
    )
    header = plain(alg=leaf("ES256"), kid=leaf(KID))
    target = header if place == "header" else claims
    target[:] = [m for m in target if m[0] != name] + [(name, spell(name, 0), value)]
    return Case(obj(header), obj(claims))


# The defect classes CONTRACT §7 names, one fault per token, every run: the properties
# hold for each of them, whatever the generated examples happen to reach.
KNOWN_FAULTS: tuple[tuple[str, str, str, J], ...] = (
    ("typ-null", "header", "typ", leaf(None)),
    ("typ-number", "header", "typ", leaf(5)),
    ("typ-logout", "header", "typ", leaf("logout+jwt")),
    ("typ-jwe", "header", "typ", leaf("JWE")),
    ("crit-null", "header", "crit", leaf(None)),
    ("crit-exp", "header", "crit", arr([leaf("exp")])),
    ("kid-null", "header", "kid", leaf(None)),
    ("kid-number", "header", "kid", leaf(7)),
    ("header-nested-1000", "header", "x", deep(1000, "list", leaf(1))),
    ("header-object-nested-100", "header", "x", deep(100, "dict", leaf("a"))),
    ("iss-number", "claims", "iss", leaf(5)),
    ("iss-null", "claims", "iss", leaf(None)),
    ("iss-object", "claims", "iss", obj(plain(a=leaf(1)))),
    ("jti-array", "claims", "jti", arr([leaf(1)])),
    ("aud-number", "claims", "aud", leaf(5)),
    ("aud-null", "claims", "aud", leaf(None)),
    ("aud-mixed-array", "claims", "aud", arr([leaf("a"), leaf(1)])),
    ("login-lone-surrogate", "claims", "login", leaf("a\ud800")),
    ("email-lone-surrogate", "claims", "email", leaf("\udc00@x.io")),
    ("sub-lone-surrogate", "claims", "sub", leaf("s\ud800")),
    ("name-lone-surrogate", "claims", "name", leaf("n\ud800")),
    ("group-lone-surrogate", "claims", "groups", arr([leaf("g\udfff")])),
    ("login-nul", "claims", "login", leaf("a\x00b")),
    ("email-nul", "claims", "email", leaf("a\x00@x.io")),
    ("sub-nul", "claims", "sub", leaf("s\x00")),
    ("name-nul", "claims", "name", leaf("n\x00")),
    ("group-nul", "claims", "groups", arr([leaf("g\x00")])),
    ("role-nul", "claims", "role", leaf("Admin\x00")),
    ("login-zero-width", "claims", "login", leaf("al\u200bice")),
    ("login-leading-nbsp", "claims", "login", leaf("\u00a0alice")),
    ("login-interior-nbsp", "claims", "login", leaf("k\u00a0nbsp")),
    ("login-256", "claims", "login", leaf("x" * 256)),
    ("login-255-expanding", "claims", "login", leaf("\ufb03" * 255)),
    ("email-256", "claims", "email", leaf("x" * 251 + "@x.io")),
    ("sub-256", "claims", "sub", leaf("s" * 256)),
    ("name-300", "claims", "name", leaf("n" * 300)),
    ("group-256", "claims", "groups", arr([leaf("g" * 256)])),
    ("login-nested-1000", "claims", "login", deep(1000, "list", leaf("a"))),
    ("name-nested-1000", "claims", "name", deep(1000, "dict", leaf(1))),
    ("groups-nested-100", "claims", "groups", deep(100, "mixed", leaf("g"))),
    ("exp-nested-1000", "claims", "exp", deep(1000, "list", leaf(NOW + 3600))),
    ("exp-null", "claims", "exp", leaf(None)),
    ("exp-string", "claims", "exp", leaf(str(NOW + 3600))),
    ("exp-1e999", "claims", "exp", J("1e999", "float", math.inf, exotic=True)),
    ("exp-10e5000", "claims", "exp", J("1" + "0" * 5000, "int", 10**5000, exotic=True)),
    ("exp-1e308", "claims", "exp", leaf(1e308)),
    ("exp-minus-zero", "claims", "exp", leaf(-0.0)),
    ("exp-NaN", "claims", "exp", J("NaN", "float", invalid=True)),
    ("nbf-true", "claims", "nbf", leaf(True)),
    ("iat-null", "claims", "iat", leaf(None)),
    ("iat-10e30", "claims", "iat", leaf(10**30)),
)
KNOWN_CASES: tuple[tuple[str, Case], ...] = (
    *(
        (name, _one_fault(i, place, member, value))
        for i, (name, place, member, value) in enumerate(KNOWN_FAULTS)
    ),
    (
        "duplicate-sub",
        Case(
            obj(plain(alg=leaf("ES256"), kid=leaf(KID))),
            obj(
                [
                    *plain(sub=leaf("d1"), exp=leaf(NOW + 3600), login=leaf("d1")),
                    ("sub", spell("sub", 0), leaf("admin")),
                ]
            ),
        ),
    ),
    (
        "duplicate-sub-escaped",
        Case(
            obj(plain(alg=leaf("ES256"), kid=leaf(KID))),
            obj(
                [
                    *plain(sub=leaf("d2"), exp=leaf(NOW + 3600), login=leaf("d2")),
                    ("sub", spell("sub", 2), leaf("admin")),
                ]
            ),
        ),
    ),
    (
        "duplicate-kid",
        Case(
            obj([*plain(alg=leaf("ES256"), kid=leaf(KID)), ("kid", spell("kid", 2), leaf(KID))]),
            obj(plain(sub=leaf("d3"), exp=leaf(NOW + 3600), login=leaf("d3"))),
        ),
    ),
    (
        "duplicate-alg",
        Case(
            obj([*plain(alg=leaf("ES256"), kid=leaf(KID)), ("alg", spell("alg", 0), leaf("none"))]),
            obj(plain(sub=leaf("d4"), exp=leaf(NOW + 3600), login=leaf("d4"))),
        ),
    ),
)


def check_known_cases(app: Flask, keys: Keys) -> None:
    """Every known case, each failure reported (one does not hide the next)."""
    harness = Harness(app, keys, note=lambda _: None)
    failures = []
    for name, case in KNOWN_CASES:
        try:
            harness.check(case)
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0]}")
    try:
        harness.check_database()
    except AssertionError as exc:
        failures.append(f"the database at the end: {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)


def test_known_hostile_tokens_sqlite(make_app: Callable[..., Flask], keys: Keys) -> None:
    check_known_cases(build_app(make_app, keys), keys)


@pytest.mark.postgres
def test_known_hostile_tokens_postgres(
    make_app: Callable[..., Flask], keys: Keys, pg_url: str
) -> None:
    check_known_cases(build_app(make_app, keys, database={"url": pg_url}), keys)


KINDS: dict[str, tuple[Callable[[], st.SearchStrategy[Case]], float]] = {
    "mostly_valid": (mostly_valid, 1.5),
    "fully_random": (fully_random, 1.0),
    "duplicate_members": (duplicated, 0.5),
    "forged": (forged, 0.5),
}


def run(app: Flask, keys: Keys, cases: st.SearchStrategy[Case], share: float) -> None:
    harness = Harness(app, keys)

    @profile(share)
    @given(cases)
    def examples(case: Case) -> None:
        harness.check(case)

    examples()
    harness.check_database()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hostile_tokens_sqlite(kind: str, make_app: Callable[..., Flask], keys: Keys) -> None:
    strategy, share = KINDS[kind]
    run(build_app(make_app, keys), keys, strategy(), share)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hostile_tokens_postgres(
    kind: str, make_app: Callable[..., Flask], keys: Keys, pg_url: str
) -> None:
    strategy, share = KINDS[kind]
    run(build_app(make_app, keys, database={"url": pg_url}), keys, strategy(), share / 4)
