"""In-process cost of what authsvc signs: one signature per algorithm, the upstream assertion
cache, and ``POST /api/auth/assertion/NAME``.

Usage (from the project root)::

    .venv/bin/python bench/signing_bench.py [--repeat 7] [--min-time 0.2]

Prints one table, in microseconds per operation (best and median of ``--repeat``
timed loops, each at least ``--min-time`` seconds, after a warm-up loop):

* ``SigningKey.sign`` (joserfc ``jwt.encode``) of an upstream assertion's claims with
  keys read by ``authsvc.signing`` from PEM files: RS256 and PS256 (RSA 2048), ES256,
  ES384, EdDSA (Ed25519) — the figure the README's key advice quotes;
* the upstream assertion of a known caller, answered from its per-caller cache;
* ``POST /api/auth/assertion/NAME`` through Flask's test client (SQLite, a JWT
  caller whose user exists), with an ES256 and an RS256 ``[signing]`` key;
* ``GET /api/auth/verify`` through the test client with a repeated JWT, with
  ``[upstream_assertion]`` off and on (bench/http_bench.py measures it over HTTP).

Takes about half a minute; nothing is written outside a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import code_version, render_table
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey
from verify_bench import HEADER, Timing, measure, settings_for, sign
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from authsvc.app import create_app
from authsvc.config import SigningKeySettings
from authsvc.signing import load_signing_key

REPO = Path(__file__).resolve().parent.parent
CLAIMS: dict[str, Any] = {
    "iss": "https://auth.example.com/",
    "aud": "https://auth.example.com/",
    "sub": "jwt/bench-user",
    "login": "bench-user",
    "email": "bench-user@example.com",
    "name": "Bench User",
    "role": "Viewer",
    "groups": ["ops", "dev"],
    "idp": "jwt",
    "iat": 1_700_000_000,
    "exp": 1_700_000_300,
    "jti": "c2lnbmluZy1iZW5jaC1qdGk",
}


def key_files(directory: Path) -> dict[str, Path]:
    natives: dict[str, Any] = {
        "rsa": rsa.generate_private_key(65537, 2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    paths = {}
    for name, native in natives.items():
        path = directory / f"{name}.pem"
        path.write_bytes(native.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        paths[name] = path
    return paths


def row(what: str, timing: Timing) -> tuple[str, ...]:
    return (what, f"{timing.best_us:,.1f}", f"{timing.median_us:,.1f}", f"{timing.loops:,}")


def app_rows(
    files: dict[str, Path], data: Path, inbound: ECKey, jwks: Path, args: argparse.Namespace
) -> list[tuple[str, ...]]:
    rows = []
    token = sign(inbound, "ES256")
    issuer = [f"cfg:auth.jwt.jwk_set_file={jwks}"]
    for label, key in (("ES256", "p256"), ("RS256", "rsa")):
        settings = settings_for(
            [
                *issuer,
                f"cfg:signing.key_file={files[key]}",
                "cfg:assertion.bench.audience=https://login.example.com/token",
            ],
            data / f"assertion-{key}",
        )
        app = create_app(settings, migrate_schema=True, background=False)
        client = app.test_client()
        headers = {HEADER: token}
        assert client.post("/api/auth/assertion/bench", headers=headers).status_code == 200

        def post(client: Any = client, headers: dict[str, str] = headers) -> None:
            client.post("/api/auth/assertion/bench", headers=headers)

        rows.append(row(f"POST /api/auth/assertion/NAME ({label})", measure(post, *timing(args))))
        app.extensions["authsvc"].close()
    for label, on in (("off", "false"), ("on, ES256", "true")):
        settings = settings_for(
            [
                *issuer,
                f"cfg:signing.key_file={files['p256']}",
                f"cfg:upstream_assertion.enabled={on}",
            ],
            data / f"verify-{on}",
        )
        app = create_app(settings, migrate_schema=True, background=False)
        client = app.test_client()
        headers = {HEADER: token}
        assert client.get("/api/auth/verify", headers=headers).status_code == 200

        def get(client: Any = client, headers: dict[str, str] = headers) -> None:
            client.get("/api/auth/verify", headers=headers)

        what = f"GET /api/auth/verify, repeated JWT, upstream assertion {label}"
        rows.append(row(what, measure(get, *timing(args))))
        if on == "true":
            upstream = app.extensions["authsvc"].upstream_assertions
            environ = EnvironBuilder("/api/auth/verify", headers={HEADER: token}).get_environ()
            caller = app.extensions["authsvc"].authn.caller(Request(environ))
            assert upstream is not None and caller is not None
            hit = measure(lambda u=upstream, c=caller: u.header(c), *timing(args))
            rows.append(row("upstream assertion, per-caller cache hit", hit))
        app.extensions["authsvc"].close()
    return rows


def timing(args: argparse.Namespace) -> tuple[int, float]:
    return args.repeat, args.min_time


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=7, help="timed loops per row [7]")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per loop [0.2]")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="signing_bench_") as tmp_name:
        tmp = Path(tmp_name)
        files = key_files(tmp)
        for alg, key in (
            ("RS256", "rsa"),
            ("PS256", "rsa"),
            ("ES256", "p256"),
            ("ES384", "p384"),
            ("EdDSA", "ed25519"),
        ):
            signer = load_signing_key(SigningKeySettings(str(files[key]), "", "", alg))
            took = measure(lambda s=signer: s.sign(CLAIMS), *timing(args))
            rows.append(row(f"sign an upstream assertion, {alg}", took))
        inbound = ECKey.generate_key("P-256", {"kid": "bench-in"})
        jwks = tmp / "jwks.json"
        jwks.write_text(json.dumps({"keys": [inbound.as_dict(private=False)]}))
        rows += app_rows(files, tmp, inbound, jwks, args)
    print(render_table(("operation", "best µs", "median µs", "loops"), rows, frozenset({1, 2, 3})))
    print(
        f"\n{code_version(REPO)}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.1f} at the end; {time.monotonic() - started:.0f}s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
