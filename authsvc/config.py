"""Layered configuration in Grafana's INI dialect, typed once into frozen settings.

Layers, lowest first (CONTRACT §2): ``conf/defaults.ini`` → ``cfg:default.S.K=V``
arguments → the custom file (its empty values skipped) → ``AUTHSVC_*``
environment → ``cfg:S.K=V`` arguments → ``%(key)s`` interpolation and
``${VAR}`` / ``$__env{}`` / ``$__file{}`` expansion.

Every value remembers where it came from, so that each problem is blamed as
``FILE [SECTION] KEY: why``. All problems are collected before anything fails:
an operator fixes a config in one pass, not one error per restart.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import logging
import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from authsvc.durations import parse_duration
from authsvc.plugins import installed_plugins

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ENV_PREFIX = "AUTHSVC"
ROLES = ("None", "Viewer", "Editor", "Admin")
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
    "HS256",
    "HS384",
    "HS512",
)
KEY_SOURCES = (
    "oidc_discovery",
    "jwk_set_url",
    "jwk_set_file",
    "jwk_set_value",
    "key_file",
    "key_value",
    "hmac_secret",
)
ISSUER_SECTION = "auth.jwt"
ISSUER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ASSERTION_SECTION = "assertion"
"""``[assertion.NAME]``: an outbound assertion (CONTRACT §5); NAME follows ISSUER_NAME."""
SIGNING_ALGORITHMS = tuple(a for a in ALGORITHMS if not a.startswith("HS"))
"""What authsvc may sign with: every asymmetric algorithm it verifies."""
_SECRET_NAME = re.compile(r"secret|password|token|key_value|jwk_set_value|connstr|url", re.I)


# --------------------------------------------------------------------------- schema
# Each known key and its default. conf/defaults.ini must list exactly these keys
# with these defaults (a test holds the two together); the defaults here only
# serve a home path whose defaults.ini lacks a key.
SCHEMA: dict[str, dict[str, str]] = {
    "paths": {"data": "data", "logs": "data/log"},
    "server": {"http_addr": "127.0.0.1", "http_port": "8080", "workers": "0", "root_url": ""},
    "database": {"type": "sqlite3", "path": "authsvc.db", "url": "", "max_open_conn": "0"},
    "remote_cache": {"type": "memory", "connstr": "addr=127.0.0.1:6379,db=0"},
    "log": {"level": "info", "format": "text", "audit": "false"},
    "metrics": {"enabled": "true"},
    "auth": {
        "login_cookie_name": "authsvc_session",
        "login_maximum_inactive_lifetime_duration": "7d",
        "login_maximum_lifetime_duration": "30d",
        "token_rotation_interval_minutes": "10",
        "signout_redirect_url": "",
        "session_store": "sql",
    },
    "security": {"cookie_secure": "false", "cookie_samesite": "lax", "allow_embedding": "false"},
    "users": {"auto_assign_role": "Viewer"},
    "auth.jwt": {
        "enabled": "false",
        "header_name": "",
        "url_login": "false",
        "username_claim": "",
        "email_claim": "",
        "username_attribute_path": "",
        "email_attribute_path": "",
        "jwk_set_url": "",
        "jwk_set_bearer_token_file": "",
        "jwk_set_file": "",
        "jwk_set_value": "",
        "key_file": "",
        "key_value": "",
        "key_id": "",
        "hmac_secret": "",
        "cache_ttl": "60m",
        "expect_claims": "{}",
        "role_attribute_path": "",
        "role_attribute_strict": "false",
        "groups_attribute_path": "",
        "allow_assign_server_admin": "false",
        "skip_role_sync": "false",
        "auto_sign_up": "false",
        "tls_client_ca": "",
        "tls_skip_verify_insecure": "false",
        "algorithms": " ".join(ALGORITHMS),
        "leeway": "60s",
        "require_exp": "true",
        "max_token_lifetime": "0",
        "jwk_set_refresh_cooldown": "30s",
        "jwk_set_max_stale": "24h",
        "jwk_set_timeout": "10s",
        "jwk_set_max_bytes": "1048576",
        "verified_cache_size": "10000",
        "verified_cache_max_mb": "64",
        "token_types": "JWT at+jwt application/jwt application/at+jwt",
        "issuer": "",
        "audience": "",
        "oidc_discovery": "false",
        "claims_namespace": "",
        "scope_claim": "",
        "forward_claims": "",
        "link_existing_users": "false",
        "key_provider": "",
        "user_provisioner": "",
        "session_lifetime_from_token": "false",
    },
    "signing": {
        "key_file": "",
        "certificate_file": "",
        "key_id": "",
        "algorithm": "",
        "previous_key_files": "",
        "issuer": "",
    },
    "upstream_assertion": {
        "enabled": "false",
        "header_name": "X-Auth-Assertion",
        "audience": "",
        "lifetime": "5m",
    },
}
# The keys of every [assertion.NAME] section and their defaults. conf/defaults.ini lists
# them in a commented template (it holds no assertion); tests/test_signing.py holds the two
# together.
ASSERTION_SCHEMA: dict[str, str] = {
    "audience": "",
    "issuer": "",
    "subject": "",
    "upn_claim": "upn",
    "claims": "{}",
    "lifetime": "5m",
    "key_file": "",
    "certificate_file": "",
    "key_id": "",
    "algorithm": "",
    "min_role": "",
    "groups": "",
}
# Grafana's names for our keys: accepted, with a warning.
ALIASES: dict[tuple[str, str], str] = {
    ("auth.jwt", "allow_assign_grafana_admin"): "allow_assign_server_admin",
}


def issuer_section(name: str) -> str:
    """The section of the issuer ``name``: ``[auth.jwt]`` is the issuer named ``jwt``."""
    return ISSUER_SECTION if name == "jwt" else f"{ISSUER_SECTION}.{name}"


def named_issuer(section: str) -> str | None:
    """``corp`` for ``[auth.jwt.corp]``; None for any other section (``[auth.jwt]`` too)."""
    prefix = ISSUER_SECTION + "."
    return section[len(prefix) :] if section.startswith(prefix) else None


def named_assertion(section: str) -> str | None:
    """``aisera`` for ``[assertion.aisera]``; None for any other section."""
    prefix = ASSERTION_SECTION + "."
    return section[len(prefix) :] if section.startswith(prefix) else None


def _schema(section: str) -> Mapping[str, str] | None:
    """The known keys of a section: a named issuer's are ``[auth.jwt]``'s, an assertion's
    ASSERTION_SCHEMA."""
    if named_assertion(section) is not None:
        return ASSERTION_SCHEMA
    return SCHEMA[ISSUER_SECTION] if named_issuer(section) is not None else SCHEMA.get(section)


# --------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, blamed on its origin."""

    origin: str
    section: str
    key: str
    why: str

    def __str__(self) -> str:
        if not self.key:
            return f"{self.origin} [{self.section}]: {self.why}"
        return f"{self.origin} [{self.section}] {self.key}: {self.why}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found."""

    def __init__(
        self,
        problems: Sequence[Problem | str],
        warnings: Sequence[str] = (),
        settings: Settings | None = None,
    ) -> None:
        self.problems = [str(p) for p in problems]
        self.warnings = list(warnings)
        """Warnings found on the way (unknown keys...): shown beside the problems."""
        self.settings = settings
        """What could be read despite the problems (for ``dev keys``, which makes a missing
        key file); None when the files themselves could not be read."""
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class PathsSettings:
    data: Path
    logs: Path


