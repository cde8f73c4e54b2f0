"""From verified claims to an identity: login, email, name, role, groups, scope.

Grafana's rules (``pkg/services/authn/clients/jwt.go``): a claim name wins over
its JMESPath, only string results count, a login falls back to the email and
neither is ``jwt.missing_claim``. Every JMESPath expression is compiled once
at start-up; one that fails on a given token yields no value (CONTRACT §6).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from authsvc import identifiers
from authsvc.config import ROLES, JWTSettings
from authsvc.errors import InvalidRole, InvalidToken, MissingClaim
from authsvc.verifier import parse_json_object

log = logging.getLogger(__name__)

ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
REGISTERED_CLAIMS = frozenset(("iss", "sub", "aud", "exp", "nbf", "iat", "jti"))
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
SERVER_ADMIN_ROLES = ("ServerAdmin", "GrafanaAdmin")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the caller is, before any user lookup."""

    subject: str
    login: str
    email: str
    name: str
    role: str
    """A valid role from the token, or ``[users] auto_assign_role``."""
    role_from_token: bool
    is_server_admin: bool | None
    """None when the token may not say (``allow_assign_server_admin = false``)."""
    groups: tuple[str, ...]
    groups_from_token: bool
    scope: tuple[str, ...] | None = None
    """The token's scope (``scope_claim``); None when it is unscoped. Never the user's."""
    forwarded: tuple[tuple[str, str], ...] = ()
    """``forward_claims`` as (header name, value) pairs, for a 200 of /api/auth/verify."""


def forwarded_header_name(claim: str) -> str:
    """``X-Auth-Claim-<Name>``: each run of characters other than ASCII letters and digits
    becomes one ``-``, leading and trailing ``-`` dropped (empty when nothing is left)."""
    name = _NOT_ALNUM.sub("-", claim).strip("-")
    return f"X-Auth-Claim-{name}" if name else ""


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[minimum]


