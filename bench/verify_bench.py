"""In-process cost of verifying a JWT: authsvc's Verifier against the bare cryptography.

Usage (from the project root)::

    /work/venv/bin/python bench/verify_bench.py [--repeat 7] [--min-time 0.2]

Prints one table, in microseconds per operation (best and median of ``--repeat``
timed loops, each at least ``--min-time`` seconds, after one unrecorded warm-up
loop; the garbage collector stays on, as in the server):

* ``Verifier.verify`` with the verified-token cache off (``verified_cache_size = 0``)
  for RS256 (RSA 2048), ES256, EdDSA (Ed25519) and HS256, next to the raw
  ``cryptography`` / ``hmac`` verification of the *same* signature, and their ratio;
* ``Verifier.verify`` answering from the verified-token cache;
* ``GET /api/auth/verify`` through Flask's test client (SQLite, auto sign-up), for
  reference: a JWT in the header (cache on, then off) and a session cookie;
* the same request as granian calls the WSGI app (no test client), with a repeated
  RS256 JWT: one issuer, three issuers on the header, and ``[metrics] enabled =
  false`` — measured in a child process with ``PROMETHEUS_MULTIPROC_DIR`` set, so
  the counters are written as under ``authsvc serve``: what routing among issuers
  and what the counters cost per request, without wrk's ±10 %.

Settings come from ``conf/defaults.ini`` of this checkout plus ``cfg:`` arguments
(``load_settings(args=[...], environ={})``); keys are built by the same providers
the service uses. Takes about 25 seconds; nothing is written outside a temp dir.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import hmac
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import code_version, render_table
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OctKey, OKPKey, RSAKey
from werkzeug.test import EnvironBuilder

from authsvc.app import create_app
from authsvc.config import Settings, load_settings
from authsvc.keys.base import KeyProvider
from authsvc.keys.hmac_secret import HmacSecretProvider
from authsvc.keys.jwks_static import StaticJwksProvider
from authsvc.plugins import PluginContext
from authsvc.verifier import Verifier

REPO = Path(__file__).resolve().parent.parent
HEADER = "X-JWT-Assertion"
# The targets (figures, not assertions: see shared STYLE "Speed is a feature").
RS256_RATIO_TARGET = 1.6  # issue "Performance" (it was 2.2 before)
CACHE_HIT_TARGET_US = 3.0


@dataclass(frozen=True)
class Timing:
    best_us: float
    median_us: float
    loops: int


def measure(fn: Callable[[], object], repeat: int, min_time: float) -> Timing:
    """Loops sized to ``min_time``, one unrecorded warm-up loop, then ``repeat`` loops; µs/call."""
    timer = timeit.Timer(fn, setup=gc.enable)
    number, elapsed = 1, timer.timeit(1)
    while elapsed < min_time / 20 and number < 1_000_000:  # probe, then scale to min_time
        number *= 10
        elapsed = timer.timeit(number)
    number = max(1, math.ceil(number * min_time / max(elapsed, 1e-9)))
    timer.timeit(number)  # warm-up
    per_call = [t / number * 1e6 for t in timer.repeat(repeat, number)]
    return Timing(min(per_call), statistics.median(per_call), number)


# ------------------------------------------------------------------ keys, tokens, settings
def make_keys() -> dict[str, Key]:
    return {
        "RS256": RSAKey.generate_key(2048, {"kid": "rsa"}),
        "ES256": ECKey.generate_key("P-256", {"kid": "ec"}),
        "EdDSA": OKPKey.generate_key("Ed25519", {"kid": "ed"}),
    }


def sign(key: Key | bytes, alg: str, sub: str = "bench-user", iss: str = "") -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600, "name": "Bench User"}
    if iss:
        claims["iss"] = iss
    header: dict[str, Any] = {"alg": alg}
    if not isinstance(key, bytes):
        header["kid"] = key.kid
    with warnings.catch_warnings():
        # joserfc flags EdDSA as deprecated (RFC 9864) when signing.
        warnings.simplefilter("ignore", SecurityWarning)
        signer = OctKey.import_key(key) if isinstance(key, bytes) else key
        return jwt.encode(header, claims, signer, [alg])


def settings_for(args: Sequence[str], data_dir: Path) -> Settings:
    base = [
        "cfg:auth.jwt.enabled=true",
        f"cfg:auth.jwt.header_name={HEADER}",
        "cfg:auth.jwt.auto_sign_up=true",
        "cfg:auth.jwt.username_claim=sub",
        f"cfg:paths.data={data_dir}",
        "cfg:log.level=warn",
    ]
    return load_settings(homepath=REPO, args=[*base, *args], environ={})


def jwks_value(keys: dict[str, Key]) -> str:
    public = KeySet(list(keys.values())).as_dict(private=False)
    return base64.b64encode(json.dumps(public).encode()).decode()


# ------------------------------------------------------------------ raw verification
def b64u_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def raw_verifier(alg: str, key: Key | bytes, token: str) -> Callable[[], object]:
    """The bare library call that checks the same signature (inputs decoded once, outside)."""
    header_b64, payload_b64, sig_b64 = token.split(".")
    data = f"{header_b64}.{payload_b64}".encode()
    sig = b64u_decode(sig_b64)
    if alg == "HS256":
        assert isinstance(key, bytes)
        secret = key
        return lambda: hmac.compare_digest(hmac.new(secret, data, hashlib.sha256).digest(), sig)
    assert not isinstance(key, bytes)
    pub: Any = key.public_key
    if alg == "RS256":
        pkcs1, sha = padding.PKCS1v15(), SHA256()
        return lambda: pub.verify(sig, data, pkcs1, sha)
    if alg == "ES256":
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        ecdsa = ec.ECDSA(SHA256())
        return lambda: pub.verify(der, data, ecdsa)
    return lambda: pub.verify(sig, data)  # Ed25519


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=7, help="timed loops per row [7]")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per loop at least [0.2]")
    p.add_argument("--wsgi-rows", action="store_true", help=argparse.SUPPRESS)  # the child
    args = p.parse_args(argv)
    if args.repeat < 1 or not 0.01 <= args.min_time <= 2:
        p.error("--repeat must be >= 1 and --min-time within 0.01..2")
    return args


def wsgi_rows(args: argparse.Namespace) -> list[tuple[str, Timing]]:
    """The child's rows: a repeated RS256 JWT straight into the WSGI app, three ways."""
    keys = make_keys()
    iss = "https://bench.example.com/"
    token = sign(keys["RS256"], "RS256", iss=iss)
    jwks = f"cfg:auth.jwt.jwk_set_value={jwks_value({'RS256': keys['RS256']})}"
    others = jwks_value({"ES256": keys["ES256"], "EdDSA": keys["EdDSA"]})
    three = [f"cfg:auth.jwt.issuer={iss}"]
    for n in (1, 2):
        three += [
            f"cfg:auth.jwt.extra{n}.header_name={HEADER}",
            f"cfg:auth.jwt.extra{n}.jwk_set_value={others}",
            f"cfg:auth.jwt.extra{n}.issuer=https://extra{n}.example.com/",
            f"cfg:auth.jwt.extra{n}.username_claim=sub",
        ]
    variants = (
        ("one issuer", [jwks]),
        ("three issuers", [jwks, *three]),
        ("[metrics] off", [jwks, "cfg:metrics.enabled=false"]),
    )
    with tempfile.TemporaryDirectory(prefix="verify_bench_wsgi_") as tmp:
        calls = []
        for label, extra in variants:
            app = create_app(
                settings_for(extra, Path(tmp) / label.strip("[]").replace(" ", "_")),
                migrate_schema=True,
                background=False,
            )
            base = EnvironBuilder("/api/auth/verify", headers={HEADER: token}).get_environ()
            answered: list[str] = []

            def call(
                app: Any = app, base: dict[str, Any] = base, answered: list[str] = answered
            ) -> None:
                answered.clear()
                b"".join(app.wsgi_app(dict(base), lambda status, _h: answered.append(status)))

            call()
            assert answered and answered[0].startswith("200"), (label, answered)
            calls.append((f"GET /api/auth/verify, WSGI call, repeated JWT, {label}", call, app))
        timings = measure_interleaved([c for _, c, _ in calls], args.repeat, args.min_time)
        for _, _, app in calls:
            app.extensions["authsvc"].close()
    return [(name, t) for (name, _, _), t in zip(calls, timings, strict=True)]