@dataclass(frozen=True)
class ServerSettings:
    http_addr: str
    http_port: int
    workers: int
    root_url: str


@dataclass(frozen=True)
class DatabaseSettings:
    type: str
    path: Path
    url: str = field(repr=False)  # may carry a password: kept out of logs and tracebacks
    """SQLAlchemy URL, derived from type/path unless set."""
    max_open_conn: int


@dataclass(frozen=True)
class RemoteCacheSettings:
    type: str
    connstr: str = field(repr=False)  # may carry a password: kept out of logs and tracebacks
    redis_host: str
    redis_port: int
    redis_db: int
    redis_password: str = field(repr=False)
    redis_ssl: bool


@dataclass(frozen=True)
class LogSettings:
    level: str
    format: str
    audit: bool = False


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool


@dataclass(frozen=True)
class AuthSettings:
    login_cookie_name: str
    login_maximum_inactive_lifetime: float
    login_maximum_lifetime: float
    token_rotation_interval: float
    signout_redirect_url: str
    session_store: str


@dataclass(frozen=True)
class SecuritySettings:
    cookie_secure: bool
    cookie_samesite: str
    allow_embedding: bool


@dataclass(frozen=True)
class UsersSettings:
    auto_assign_role: str


@dataclass(frozen=True)
class JWTSettings:
    """``[auth.jwt]``. Durations are seconds; 0 means off where CONTRACT says so."""

    enabled: bool
    header_name: str
    url_login: bool
    username_claim: str
    email_claim: str
    username_attribute_path: str
    email_attribute_path: str
    jwk_set_url: tuple[str, ...]
    """Every URL of ``jwk_set_url`` (space- or comma-separated): the key set is their union."""
    jwk_set_bearer_token_file: str
    jwk_set_file: str
    jwk_set_value: str
    key_file: str
    key_value: str
    key_id: str
    hmac_secret: str
    cache_ttl: float
    expect_claims: Mapping[str, Any]
    role_attribute_path: str
    role_attribute_strict: bool
    groups_attribute_path: str
    allow_assign_server_admin: bool
    skip_role_sync: bool
    auto_sign_up: bool
    tls_client_ca: str
    tls_skip_verify_insecure: bool
    algorithms: tuple[str, ...]
    leeway: float
    require_exp: bool
    max_token_lifetime: float
    jwk_set_refresh_cooldown: float
    jwk_set_max_stale: float
    jwk_set_timeout: float
    jwk_set_max_bytes: int
    verified_cache_size: int
    verified_cache_max_bytes: int
    """``verified_cache_max_mb`` in bytes: the verified-token cache's memory bound."""
    token_types: frozenset[str]
    """Accepted ``typ`` headers, lower-cased; empty = any."""
    link_existing_users: bool
    key_provider: str
    """The effective key provider: configured, or chosen by the key source set."""
    user_provisioner: str
    session_lifetime_from_token: bool
    issuer: tuple[str, ...] = ()
    """Accepted ``iss`` values (any of); also routes tokens between issuers."""
    audience: tuple[str, ...] = ()
    """Accepted ``aud`` values (any of); ``*`` accepts any, and none."""
    oidc_discovery: bool = False
    claims_namespace: str = ""
    scope_claim: str = ""
    forward_claims: tuple[str, ...] = ()
    name: str = "jwt"
    """The issuer these settings describe: ``jwt`` for ``[auth.jwt]``."""
    section: str = "auth.jwt"

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (
            f"JWTSettings(name={self.name!r}, enabled={self.enabled}, "
            f"key_provider={self.key_provider!r}, ...)"
        )


@dataclass(frozen=True)
class SigningKeySettings:
    """One signing key as configured: ``[signing]``'s, or an ``[assertion.NAME]``'s.

    An assertion that overrides ``key_file`` takes none of ``[signing]``'s other key
    settings (they describe another key); one that does not inherits each it leaves unset.
    """

    key_file: str
    certificate_file: str
    key_id: str
    """Empty: the RFC 7638 thumbprint of the public key."""
    algorithm: str
    """Empty: the key's default (RS256, ES256/384/512 by curve, EdDSA)."""
    blame: Mapping[str, str] = field(default_factory=dict, compare=False)
    """The section that set each of the four keys above: where a problem is blamed."""


@dataclass(frozen=True)
class SigningSettings:
    """``[signing]``: authsvc's own key. Off (no JWKS, no upstream assertion) without key_file."""

    key: SigningKeySettings
    previous_key_files: tuple[str, ...]
    issuer: str
    """``iss`` of everything authsvc signs; default ``[server] root_url``."""

    @property
    def enabled(self) -> bool:
        return bool(self.key.key_file)


@dataclass(frozen=True)
class UpstreamAssertionSettings:
    """``[upstream_assertion]``: a signed JWT on every 200 of /api/auth/verify."""

    enabled: bool
    header_name: str
    audience: str
    lifetime: float


