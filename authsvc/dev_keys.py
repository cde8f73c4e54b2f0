"""``authsvc dev keys`` / ``dev token``: a local signer, so a newcomer can try the service.

Development only. The private key stays under ``[paths] data/dev``; the
public JWKS beside it is what a quickstart config points ``jwk_set_file`` at.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

PRIVATE_FILE = "signing-key.jwk.json"
JWKS_FILE = "jwks.json"


def dev_dir(data: Path) -> Path:
    return data / "dev"


def make_keys(data: Path) -> tuple[Path, Path]:
    """Write a new P-256 key pair; refuse to overwrite an existing one."""
    directory = dev_dir(data)
    private_path, jwks_path = directory / PRIVATE_FILE, directory / JWKS_FILE
    for path in (private_path, jwks_path):
        if path.exists():
            raise FileExistsError(f"{path} exists: remove it first to make new dev keys")
    directory.mkdir(parents=True, exist_ok=True)
    key = ECKey.generate_key("P-256", auto_kid=True)
    private = key.as_dict(private=True, alg="ES256", use="sig")
    public = key.as_dict(private=False, alg="ES256", use="sig")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(private, fh, indent=2)
    jwks_path.write_text(json.dumps({"keys": [public]}, indent=2) + "\n")
    return private_path, jwks_path


def parse_claim(item: str) -> tuple[str, Any]:
    """``k=v``: v is JSON when it parses (``admin=true``, ``n=3``), else a string."""
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--claim {item!r}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def mint_token(data: Path, sub: str, claims: dict[str, Any], ttl: float) -> str:
    """Sign a token with the dev key: ``sub``, ``iat``, ``exp`` = now + ttl, then ``claims``.

    A negative ``ttl`` makes a token that expired ``-ttl`` ago (issued an hour before that).
    """
    private_path = dev_dir(data) / PRIVATE_FILE
    if not private_path.is_file():
        raise FileNotFoundError(f"{private_path} not found: run 'authsvc dev keys' first")
    key = ECKey.import_key(json.loads(private_path.read_text()))
    now = int(time.time())
    exp = now + int(ttl)
    iat = now if ttl > 0 else exp - 3600
    payload: dict[str, Any] = {"sub": sub, "iat": iat, "exp": exp, **claims}
    header = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    return jwt.encode(header, payload, key, algorithms=["ES256"])