def measure_interleaved(
    fns: Sequence[Callable[[], object]], repeat: int, min_time: float
) -> list[Timing]:
    """``measure`` for several functions whose difference is the point: their loops take
    turns (a, b, c, a, b, c, ...), so that each sees the same moments of a machine whose
    speed drifts; at least 15 rounds."""
    timers = [timeit.Timer(fn, setup=gc.enable) for fn in fns]
    numbers = []
    for timer in timers:
        number, elapsed = 1, timer.timeit(1)
        while elapsed < min_time / 20 and number < 1_000_000:
            number *= 10
            elapsed = timer.timeit(number)
        numbers.append(max(1, math.ceil(number * min_time / max(elapsed, 1e-9))))
        timer.timeit(numbers[-1])  # warm-up
    per_call: list[list[float]] = [[] for _ in fns]
    for _ in range(max(15, repeat)):
        for n, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            per_call[n].append(timer.timeit(number) / number * 1e6)
    return [
        Timing(min(us), statistics.median(us), number)
        for us, number in zip(per_call, numbers, strict=True)
    ]


def wsgi_rows_in_child(args: argparse.Namespace) -> list[tuple[str, Timing]]:
    """Run ``wsgi_rows`` in a child whose prometheus-client is in multiprocess mode
    (it picks the mode when imported, as in each ``authsvc serve`` worker)."""
    with tempfile.TemporaryDirectory(prefix="verify_bench_metrics_") as metrics_dir:
        done = subprocess.run(
            [sys.executable, __file__, "--wsgi-rows", "--repeat", str(args.repeat),
             "--min-time", str(args.min_time)],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the WSGI rows failed:\n{done.stderr[-3000:]}")
    return [(name, Timing(*t)) for name, t in json.loads(done.stdout)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wsgi_rows:
        rows_ = [(name, [t.best_us, t.median_us, t.loops]) for name, t in wsgi_rows(args)]
        print(json.dumps(rows_))
        return 0
    started = time.monotonic()
    keys = make_keys()
    secret = os.urandom(32)
    hs_secret = base64.urlsafe_b64encode(secret).decode().rstrip("=")
    hs_bytes = hs_secret.encode()  # HmacSecretProvider uses the setting's text as the key
    rows: list[tuple[str, ...]] = []

    def add(name: str, t: Timing, raw: Timing | None = None, target: str = "") -> None:
        ratio = f"{t.best_us / raw.best_us:.2f}x" if raw else ""
        rows.append(
            (
                name,
                f"{t.best_us:,.2f}",
                f"{t.median_us:,.2f}",
                f"{raw.best_us:,.2f}" if raw else "",
                f"{raw.median_us:,.2f}" if raw else "",
                ratio,
                target,
            )
        )
        print(f"  {name}: best {t.best_us:,.2f} µs ({t.loops} loops)", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="verify_bench_") as tmp:
        jwks = f"cfg:auth.jwt.jwk_set_value={jwks_value(keys)}"
        asym_off = settings_for([jwks, "cfg:auth.jwt.verified_cache_size=0"], Path(tmp))
        hs_off = settings_for(
            [f"cfg:auth.jwt.hmac_secret={hs_secret}", "cfg:auth.jwt.verified_cache_size=0"],
            Path(tmp),
        )
        asym_keys: KeyProvider = StaticJwksProvider.from_config(PluginContext(asym_off))
        hs_keys: KeyProvider = HmacSecretProvider.from_config(PluginContext(hs_off))

        # A SecurityWarning raised while *verifying* would be a per-request cost: make it loud.
        with warnings.catch_warnings():
            warnings.simplefilter("error", SecurityWarning)
            for alg in ("RS256", "ES256", "EdDSA", "HS256"):
                key: Key | bytes = hs_bytes if alg == "HS256" else keys[alg]
                token = sign(key, alg)
                verifier = Verifier(
                    hs_off.jwt if alg == "HS256" else asym_off.jwt,
                    hs_keys if alg == "HS256" else asym_keys,
                )
                verifier.verify(token)
                t = measure(lambda v=verifier, tok=token: v.verify(tok), args.repeat, args.min_time)
                raw = measure(raw_verifier(alg, key, token), args.repeat, args.min_time)
                target = f"<= {RS256_RATIO_TARGET}x" if alg == "RS256" else ""
                label = {"RS256": "RS256 (RSA 2048)", "EdDSA": "EdDSA (Ed25519)"}.get(alg, alg)
                add(f"verify {label}, cache off", t, raw, target)

            on = settings_for([jwks], Path(tmp))
            cached = Verifier(on.jwt, StaticJwksProvider.from_config(PluginContext(on)))
            rs_token = sign(keys["RS256"], "RS256")
            cached.verify(rs_token)
            add(
                "verify RS256, cache hit",
                measure(lambda: cached.verify(rs_token), args.repeat, args.min_time),
                target=f"<= {CACHE_HIT_TARGET_US:g} µs",
            )

        for label, extra in (
            ("cache on", []),
            ("cache off", ["cfg:auth.jwt.verified_cache_size=0"]),
        ):
            app = create_app(
                settings_for([jwks, *extra], Path(tmp) / label.replace(" ", "_")),
                migrate_schema=True,
                testing=True,
                background=False,
            )
            client = app.test_client()
            headers = {HEADER: rs_token}
            assert client.get("/api/auth/verify", headers=headers).status_code == 200
            add(
                f"GET /api/auth/verify, test client, RS256 JWT, {label}",
                measure(
                    lambda c=client, h=headers: c.get("/api/auth/verify", headers=h),
                    args.repeat,
                    args.min_time,
                ),
            )
            if label == "cache on":
                cookie_client = app.test_client()
                login = cookie_client.post("/api/login/jwt", headers=headers)
                assert login.status_code == 200, login.get_data(as_text=True)
                assert cookie_client.get("/api/auth/verify").status_code == 200
                add(
                    "GET /api/auth/verify, test client, session cookie",
                    measure(
                        lambda c=cookie_client: c.get("/api/auth/verify"),
                        args.repeat,
                        args.min_time,
                    ),
                )
            app.extensions["authsvc"].close()
    for name, timing in wsgi_rows_in_child(args):
        add(name, timing)

    headers_ = ("operation", "best µs", "median µs", "raw best", "raw median", "ratio", "target")
    print(render_table(headers_, rows, right=frozenset({1, 2, 3, 4, 5})))
    print(
        f"\nµs per operation: best and median of {args.repeat} loops (each >= {args.min_time}s, "
        "gc on). 'raw' = cryptography's verify of the same signature (RSA PKCS1v15 SHA-256; "
        "ECDSA with the signature converted to DER once, outside the loop; Ed25519) or "
        "hmac.compare_digest of HMAC-SHA256; ratio = best / raw best. Test-client rows include "
        "werkzeug's test-client overhead and the user lookup on SQLite. "
        f"{code_version(REPO)}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end, {time.monotonic() - started:.0f}s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