@dataclass(frozen=True)
class AssertionSettings:
    """``[assertion.NAME]``: an outbound assertion minted for callers or ``assertion mint``."""

    name: str
    section: str
    audience: str
    issuer: str
    subject: str
    """A fixed ``sub``; empty: the caller's login (``mint``: the issuer, a client id)."""
    upn_claim: str
    """The claim carrying the caller's email (else login); empty when ``-`` omits it."""
    claims: Mapping[str, Any]
    lifetime: float
    key: SigningKeySettings
    """The key it is signed with: ``[signing]``'s with this section's overrides."""
    min_role: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its configuration, typed and validated."""

    homepath: Path
    config_files: tuple[Path, ...]
    paths: PathsSettings
    server: ServerSettings
    database: DatabaseSettings
    remote_cache: RemoteCacheSettings
    log: LogSettings
    metrics: MetricsSettings
    auth: AuthSettings
    security: SecuritySettings
    users: UsersSettings
    jwt: JWTSettings
    """``[auth.jwt]``: the issuer named ``jwt``, enabled or not."""
    issuers: Mapping[str, JWTSettings]
    """Every issuer section by name, in configuration order (``jwt`` first), enabled or not."""
    signing: SigningSettings
    upstream_assertion: UpstreamAssertionSettings
    assertions: Mapping[str, AssertionSettings]
    """Every ``[assertion.NAME]`` by name, in configuration order."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    overrides: tuple[str, ...] = field(default=(), compare=False)
    """Environment overrides applied, secret-looking values redacted (for the log)."""
    raw: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False, repr=False)
    """Final string values of every section (third-party plugins read their own)."""
    origins: Mapping[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)
    """Where each (section, key) came from: a file, ``env AUTHSVC_...`` or ``argument cfg:...``."""

    def problem(self, section: str, key: str, why: str) -> str:
        """``FILE [SECTION] KEY: why``: a problem blamed where the operator wrote the value."""
        return str(
            Problem(self.origins.get((section, key), "conf/defaults.ini"), section, key, why)
        )


# --------------------------------------------------------------------------- INI dialect
@dataclass(frozen=True)
class _Value:
    text: str
    origin: str


_Layer = dict[str, dict[str, _Value]]
_NEWLINE = "\ue000"  # stands for a newline inside a triple-quoted value while configparser reads
_KEY_LINE = re.compile(r"^(?P<key>[^=:\s][^=:]*?)\s*[=:]\s*(?P<rest>.*)$")


def _join_triple_quoted(text: str) -> str:
    """Fold multi-line ``\"\"\"...\"\"\"`` values onto one line so configparser keeps them whole."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _KEY_LINE.match(line.strip())
        if m and m["rest"].startswith('"""') and '"""' not in m["rest"][3:]:
            buf = [line]
            i += 1
            while i < len(lines):
                buf.append(lines[i])
                if '"""' in lines[i]:
                    break
                i += 1
            line = _NEWLINE.join(buf)
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def _clean_value(raw: str) -> str:
    """Apply Grafana's (go-ini's) value rules to a raw value as configparser read it."""
    raw = raw.strip()
    if raw.startswith('"""'):
        end = raw.find('"""', 3)
        body = raw[3:end] if end >= 0 else raw[3:]
        return body.replace(_NEWLINE, "\n")
    if raw.startswith("`"):
        end = raw.find("`", 1)
        return raw[1:end] if end >= 0 else raw[1:]
    raw = raw.replace(_NEWLINE, "\n")
    cut = [i for i in (raw.find(" #"), raw.find(" ;"), raw.find("\t#"), raw.find("\t;")) if i >= 0]
    if cut:
        raw = raw[: min(cut)].strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'" and raw[0] not in raw[1:-1]:
        raw = raw[1:-1]
    return raw


def _display(path: Path, homepath: Path) -> str:
    try:
        return str(path.resolve().relative_to(homepath.resolve()))
    except ValueError:
        return str(path)


def read_ini(path: Path, origin: str, *, skip_empty: bool = False) -> _Layer:
    """Read one INI file in Grafana's dialect; a missing or unreadable file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{origin}: cannot read: {exc.strerror or exc}"]) from None
    parser = configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        strict=False,
        empty_lines_in_values=False,
        default_section="\x00no default section",
    )
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys are case-sensitive
    try:
        parser.read_string(_join_triple_quoted(text), source=origin)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            [f"{origin}: line {exc.lineno}: a key outside any [section]: {exc.line.strip()!r}"]
        ) from None
    except configparser.Error as exc:
        raise ConfigError([f"{origin}: {exc.message.splitlines()[0]}"]) from None
    layer: _Layer = {}
    for section in parser.sections():
        values = layer.setdefault(section.strip(), {})
        for key, raw in parser.items(section, raw=True):
            value = _clean_value(raw)
            if skip_empty and value == "":
                continue
            values[key.strip()] = _Value(value, origin)
    return layer


def _merge(into: _Layer, layer: _Layer) -> None:
    for section, values in layer.items():
        into.setdefault(section, {}).update(values)


def env_var_name(section: str, key: str) -> str:
    """``AUTHSVC_<SECTION>_<KEY>``: section's ``.``/``-`` and key's ``.`` become ``_``."""
    sec = section.upper().replace(".", "_").replace("-", "_")
    return f"{ENV_PREFIX}_{sec}_{key.upper().replace('.', '_')}"


def _parse_cfg_args(args: Sequence[str]) -> tuple[_Layer, _Layer, list[str]]:
    defaults: _Layer = {}
    overrides: _Layer = {}
    problems: list[str] = []
    for arg in args:
        target = overrides
        body = arg[len("cfg:") :] if arg.startswith("cfg:") else ""
        if body.startswith("default."):
            target, body = defaults, body[len("default.") :]
        name, sep, value = body.partition("=")
        section, dot, key = name.rpartition(".")
        if not arg.startswith("cfg:") or not sep or not dot or not section or not key:
            problems.append(f"argument {arg!r}: expected cfg:SECTION.KEY=VALUE")
            continue
        target.setdefault(section, {})[key] = _Value(value, f"argument {arg.partition('=')[0]}")
    return defaults, overrides, problems


_INTERP = re.compile(r"%\(([^)]+)\)s")
_EXPAND = re.compile(r"\$(__[a-z]+)?\{([^}]*)\}")


def _interpolate(value: str, section: Mapping[str, _Value], depth: int = 0) -> str:
    """go-ini's ``%(key)s`` within a section; unknown names and a lone ``%`` stay as written."""
    if depth > 20 or "%(" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        ref = section.get(m[1])
        return _interpolate(ref.text, section, depth + 1) if ref is not None else m[0]

    return _INTERP.sub(repl, value)