class ClaimsMapper:
    """Maps claims to an Identity under one issuer's section; built once per issuer.

    Every lookup (identity, ``scope_claim``, ``forward_claims``) reads the claims
    after ``claims_namespace`` was merged over them.
    """

    def __init__(self, settings: JWTSettings, default_role: str) -> None:
        self.s = settings
        self.default_role = default_role
        self._paths: dict[str, ParsedResult] = {}
        for key in (
            "username_attribute_path",
            "email_attribute_path",
            "role_attribute_path",
            "groups_attribute_path",
        ):
            expr = getattr(settings, key)
            if expr:
                # config.py validated the syntax; compiling here cannot fail.
                self._paths[key] = jmespath.compile(expr)

    def _search(self, key: str, claims: Mapping[str, Any]) -> Any:
        path = self._paths.get(key)
        if path is None:
            return None
        try:
            return path.search(dict(claims))
        except (JMESPathError, TypeError, ValueError, RecursionError) as exc:
            # CONTRACT §6, Grafana's rule: a path that fails on a token yields no value
            # (a role falls back to auto_assign_role, groups are empty).
            log.info(
                "%s on this token yields no value",
                key,
                extra={"issuer": self.s.name, "expression": path.expression, "error": str(exc)},
            )
            return None

    def _string(self, claim: str, path_key: str, claims: Mapping[str, Any]) -> str:
        """A login or email: a string from the claim (or the path), checked as an identifier."""
        value = claims.get(claim) if claim else self._search(path_key, claims)
        if not isinstance(value, str) or not value:
            return ""
        _check_identifier(value, f"claim {claim!r}" if claim else self._source(path_key))
        return value

    def _source(self, key: str) -> str:
        return f"{key} {self._paths[key].expression!r}"

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        s = self.s
        if s.claims_namespace:
            claims = self._merge_namespace(claims)
        login = self._string(s.username_claim, "username_attribute_path", claims)
        email = self._string(s.email_claim, "email_attribute_path", claims)
        if not login and not email:
            what = [
                f"claim {s.username_claim!r}" if s.username_claim else "",
                f"username_attribute_path {s.username_attribute_path!r}"
                if s.username_attribute_path and not s.username_claim
                else "",
                f"claim {s.email_claim!r}" if s.email_claim else "",
                f"email_attribute_path {s.email_attribute_path!r}"
                if s.email_attribute_path and not s.email_claim
                else "",
            ]
            tried = ", ".join(w for w in what if w) or "no username_claim or email_claim is set"
            raise MissingClaim(f"neither a login nor an email could be derived ({tried})")
        subject = claims["sub"]
        _check_identifier(subject, "claim 'sub'")
        name = claims.get("name")
        if s.skip_role_sync:
            # Grafana reads no role then: no strict check, no server-admin flag, and a
            # new user gets [users] auto_assign_role. Roles belong to the admin API.
            role, from_token, server_admin = self.default_role, False, False
        else:
            role, from_token, server_admin = self._role(claims)
        groups, groups_from_token = self._groups(claims)
        return Identity(
            subject=subject,
            login=login or email,
            email=email,
            name=identifiers.display_name(name) if isinstance(name, str) else "",
            role=role,
            role_from_token=from_token,
            is_server_admin=(
                server_admin if s.allow_assign_server_admin and not s.skip_role_sync else None
            ),
            groups=groups,
            groups_from_token=groups_from_token,
            scope=self._scope(claims),
            forwarded=self._forwarded(claims),
        )

    def _merge_namespace(self, claims: Mapping[str, Any]) -> Mapping[str, Any]:
        """Dgraph's ``Namespace``: the namespace claim's object over the top-level claims.

        A JSON string holding an object counts as that object; anything else adds
        nothing. Registered claims are never taken from the namespace.
        """
        value = claims.get(self.s.claims_namespace)
        if isinstance(value, str):
            try:
                value = parse_json_object(value.encode("utf-8", "surrogatepass"), "namespace")
            except InvalidToken:
                return claims
        if not isinstance(value, dict):
            return claims
        merged = dict(claims)
        merged.update((k, v) for k, v in value.items() if k not in REGISTERED_CLAIMS)
        return merged

    def _scope(self, claims: Mapping[str, Any]) -> tuple[str, ...] | None:
        """``scope_claim``: a space-separated string (OAuth's ``scope``) or a list of strings."""
        name = self.s.scope_claim
        if not name or name not in claims:
            return None
        value = claims[name]
        if isinstance(value, str):
            scope = tuple(value.split())
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            scope = tuple(value)
        else:
            raise InvalidToken(f"claim {name!r} (scope_claim) is not a string or a list of strings")
        for item in scope:
            why = identifiers.problem(item)
            if why is not None:
                raise InvalidToken(f"claim {name!r} (scope_claim): a scope {why}")
        return scope

    def _forwarded(self, claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """``X-Auth-Claim-<Name>`` headers: strings as they are, other values as compact JSON.

        A string no header could carry as it is (a control or format character)
        goes as a JSON string too, escaped.
        """
        out: dict[str, str] = {}
        for name in self.s.forward_claims:
            if name not in claims:
                continue
            header = forwarded_header_name(name)
            if not header or header in out:
                continue
            value = claims[name]
            if isinstance(value, str) and value.isprintable():
                out[header] = value
            else:
                out[header] = json.dumps(value, separators=(",", ":"))
        return tuple(out.items())

    def _role(self, claims: Mapping[str, Any]) -> tuple[str, bool, bool]:
        if "role_attribute_path" not in self._paths:
            return self.default_role, False, False
        value = self._search("role_attribute_path", claims)
        role = value if isinstance(value, str) else ""
        if role in SERVER_ADMIN_ROLES:
            return "Admin", True, True
        if role in ROLE_RANK:
            return role, True, False
        if self.s.role_attribute_strict:
            got = f"{value!r}" if value is not None else "nothing"
            raise InvalidRole(
                f"role_attribute_path {self.s.role_attribute_path!r} gave {got}; "
                f"expected one of {', '.join((*ROLES, 'ServerAdmin'))} "
                "(role_attribute_strict = true)"
            )
        return self.default_role, False, False

    def _groups(self, claims: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
        if "groups_attribute_path" not in self._paths:
            return (), False
        value = self._search("groups_attribute_path", claims)
        if isinstance(value, str):
            groups: tuple[str, ...] = (value,)
        elif isinstance(value, list):
            groups = tuple(v for v in value if isinstance(v, str))
        else:
            return (), True
        for group in groups:
            why = identifiers.problem(group)
            if why is not None:
                raise InvalidToken(f"{self._source('groups_attribute_path')}: a group name {why}")
        return groups, True


def _check_identifier(value: str, source: str) -> None:
    """CONTRACT §7: an identifier that could pass for another account's is refused."""
    why = identifiers.problem(value)
    if why is not None:
        raise InvalidToken(f"{source} {why}")
