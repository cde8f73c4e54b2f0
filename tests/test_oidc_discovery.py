"""``oidc_discovery`` against a real OpenID Provider: panva/oidc-provider under node.

tests/oidc_provider/ holds it: package.json pins oidc-provider, server.js
starts it on 127.0.0.1 with signing keys this module generates, so the test
knows the provider's kids and holds its private keys. ``npm ci`` installs it
on first use (.ci/run runs it up front). Without node or npm the tests skip;
under CI=true they fail instead.

The key provider is built through its entry point from ``[auth.jwt]``
settings, as the app builds it for any issuer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc.jwk import ECKey, Key, RSAKey
from servers import IN_CI, Process, require_binary
from tokens import sign

from authsvc.config import Settings
from authsvc.errors import InvalidToken, KeysUnavailable
from authsvc.keys.base import KeyProvider
from authsvc.keys.jwks_url import JwksUrlProvider
from authsvc.plugins import PluginContext, load_plugin
from authsvc.verifier import Verifier

pytestmark = pytest.mark.slow

OP_DIR = Path(__file__).resolve().parent / "oidc_provider"
DISCOVERY = "/.well-known/openid-configuration"
SettingsFactory = Callable[..., Settings]


@dataclass(frozen=True)
class OpenIDProvider:
    """The running provider: its issuer, its one client, and its private signing keys."""

    issuer: str
    client_id: str
    client_secret: str
    resource: str
    keys: dict[str, Key]

    def access_token(self) -> str:
        """A JWT access token the provider signs itself (client_credentials grant)."""
        response = requests.post(
            self.issuer + "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": "api",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def _npm_install(npm: str) -> None:
    """``npm ci`` from the committed lock file (``npm install`` writes it the first time)."""
    command = "ci" if (OP_DIR / "package-lock.json").is_file() else "install"
    done = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=OP_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        why = f"npm {command} in {OP_DIR} failed:\n{done.stdout}\n{done.stderr}"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)


def _ready(log: Path) -> dict[str, Any] | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("ready "):
            found: dict[str, Any] = json.loads(line[len("ready ") :])
            return found
    return None


@pytest.fixture(scope="session")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIDProvider]:
    node = require_binary("node")
    npm = require_binary("npm")
    if not (OP_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        _npm_install(npm)
    keys: dict[str, Key] = {
        "op-rsa": RSAKey.generate_key(2048, parameters={"kid": "op-rsa"}),
        "op-ec": ECKey.generate_key("P-256", parameters={"kid": "op-ec"}),
    }
    directory = tmp_path_factory.mktemp("oidc-provider")
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [k.as_dict(private=True) for k in keys.values()]}))
    log = directory / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [node, "server.js", "0", str(jwks_file)],
            cwd=OP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Process("oidc-provider", proc, 0, log)
    try:
        server.wait_until(lambda: _ready(log) is not None, "ready line")
        ready = _ready(log)
        assert ready is not None
        yield OpenIDProvider(
            issuer=ready["issuer"],
            client_id=ready["client_id"],
            client_secret=ready["client_secret"],
            resource=ready["resource"],
            keys=keys,
        )
    finally:
        server.stop()


@pytest.fixture
def discover(
    make_settings: SettingsFactory, op: OpenIDProvider
) -> Iterator[Callable[..., tuple[JwksUrlProvider, Settings]]]:
    """Build the configured key provider through its entry point, as the app does."""
    built: list[JwksUrlProvider] = []

    def build(issuer: str | None = None) -> tuple[JwksUrlProvider, Settings]:
        settings = make_settings(
            {
                "auth.jwt": {
                    "enabled": "true",
                    "header_name": "X-JWT-Assertion",
                    "oidc_discovery": "true",
                    "issuer": issuer or op.issuer,
                    "audience": op.resource,
                }
            }
        )
        assert settings.jwt.key_provider == "jwk_set_url"
        factory = load_plugin("authsvc.key_providers", settings.jwt.key_provider)
        provider = factory.from_config(PluginContext(settings))
        assert isinstance(provider, KeyProvider) and isinstance(provider, JwksUrlProvider)
        built.append(provider)
        return provider, settings

    yield build
    for provider in built:
        provider.close()


def test_keys_come_from_the_providers_discovery_document(
    op: OpenIDProvider, discover: Callable[..., tuple[JwksUrlProvider, Settings]]
) -> None:
    document = requests.get(op.issuer + DISCOVERY, timeout=10).json()
    published = requests.get(document["jwks_uri"], timeout=10).json()
    provider, _ = discover()
    assert provider.kids() == [k["kid"] for k in published["keys"]]
    assert sorted(provider.kids()) == sorted(op.keys)
    assert provider.health().state == "ok"
    described = provider.describe()
    assert described["kind"] == "oidc_discovery"
    assert described["url"] == op.issuer
    assert described["discovery"] == op.issuer + DISCOVERY
    assert described["jwks_uri"] == document["jwks_uri"]
    assert described["last_error"] is None


def test_tokens_signed_by_the_providers_keys_verify(
    op: OpenIDProvider, discover: Callable[..., tuple[JwksUrlProvider, Settings]]
) -> None:
    provider, settings = discover()
    verifier = Verifier(settings.jwt, provider)

    issued = op.access_token()  # signed by the provider itself (ES256, its "op-ec" key)
    claims = verifier.verify(issued).claims
    assert (claims["sub"], claims["iss"], claims["aud"]) == (op.client_id, op.issuer, op.resource)

    now = int(verifier.clock())
    payload = {"sub": "alice", "iss": op.issuer, "aud": op.resource, "iat": now, "exp": now + 60}
    own = sign(op.keys["op-rsa"], "RS256", payload, kid="op-rsa")
    assert verifier.verify(own).claims["sub"] == "alice"
    forged = sign(RSAKey.generate_key(2048), "RS256", payload, kid="op-rsa")
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(forged)


@pytest.mark.parametrize(
    ("configured", "error"),
    [
        pytest.param(
            "{op}/",
            "its issuer '{op}' is not the configured issuer '{op}/' (they must be equal exactly)",
            id="trailing-slash",
        ),
        pytest.param(
            "http://localhost:{port}",
            "its issuer '{op}' is not the configured issuer 'http://localhost:{port}'",
            id="localhost-for-127.0.0.1",
        ),
        pytest.param(
            "{op}/tenant",
            "discovery document {op}/tenant/.well-known/openid-configuration: HTTP 404",
            id="trailing-path",
        ),
    ],
)
def test_an_issuer_other_than_the_providers_gets_no_keys(
    op: OpenIDProvider,
    discover: Callable[..., tuple[JwksUrlProvider, Settings]],
    configured: str,
    error: str,
) -> None:
    port = op.issuer.rpartition(":")[2]
    issuer = configured.format(op=op.issuer, port=port)
    provider, _ = discover(issuer)
    expected = error.format(op=op.issuer, port=port)
    with pytest.raises(KeysUnavailable) as caught:
        provider.get_key("op-rsa")
    assert expected in caught.value.reason
    state = provider.health()
    assert state.state == "failing" and expected in state.detail
    assert provider.kids() == []