def _expand(value: str, env: Mapping[str, str], home: Path) -> str:
    """Expand ``${VAR}``, ``$__env{VAR}``, ``$__file{PATH}``; raise ValueError saying why.

    A relative ``$__file{}`` path is relative to the home path, like ``key_file``.
    """
    if "$" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        provider, arg = m[1], m[2].strip()
        if provider in (None, "__env"):
            if arg not in env:
                raise ValueError(f"environment variable {arg} is not set (in {m[0]})")
            return env[arg]
        if provider == "__file":
            try:
                return (home / arg).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read file {arg} (in {m[0]}): {exc.strerror or exc}"
                ) from None
        if provider == "__vault":
            raise ValueError("$__vault{} is not supported: use $__file{} or $__env{}")
        raise ValueError(f"unknown expansion {m[0]}: use ${{VAR}}, $__env{{}} or $__file{{}}")

    return _EXPAND.sub(repl, value)


# --------------------------------------------------------------------------- typed reading
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected a boolean: true or false (also yes/no, on/off, 1/0)")


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[,\s]+", text.strip()) if part)


class _Reader:
    """Reads typed values out of the merged layers, collecting problems instead of failing."""

    def __init__(
        self,
        values: Mapping[str, Mapping[str, _Value]],
        home: Path,
        unexpanded: Set[tuple[str, str]] = frozenset(),
    ) -> None:
        self.values = values
        self.home = home
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        # Values whose expansion failed: that problem is reported already, and a
        # second one about the unexpanded text would only mislead.
        self.unexpanded = unexpanded

    def origin(self, section: str, key: str) -> str:
        v = self.values.get(section, {}).get(key)
        return v.origin if v else "conf/defaults.ini"

    def warn(self, section: str, key: str, why: str) -> None:
        self.warnings.append(str(Problem(self.origin(section, key), section, key, why)))

    def fail(self, section: str, key: str, why: str) -> None:
        if (section, key) in self.unexpanded:
            return
        self.problems.append(Problem(self.origin(section, key), section, key, why))

    def text(self, section: str, key: str) -> str:
        v = self.values.get(section, {}).get(key)
        if v is not None:
            return v.text
        schema = _schema(section)
        return schema[key] if schema is not None else ""

    def parsed(self, section: str, key: str, parse: Callable[[str], _T], fallback: _T) -> _T:
        try:
            return parse(self.text(section, key))
        except (ValueError, TypeError) as exc:
            self.fail(section, key, str(exc))
            return fallback

    def path(self, section: str, key: str) -> str:
        """A file path; relative paths are relative to the home path. Empty stays empty."""
        text = self.text(section, key).strip()
        return str(self.home / text) if text and not Path(text).is_absolute() else text

    def flag(self, section: str, key: str) -> bool:
        return self.parsed(section, key, parse_bool, False)

    def duration(self, section: str, key: str) -> float:
        return self.parsed(section, key, parse_duration, 0.0)

    def number(self, section: str, key: str, lo: int = 0, hi: int | None = None) -> int:
        def parse(text: str) -> int:
            try:
                n = int(text.strip())
            except ValueError:
                raise ValueError(f"expected a whole number, got {text!r}") from None
            if n < lo or (hi is not None and n > hi):
                raise ValueError(f"expected a number from {lo} to {hi if hi is not None else '∞'}")
            return n

        return self.parsed(section, key, parse, lo)

    def choice(self, section: str, key: str, choices: Sequence[str], fold: bool = True) -> str:
        text = self.text(section, key).strip()
        for c in choices:
            if text == c or (fold and text.lower() == c.lower()):
                return c
        self.fail(section, key, f"expected one of {', '.join(choices)}, got {text!r}")
        return choices[0]

    def plugin(self, section: str, key: str, group: str, name: str) -> str:
        if name:
            names = installed_plugins(group)
            if name not in names:
                self.fail(
                    section,
                    key,
                    f"no plugin {name!r} in entry point group {group} "
                    f"(installed: {', '.join(sorted(names)) or 'none'})",
                )
        return name


# --------------------------------------------------------------------------- loading
def find_homepath(homepath: str | os.PathLike[str] | None) -> Path:
    """``--homepath``, else the working directory if it holds conf/defaults.ini."""
    if homepath is not None:
        return Path(homepath).resolve()
    cwd = Path.cwd()
    if (cwd / "conf" / "defaults.ini").is_file():
        return cwd
    raise ConfigError(
        [
            "no home path: pass --homepath DIR, or run where conf/defaults.ini is (not found in "
            f"{cwd})"
        ]
    )


