"""docs/reference.md and the OpenAPI document cover every config key, endpoint and messageId.

What must be covered is read at test time, never listed here: the keys of
conf/defaults.ini, the URL rules of an app built by the factory with every
feature enabled, and the messageIds of ``authsvc.errors``. The only list kept
here is CONTRACT §5's signing keys, which must be documented even while
conf/defaults.ini lacks them (``[assertion.NAME]`` has no section there).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from flask import Flask

from authsvc import errors
from authsvc.openapi import build_document, message_ids, when

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "reference.md"
DEFAULTS = REPO / "conf" / "defaults.ini"

CONTRACT_SIGNING_KEYS = {
    "signing": {
        "key_file",
        "certificate_file",
        "key_id",
        "algorithm",
        "previous_key_files",
        "issuer",
    },
    "upstream_assertion": {"enabled", "header_name", "audience", "lifetime"},
    "assertion.NAME": {
        "audience",
        "issuer",
        "subject",
        "upn_claim",
        "claims",
        "lifetime",
        "key_file",
        "certificate_file",
        "key_id",
        "algorithm",
        "min_role",
        "groups",
    },
}

_SECTION_HEADING = re.compile(r"^### `\[([^\]]+)\]`")
_KEY_ROW = re.compile(r"^\| `([A-Za-z0-9_.]+)` \|")
_ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`")
_ERROR_ROW = re.compile(r"^\| `([a-z][a-z0-9._-]*)` \| (\d{3}) \|")
_PLACEHOLDER = re.compile(r"<(?:[^:>]+:)?[^>]+>|\{[^}]+\}")
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _text() -> str:
    return DOCS.read_text(encoding="utf-8")


def _normal(path: str) -> str:
    """``/api/admin/users/<int:user_id>`` and ``/api/admin/users/{user_id}`` alike."""
    return _PLACEHOLDER.sub("{}", path)


# --------------------------------------------------------------------------- what the docs say
def documented_keys() -> dict[str, set[str]]:
    """Section → the keys of its table, from the ``### `[section]``` headings."""
    keys: dict[str, set[str]] = {}
    section: str | None = None
    for line in _text().splitlines():
        heading = _SECTION_HEADING.match(line)
        if heading:
            section = heading.group(1)
            keys.setdefault(section, set())
        elif line.startswith("## "):
            section = None
        elif section is not None and (row := _KEY_ROW.match(line)):
            keys[section].add(row.group(1))
    return keys


def documented_endpoints() -> set[tuple[str, str]]:
    return {(m, _normal(p)) for m, p in _ENDPOINT.findall(_text())}


def documented_errors() -> dict[str, int]:
    section = _text().split("\n## Error ids\n", 1)[1].split("\n## ", 1)[0]
    return {
        row.group(1): int(row.group(2))
        for line in section.splitlines()
        if (row := _ERROR_ROW.match(line))
    }


# --------------------------------------------------------------------------- what exists
def default_keys() -> dict[str, set[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    with DEFAULTS.open(encoding="utf-8") as f:
        parser.read_file(f)
    return {section: set(parser[section]) for section in parser.sections()}


def required_keys() -> dict[str, set[str]]:
    required = default_keys()
    for section, keys in CONTRACT_SIGNING_KEYS.items():
        required.setdefault(section, set()).update(keys)
    return required


@pytest.fixture
def full_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """The factory's app with every feature on: an issuer, metrics, signing, assertions."""
    values = {
        "auth.jwt": {"enabled": "true", "header_name": "Authorization", "hmac_secret": "k" * 64},
        "metrics": {"enabled": "true"},
    }
    if "signing" in default_keys():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        (tmp_path / "signing.pem").write_bytes(pem)
        values["signing"] = {"key_file": str(tmp_path / "signing.pem")}
        values["upstream_assertion"] = {"enabled": "true"}
        values["assertion.partner"] = {"audience": "https://partner.example/token"}
    return make_app(values)


def app_endpoints(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, _normal(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) & _METHODS
    }


def openapi_endpoints() -> set[tuple[str, str]]:
    return {
        (method.upper(), _normal(path))
        for path, item in build_document()["paths"].items()
        for method in item
    }


def error_classes() -> dict[str, int]:
    return {
        value.message_id: value.status
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.AuthsvcError)
    }


# --------------------------------------------------------------------------- tests
def test_every_config_key_is_documented() -> None:
    documented = documented_keys()
    missing = {
        f"[{section}] {key}"
        for section, keys in required_keys().items()
        for key in keys - documented.get(section, set())
    }
    assert not missing, f"docs/reference.md lacks {sorted(missing)}"


def test_no_documented_key_is_unknown() -> None:
    """A key documented but in neither conf/defaults.ini nor the contract is stale."""
    known = required_keys()
    stale = {
        f"[{section}] {key}"
        for section, keys in documented_keys().items()
        for key in keys - known.get(section, set())
    }
    assert not stale, f"docs/reference.md documents unknown keys {sorted(stale)}"


def test_every_endpoint_is_documented(full_app: Flask) -> None:
    documented = documented_endpoints()
    missing = (app_endpoints(full_app) | openapi_endpoints()) - documented
    assert not missing, f"docs/reference.md lacks {sorted(missing)}"
    phantom = documented - app_endpoints(full_app)
    assert not phantom, f"docs/reference.md documents routes the app lacks: {sorted(phantom)}"


def test_openapi_lists_every_url_rule(full_app: Flask) -> None:
    """Every rule (and method) of the app is in the document, and nothing else is."""
    assert openapi_endpoints() == app_endpoints(full_app)


def test_every_message_id_is_documented() -> None:
    documented = documented_errors()
    enum = build_document()["components"]["schemas"]["Error"]["properties"]["messageId"]["enum"]
    for message_id, status in error_classes().items():
        assert documented.get(message_id) == status, f"docs/reference.md: {message_id} {status}"
        assert message_id in enum, f"the OpenAPI messageId enum lacks {message_id}"
        assert when(message_id), f"authsvc/openapi.py says nothing of when {message_id} is sent"
    assert set(enum) <= set(documented)
    assert set(message_ids()) == set(enum)
