"""The README's "Several issuers" walk-through, run as a newcomer would: real processes.

The configuration is taken from the README itself (its ``ini`` block), so the
two cannot drift apart; only the ports are changed to free ones.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey
from servers import make_homepath, start_authsvc

from authsvc.dev_keys import make_keys, mint_token

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.slow


def readme_config() -> str:
    section = README.read_text(encoding="utf-8").split("## Several issuers", 1)[1]
    section = section.split("\n## ", 1)[0]
    [block] = re.findall(r"```ini\n(.*?)```", section, re.S)
    return block


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The dev signer's JWKS and a discovery document, served as static files."""
    data = tmp_path / "home" / "data"
    _, jwks_path = make_keys(data)
    root = data / "dev" / "idp"
    (root / ".well-known").mkdir(parents=True)
    (root / "jwks.json").write_bytes(jwks_path.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (root / ".well-known" / "openid-configuration").write_text(
        json.dumps({"issuer": url, "jwks_uri": f"{url}/jwks.json"})
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield url, data
    finally:
        server.shutdown()
        server.server_close()


def test_two_issuers_side_by_side_and_a_third_party_refused(
    idp: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, data = idp
    home = make_homepath(tmp_path / "home")
    secret = secrets.token_urlsafe(48)
    monkeypatch.setenv("CI_JWT_SECRET", secret)
    config = readme_config().replace("http://127.0.0.1:9000", url)
    (home / "conf" / "issuers.ini").write_text(config)
    server = start_authsvc(home, "--config", str(home / "conf" / "issuers.ini"))
    try:
        idp_token = mint_token(data, "alice", {"iss": url, "aud": "my-api"}, 600)
        claims = {
            "sub": "build-7",
            "iss": "ci-signer",
            "scope": "deploy",
            "exp": int(time.time()) + 600,
        }
        ci_token = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret.encode()))
        third = mint_token(data, "mallory", {"iss": "https://elsewhere.example"}, 600)

        def verify(tok: str) -> requests.Response:
            return requests.get(
                server.url("/api/auth/verify"),
                headers={"Authorization": f"Bearer {tok}"},
                timeout=10,
            )

        first = verify(idp_token)
        assert first.status_code == 200, first.text
        assert first.headers["X-Auth-Issuer"] == "idp" and first.headers["X-Auth-User"] == "alice"
        second = verify(ci_token)
        assert second.status_code == 200, second.text
        assert second.headers["X-Auth-Issuer"] == "ci"
        assert second.headers["X-Auth-Scope"] == "deploy"
        refused = verify(third)
        assert refused.status_code == 401
        assert refused.json()["reason"] == (
            "issuer 'https://elsewhere.example' is not trusted here (issuers: idp, ci)"
        )
    finally:
        server.stop()