def load_settings(
    homepath: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, layer, expand and validate the configuration.

    Raises ConfigError listing every problem found, not just the first.
    """
    env = os.environ if environ is None else environ
    home = find_homepath(homepath)
    defaults_path = home / "conf" / "defaults.ini"
    merged: _Layer = {}
    problems: list[Problem | str] = []
    warnings: list[str] = []
    files = [defaults_path]

    def add(layer: _Layer) -> None:
        # Grafana's aliases become our names within each layer, so that an alias
        # wins over a lower layer's value of the new name (defaults.ini has one).
        for (section, old), new in ALIASES.items():
            values = layer.get(section, {})
            if old in values:
                v = values.pop(old)
                warnings.append(f"{v.origin} [{section}] {old}: deprecated alias, use {new}")
                values.setdefault(new, v)
        _merge(merged, layer)

    defaults_layer = read_ini(defaults_path, _display(defaults_path, home))
    add({section: dict(values) for section, values in defaults_layer.items()})
    arg_defaults, arg_overrides, arg_problems = _parse_cfg_args(args)
    problems.extend(arg_problems)
    add(arg_defaults)

    custom: Path | None
    if config is not None:
        custom = Path(config)
        if not custom.is_absolute() and not custom.exists():
            custom = home / custom
        if not custom.is_file():
            raise ConfigError([f"{config}: config file not found"])
    else:
        custom = home / "conf" / "custom.ini"
        custom = custom if custom.is_file() else None
    if custom is not None:
        files.append(custom)
        add(read_ini(custom, _display(custom, home), skip_empty=True))

    applied: list[str] = []
    known_keys = _known_keys(merged)
    problems.extend(_named_issuer_problems(merged, known_keys))
    for section, keys in known_keys.items():
        for key in keys:
            name = env_var_name(section, key)
            value = env.get(name, "")
            if value:
                merged.setdefault(section, {})[key] = _Value(value, f"env {name}")
                shown = "*********" if _SECRET_NAME.search(key) else value
                applied.append(f"{name}={shown}")
    add(arg_overrides)
    _named_issuer_defaults(merged, defaults_layer)

    for section, values in merged.items():
        known = _schema(section)
        if known is None:
            if not section.startswith("plugin."):
                warnings.append(f"unknown section [{section}] (keys: {', '.join(values)})")
            continue
        for key, v in values.items():
            if key not in known:
                warnings.append(f"{v.origin} [{section}] {key}: unknown key, ignored")

    final: dict[str, dict[str, _Value]] = {}
    unexpanded: set[tuple[str, str]] = set()
    for section, values in merged.items():
        out = final.setdefault(section, {})
        for key, v in values.items():
            text = _interpolate(v.text, values)
            try:
                text = _expand(text, env, home)
            except ValueError as exc:
                problems.append(Problem(v.origin, section, key, str(exc)))
                unexpanded.add((section, key))
            out[key] = _Value(text, v.origin)

    reader = _Reader(final, home, unexpanded)
    settings = _build(reader, home, tuple(files), tuple(warnings), tuple(applied))
    problems.extend(reader.problems)
    if problems:
        raise ConfigError(problems, settings.warnings, settings)
    return settings


def _known_keys(merged: Mapping[str, Mapping[str, _Value]]) -> dict[str, list[str]]:
    """Every key the environment may override: the schema's, and any a file names.

    A named issuer's section, once a file (or argument) names it, has every key of
    ``[auth.jwt]`` (CONTRACT §4: ``AUTHSVC_AUTH_JWT_<NAME>_<KEY>``).
    """
    keys = {section: list(values) for section, values in SCHEMA.items()}
    for section, values in merged.items():
        bucket = keys.setdefault(section, [])
        if named_issuer(section) is not None:
            bucket.extend(k for k in SCHEMA[ISSUER_SECTION] if k not in bucket)
        if named_assertion(section) is not None:
            bucket.extend(k for k in ASSERTION_SCHEMA if k not in bucket)
        bucket.extend(k for k in values if k not in bucket)
    return keys


def _named_issuer_problems(
    merged: Mapping[str, Mapping[str, _Value]], known: Mapping[str, list[str]]
) -> list[Problem]:
    """Section names outside CONTRACT §4's pattern, and environment names two keys share."""
    problems: list[Problem] = []
    owners: dict[str, tuple[str, str]] = {}
    for section in known:
        name = named_issuer(section)
        if name is None and section != ISSUER_SECTION:
            continue
        origin = next(iter(merged.get(section, {}).values()), _Value("", "conf/defaults.ini"))
        if name is not None and not ISSUER_NAME.match(name):
            problems.append(
                Problem(
                    origin.origin,
                    section,
                    "",
                    "an issuer name is 1 to 32 of a-z, 0-9, - and _, starting with a letter "
                    "or digit",
                )
            )
            continue
        for key in SCHEMA[ISSUER_SECTION]:
            env = env_var_name(section, key)
            other = owners.setdefault(env, (section, key))
            if other != (section, key):
                problems.append(
                    Problem(
                        origin.origin,
                        section,
                        key,
                        f"its environment variable {env} is also [{other[0]}] {other[1]}'s: "
                        "rename the issuer",
                    )
                )
    return problems


def _named_issuer_defaults(
    merged: dict[str, dict[str, _Value]], defaults: Mapping[str, Mapping[str, _Value]]
) -> None:
    """A named issuer's missing keys: ``conf/defaults.ini``'s ``[auth.jwt]`` values, never
    the operator's own ``[auth.jwt]``; ``enabled`` defaults to true."""
    base = defaults.get(ISSUER_SECTION, {})
    for section, values in merged.items():
        if named_issuer(section) is None or not values:
            continue
        origin = next(iter(values.values())).origin
        for key, default in SCHEMA[ISSUER_SECTION].items():
            if key not in values:
                value = base.get(key, _Value(default, "conf/defaults.ini"))
                values[key] = _Value("true" if key == "enabled" else value.text, origin)


def _build(
    r: _Reader,
    home: Path,
    files: tuple[Path, ...],
    warnings: tuple[str, ...],
    overrides: tuple[str, ...],
) -> Settings:
    def under(base: Path, text: str) -> Path:
        p = Path(text)
        return p if p.is_absolute() else base / p

    data = under(home, r.text("paths", "data"))
    paths = PathsSettings(data=data, logs=under(home, r.text("paths", "logs")))

    addr = r.text("server", "http_addr").strip() or "127.0.0.1"
    port = r.number("server", "http_port", 0, 65535)
    root_url = r.text("server", "root_url").strip()
    if root_url and urlsplit(root_url).scheme not in ("http", "https"):
        r.fail("server", "root_url", "expected an http:// or https:// URL")
    host = f"[{addr}]" if ":" in addr else addr
    server = ServerSettings(
        http_addr=addr,
        http_port=port,
        workers=r.number("server", "workers", 0, 512),
        root_url=(root_url or f"http://{host}:{port}/").rstrip("/") + "/",
    )

    db_type = r.choice("database", "type", ("sqlite3", "postgres"))
    db_path = under(data, r.text("database", "path"))
    db_url = r.text("database", "url").strip()
    if db_url:
        db_url = _sqlalchemy_url(r, db_url)
    elif db_type == "postgres":
        r.fail("database", "url", "type = postgres needs url = postgres://user@host:port/db")
    else:
        db_url = f"sqlite:///{db_path}"
    database = DatabaseSettings(
        type="postgres" if db_url.startswith("postgresql") else db_type,
        path=db_path,
        url=db_url,
        max_open_conn=r.number("database", "max_open_conn", 0, 10000),
    )

    remote_cache = _remote_cache(r)
    logs = LogSettings(
        level=r.choice("log", "level", ("debug", "info", "warn", "error", "critical")),
        format=r.choice("log", "format", ("text", "json")),
        audit=r.flag("log", "audit"),
    )
    metrics = MetricsSettings(enabled=r.flag("metrics", "enabled"))
    auth = AuthSettings(
        login_cookie_name=_cookie_name(r),
        login_maximum_inactive_lifetime=r.duration(
            "auth", "login_maximum_inactive_lifetime_duration"
        ),
        login_maximum_lifetime=r.duration("auth", "login_maximum_lifetime_duration"),
        token_rotation_interval=60.0 * r.number("auth", "token_rotation_interval_minutes", 0),
        signout_redirect_url=r.text("auth", "signout_redirect_url").strip(),
        session_store=r.plugin(
            "auth",
            "session_store",
            "authsvc.session_stores",
            r.text("auth", "session_store").strip() or "sql",
        ),
    )
    security = SecuritySettings(
        cookie_secure=r.flag("security", "cookie_secure"),
        cookie_samesite=r.choice(
            "security", "cookie_samesite", ("lax", "strict", "none", "disabled")
        ),
        allow_embedding=r.flag("security", "allow_embedding"),
    )
    users = UsersSettings(auto_assign_role=r.choice("users", "auto_assign_role", ROLES))
    issuers = {"jwt": _jwt(r, ISSUER_SECTION)}
    for section in r.values:
        name = named_issuer(section)
        if name is not None and ISSUER_NAME.match(name):
            issuers[name] = _jwt(r, section)
    signing = _signing(r, server.root_url)
    upstream_assertion = _upstream_assertion(r, signing, server.root_url)
    assertions = _assertions(r, signing)
    raw = {s: {k: v.text for k, v in vals.items()} for s, vals in r.values.items()}
    origins = {(s, k): v.origin for s, vals in r.values.items() for k, v in vals.items()}
    return Settings(
        homepath=home,
        config_files=files,
        paths=paths,
        server=server,
        database=database,
        remote_cache=remote_cache,
        log=logs,
        metrics=metrics,
        auth=auth,
        security=security,
        users=users,
        jwt=issuers["jwt"],
        issuers=issuers,
        signing=signing,
        upstream_assertion=upstream_assertion,
        assertions=assertions,
        warnings=(*warnings, *r.warnings),
        overrides=overrides,
        raw=raw,
        origins=origins,
    )


def _sqlalchemy_url(r: _Reader, url: str) -> str:
    """``postgres://`` and ``postgresql://`` work as written, with the installed driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        r.fail("database", "url", "expected a URL like postgres://user@host:5432/db")
        return url
    base = scheme.split("+")[0].lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql+{_postgres_driver()}://{rest}"
    if base in ("sqlite", "sqlite3"):
        return f"sqlite://{rest}"
    r.fail("database", "url", f"unsupported database {scheme!r}: expected postgres:// or sqlite://")
    return url


def _postgres_driver() -> str:
    import importlib.util

    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2"), ("pg8000", "pg8000")):
        if importlib.util.find_spec(module) is not None:
            return driver
    return "psycopg"


def _remote_cache(r: _Reader) -> RemoteCacheSettings:
    cache_type = r.choice("remote_cache", "type", ("memory", "redis"))
    connstr = r.text("remote_cache", "connstr").strip()
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in connstr.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            r.fail("remote_cache", "connstr", f"expected key=value pairs, got {part!r}")
            continue
        opts[k.strip()] = v.strip()
    unknown = set(opts) - {"addr", "db", "password", "ssl", "pool_size"}
    if unknown:
        r.fail("remote_cache", "connstr", f"unknown option(s) {', '.join(sorted(unknown))}")
    host, _, port_text = opts.get("addr", "127.0.0.1:6379").rpartition(":")
    port, db = 6379, 0
    try:
        port = int(port_text)
        db = int(opts.get("db", "0"))
    except ValueError:
        r.fail("remote_cache", "connstr", "expected addr=HOST:PORT and db=NUMBER")
    ssl = False
    try:
        ssl = parse_bool(opts.get("ssl", "false"))
    except ValueError as exc:
        r.fail("remote_cache", "connstr", f"ssl: {exc}")
    return RemoteCacheSettings(
        type=cache_type,
        connstr=connstr,
        redis_host=host.strip("[]") or "127.0.0.1",
        redis_port=port,
        redis_db=db,
        redis_password=opts.get("password", ""),
        redis_ssl=ssl,
    )


def _cookie_name(r: _Reader) -> str:
    name = r.text("auth", "login_cookie_name").strip()
    if not _HEADER_TOKEN.match(name):
        r.fail("auth", "login_cookie_name", "expected a cookie name (letters, digits, - and _)")
    return name


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: the only hosts plain http may reach (CONTRACT §2)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _expect_claims(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    # Grafana refuses these at start-up: a wrongly typed expectation fails every token.
    for name in ("iss", "sub"):
        if name in value and not isinstance(value[name], str):
            raise ValueError(f"{name!r} must be a string, got {json.dumps(value[name])}")
    aud = value.get("aud")
    if "aud" in value and not (
        isinstance(aud, str)
        or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))
    ):
        raise ValueError(f"'aud' must be a string or a list of strings, got {json.dumps(aud)}")
    return value


def _jwt(r: _Reader, s: str) -> JWTSettings:
    """One issuer's section: ``[auth.jwt]`` or ``[auth.jwt.NAME]``."""
    name = named_issuer(s) or "jwt"
    enabled = r.flag(s, "enabled")

    header_name = r.text(s, "header_name").strip()
    if header_name and not _HEADER_TOKEN.match(header_name):
        r.fail(s, "header_name", f"expected an HTTP header name, got {header_name!r}")
    elif enabled and not header_name:
        r.fail(s, "header_name", "required when enabled = true (e.g. X-JWT-Assertion)")

    algorithms = parse_list(r.text(s, "algorithms"))
    for alg in algorithms:
        if alg.lower() == "none":
            r.fail(s, "algorithms", "'none' can never be allowed")
        elif alg not in ALGORITHMS:
            r.fail(s, "algorithms", f"unknown algorithm {alg!r} (known: {' '.join(ALGORITHMS)})")
    if not algorithms:
        r.fail(s, "algorithms", "expected at least one algorithm")

    oidc_discovery = r.flag(s, "oidc_discovery")
    sources = [
        k
        for k in KEY_SOURCES
        if (oidc_discovery if k == "oidc_discovery" else r.text(s, k).strip())
    ]
    if len(sources) > 1:
        r.fail(s, sources[1], f"only one key source may be set, but {' and '.join(sources)} are")
    issuer = parse_list(r.text(s, "issuer"))
    if oidc_discovery:
        if len(issuer) != 1:
            r.fail(s, "issuer", "oidc_discovery = true needs exactly one issuer URL")
        else:
            _check_url(r, s, "issuer", issuer[0])
    audience = parse_list(r.text(s, "audience"))
    if "*" in audience and len(audience) > 1:
        r.fail(s, "audience", "'*' accepts any audience: list it alone")

    for key in ("key_file", "jwk_set_file", "tls_client_ca", "jwk_set_bearer_token_file"):
        path = r.path(s, key)
        if path and not Path(path).is_file():
            r.fail(s, key, f"file not found: {path}")
        elif path and key == "tls_client_ca":
            try:
                ssl.create_default_context(cafile=path)
            except (ssl.SSLError, OSError, ValueError) as exc:
                r.fail(s, key, f"no usable PEM certificate in {path}: {exc}")
        elif (
            path
            and key == "jwk_set_bearer_token_file"
            and not Path(path).read_text(encoding="utf-8", errors="replace").strip()
        ):
            r.fail(s, key, f"the file holds no token: {path}")

    urls = parse_list(r.text(s, "jwk_set_url"))
    for url in urls:
        _check_url(r, s, "jwk_set_url", url)
    if len(set(urls)) != len(urls):
        r.fail(s, "jwk_set_url", "a URL is listed twice")

    # A plugin chosen by another key is blamed on that key, where the operator wrote it.
    # Discovery is jwk_set_url's provider reading the URL from the issuer's document.
    configured_provider = r.text(s, "key_provider").strip()
    chosen = sources[0] if sources else ""
    key_provider = r.plugin(
        s,
        "key_provider" if configured_provider or not sources else sources[0],
        "authsvc.key_providers",
        configured_provider or ("jwk_set_url" if chosen == "oidc_discovery" else chosen),
    )
    remote = bool(urls) or oidc_discovery
    expect_claims: dict[str, Any] = r.parsed(s, "expect_claims", _expect_claims, {})
    expected_aud = "aud" in expect_claims
    if enabled and remote and not audience and not expected_aud:
        why = (
            "keys from a JWKS URL or discovery need an audience (audience = ... or "
            "expect_claims.aud): without one, a token the identity provider minted for any "
            "other client would pass"
        )
        if name == "jwt":
            r.warn(s, "audience", why + " (a warning for [auth.jwt], as in Grafana)")
        else:
            r.fail(s, "audience", why)
    if enabled and not key_provider:
        r.fail(s, "enabled", f"enabled = true needs a key source: one of {', '.join(KEY_SOURCES)}")

    auto_sign_up = r.flag(s, "auto_sign_up")
    configured_provisioner = r.text(s, "user_provisioner").strip()
    provisioner = configured_provisioner or ("auto_sign_up" if auto_sign_up else "lookup_only")
    r.plugin(
        s,
        "user_provisioner" if configured_provisioner else "auto_sign_up",
        "authsvc.provisioners",
        provisioner,
    )

    for key in (
        "username_attribute_path",
        "email_attribute_path",
        "role_attribute_path",
        "groups_attribute_path",
    ):
        expr = r.text(s, key).strip()
        if expr:
            _check_jmespath(r, s, key, expr)

    return JWTSettings(
        enabled=enabled,
        header_name=header_name,
        url_login=r.flag(s, "url_login"),
        username_claim=r.text(s, "username_claim").strip(),
        email_claim=r.text(s, "email_claim").strip(),
        username_attribute_path=r.text(s, "username_attribute_path").strip(),
        email_attribute_path=r.text(s, "email_attribute_path").strip(),
        jwk_set_url=urls,
        jwk_set_bearer_token_file=r.path(s, "jwk_set_bearer_token_file"),
        jwk_set_file=r.path(s, "jwk_set_file"),
        jwk_set_value=r.text(s, "jwk_set_value").strip(),
        key_file=r.path(s, "key_file"),
        key_value=r.text(s, "key_value").strip(),
        key_id=r.text(s, "key_id").strip(),
        hmac_secret=r.text(s, "hmac_secret"),
        cache_ttl=r.duration(s, "cache_ttl"),
        expect_claims=expect_claims,
        role_attribute_path=r.text(s, "role_attribute_path").strip(),
        role_attribute_strict=r.flag(s, "role_attribute_strict"),
        groups_attribute_path=r.text(s, "groups_attribute_path").strip(),
        allow_assign_server_admin=r.flag(s, "allow_assign_server_admin"),
        skip_role_sync=r.flag(s, "skip_role_sync"),
        auto_sign_up=auto_sign_up,
        tls_client_ca=r.path(s, "tls_client_ca"),
        tls_skip_verify_insecure=r.flag(s, "tls_skip_verify_insecure"),
        algorithms=algorithms,
        leeway=r.duration(s, "leeway"),
        require_exp=r.flag(s, "require_exp"),
        max_token_lifetime=r.duration(s, "max_token_lifetime"),
        jwk_set_refresh_cooldown=r.duration(s, "jwk_set_refresh_cooldown"),
        jwk_set_max_stale=r.duration(s, "jwk_set_max_stale"),
        jwk_set_timeout=r.duration(s, "jwk_set_timeout"),
        jwk_set_max_bytes=r.number(s, "jwk_set_max_bytes", 1, 1 << 30),
        verified_cache_size=r.number(s, "verified_cache_size", 0, 10_000_000),
        verified_cache_max_bytes=r.number(s, "verified_cache_max_mb", 1, 1 << 20) << 20,
        token_types=frozenset(t.lower() for t in parse_list(r.text(s, "token_types"))),
        link_existing_users=r.flag(s, "link_existing_users"),
        key_provider=key_provider,
        user_provisioner=provisioner,
        session_lifetime_from_token=r.flag(s, "session_lifetime_from_token"),
        issuer=issuer,
        audience=audience,
        oidc_discovery=oidc_discovery,
        claims_namespace=r.text(s, "claims_namespace").strip(),
        scope_claim=r.text(s, "scope_claim").strip(),
        forward_claims=parse_list(r.text(s, "forward_claims")),
        name=name,
        section=s,
    )


def _check_url(r: _Reader, section: str, key: str, url: str) -> None:
    """https, or http to a loopback host (CONTRACT §2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        r.fail(section, key, f"expected an https:// URL, got {url!r}")
    elif parts.scheme == "http" and not is_loopback(parts.hostname):
        r.fail(section, key, f"must be https:// for the non-loopback host {parts.hostname}")


def _check_jmespath(r: _Reader, section: str, key: str, expr: str) -> None:
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expr)
    except JMESPathError as exc:
        r.fail(section, key, f"invalid JMESPath expression {expr!r}: {exc}")


# --------------------------------------------------------------------------- signing (§5)
_REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
_SIGNING_KEY_KEYS = ("key_file", "certificate_file", "key_id", "algorithm")


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("expected a duration above 0, like 5m")
    return seconds


def _fixed_claims(text: str) -> dict[str, Any]:
    """``claims``: a JSON object of extra claims; the registered ones are authsvc's to set."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    taken = sorted(_REGISTERED_CLAIMS & set(value))
    if taken:
        raise ValueError(
            f"{', '.join(taken)} cannot be fixed here: authsvc sets them "
            "(issuer, subject, audience and lifetime choose their values)"
        )
    return value


def _signing_key(
    r: _Reader, s: str, inherited: SigningKeySettings | None = None
) -> SigningKeySettings:
    """Section ``s``'s key settings; an assertion's inherit ``[signing]``'s as
    SigningKeySettings says. The key material itself is checked by authsvc.signing."""
    for key in ("key_file", "certificate_file"):
        path = r.path(s, key)
        if path and not Path(path).is_file():
            r.fail(s, key, f"file not found: {path}")
    algorithm = r.text(s, "algorithm").strip()
    if algorithm and algorithm not in SIGNING_ALGORITHMS:
        r.fail(s, "algorithm", f"expected one of {' '.join(SIGNING_ALGORITHMS)}, got {algorithm!r}")
    own = {
        "key_file": r.path(s, "key_file"),
        "certificate_file": r.path(s, "certificate_file"),
        "key_id": r.text(s, "key_id").strip(),
        "algorithm": algorithm,
    }
    if inherited is not None and not own["key_file"]:
        values = {k: own[k] or getattr(inherited, k) for k in _SIGNING_KEY_KEYS}
        blame = {k: s if own[k] else inherited.blame.get(k, s) for k in _SIGNING_KEY_KEYS}
    else:
        values, blame = own, dict.fromkeys(_SIGNING_KEY_KEYS, s)
    if own["certificate_file"] and not values["key_file"]:
        r.fail(s, "certificate_file", "needs key_file: a certificate belongs to a signing key")
    return SigningKeySettings(
        key_file=values["key_file"],
        certificate_file=values["certificate_file"],
        key_id=values["key_id"],
        algorithm=values["algorithm"],
        blame=blame,
    )


def _signing(r: _Reader, root_url: str) -> SigningSettings:
    s = "signing"
    key = _signing_key(r, s)
    previous = tuple(
        p if Path(p).is_absolute() else str(r.home / p)
        for p in parse_list(r.text(s, "previous_key_files"))
    )
    for path in previous:
        if not Path(path).is_file():
            r.fail(s, "previous_key_files", f"file not found: {path}")
    if previous and not key.key_file:
        r.fail(s, "previous_key_files", "needs key_file: previous keys are published beside it")
    if len(set(previous)) != len(previous):
        r.fail(s, "previous_key_files", "a file is listed twice")
    if key.key_file and key.key_file in previous:
        r.fail(s, "previous_key_files", "lists key_file itself: the current key is published")
    return SigningSettings(key, previous, r.text(s, "issuer").strip() or root_url)


def _upstream_assertion(
    r: _Reader, signing: SigningSettings, root_url: str
) -> UpstreamAssertionSettings:
    s = "upstream_assertion"
    enabled = r.flag(s, "enabled")
    header_name = r.text(s, "header_name").strip()
    if not _HEADER_TOKEN.match(header_name):
        r.fail(s, "header_name", f"expected an HTTP header name, got {header_name!r}")
    if enabled and not signing.enabled:
        r.fail(s, "enabled", "enabled = true needs [signing] key_file: the assertion is signed")
    return UpstreamAssertionSettings(
        enabled=enabled,
        header_name=header_name,
        audience=r.text(s, "audience").strip() or root_url,
        lifetime=r.parsed(s, "lifetime", _positive_duration, 300.0),
    )


def _assertions(r: _Reader, signing: SigningSettings) -> dict[str, AssertionSettings]:
    """Every ``[assertion.NAME]``, validated whether or not anyone asks for it."""
    found: dict[str, AssertionSettings] = {}
    env_owner: dict[str, str] = {}
    for section, values in r.values.items():
        name = named_assertion(section)
        if name is None:
            continue
        origin = next(iter(values.values())).origin if values else "conf/defaults.ini"
        if not ISSUER_NAME.match(name):
            why = "a NAME is 1 to 32 of a-z, 0-9, - and _, starting with a letter or digit"
            r.problems.append(Problem(origin, section, "", why))
            continue
        prefix = env_var_name(section, "")
        other = env_owner.setdefault(prefix, section)
        if other != section:
            why = f"its environment variables ({prefix}*) are also [{other}]'s: rename it"
            r.problems.append(Problem(origin, section, "", why))
            continue
        found[name] = _assertion(r, section, name, signing)
    return found


def _assertion(r: _Reader, s: str, name: str, signing: SigningSettings) -> AssertionSettings:
    audience = r.text(s, "audience").strip()
    if not audience:
        r.fail(s, "audience", "required: the assertion's aud (e.g. the token endpoint URL)")
    upn = r.text(s, "upn_claim").strip()
    if not upn:
        r.fail(s, "upn_claim", "expected a claim name, or - to leave the claim out")
    elif upn in _REGISTERED_CLAIMS:
        r.fail(s, "upn_claim", f"{upn!r} is a registered claim authsvc sets; choose another name")
    claims: dict[str, Any] = r.parsed(s, "claims", _fixed_claims, {})
    if upn in claims:
        r.fail(s, "claims", f"{upn!r} is upn_claim's: it carries the caller's email or login")
    key = _signing_key(r, s, signing.key)
    if not key.key_file:
        r.fail(s, "key_file", "no key to sign with: set key_file here or [signing] key_file")
    min_role = r.text(s, "min_role").strip()
    if min_role:
        min_role = r.choice(s, "min_role", ROLES)
    return AssertionSettings(
        name=name,
        section=s,
        audience=audience,
        issuer=r.text(s, "issuer").strip() or signing.issuer,
        subject=r.text(s, "subject").strip(),
        upn_claim="" if upn == "-" else upn,
        claims=claims,
        lifetime=r.parsed(s, "lifetime", _positive_duration, 300.0),
        key=key,
        min_role=min_role,
        groups=parse_list(r.text(s, "groups")),
    )
