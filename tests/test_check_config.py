"""``authsvc check-config`` builds key material exactly as ``serve`` does (CONTRACT §6).

For each configuration ``serve`` refuses for its keys, ``check-config``
refuses it with the same ``FILE [SECTION] KEY: why`` line and exit 1; the
same holds for start-up refusals that need the keys (issuers a header
cannot tell apart). ``--online`` also fetches URLs and discovery documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey
from pytest_httpserver import HTTPServer
from tokens import jwks, public_jwk, public_pem, signing_keys

from authsvc.app import create_app
from authsvc.cli import main
from authsvc.config import load_settings
from authsvc.keys.base import is_roca_weak
from authsvc.plugins import StartupError

HEADER = "header_name = X-JWT\n"


def _private_pem() -> bytes:
    return signing_keys().rsa.as_pem(private=True)


def _rsa_1024_pem() -> bytes:
    key = rsa.generate_private_key(65537, 1024).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


CASES: dict[str, Callable[[Path], tuple[str, str]]] = {}


def case(
    name: str,
) -> Callable[[Callable[[Path], tuple[str, str]]], Callable[[Path], tuple[str, str]]]:
    def register(fn: Callable[[Path], tuple[str, str]]) -> Callable[[Path], tuple[str, str]]:
        CASES[name] = fn
        return fn

    return register


@case("private-key-in-key_file")
def _(d: Path) -> tuple[str, str]:
    (d / "k.pem").write_bytes(_private_pem())
    return f"key_file = {d / 'k.pem'}\n", "[auth.jwt] key_file: is a private key"


@case("rsa-1024-key_file")
def _(d: Path) -> tuple[str, str]:
    (d / "k.pem").write_bytes(_rsa_1024_pem())
    return f"key_file = {d / 'k.pem'}\n", "RSA modulus of 1024 bits is too short"


@case("garbage-key_file")
def _(d: Path) -> tuple[str, str]:
    (d / "k.pem").write_text("not a key")
    return f"key_file = {d / 'k.pem'}\n", "[auth.jwt] key_file: not a PEM public key"


@case("duplicate-kids-jwk_set_file")
def _(d: Path) -> tuple[str, str]:
    k = signing_keys()
    (d / "s.json").write_text(
        json.dumps(jwks(public_jwk(k.ec256, "dup"), public_jwk(k.rsa, "dup")))
    )
    return f"jwk_set_file = {d / 's.json'}\n", "key 'dup': duplicate kid"


@case("mixed-oct-and-rsa-jwk_set_file")
def _(d: Path) -> tuple[str, str]:
    k = signing_keys()
    (d / "s.json").write_text(json.dumps(jwks(public_jwk(k.oct, "o"), public_jwk(k.rsa, "r"))))
    return f"jwk_set_file = {d / 's.json'}\n", "mixes symmetric (oct) and asymmetric keys"


@case("private-jwk-in-jwk_set_file")
def _(d: Path) -> tuple[str, str]:
    private = dict(signing_keys().ec256.as_dict(private=True), kid="p")
    (d / "s.json").write_text(json.dumps({"keys": [private]}))
    return f"jwk_set_file = {d / 's.json'}\n", "key 'p': is a private key"


@case("short-hmac_secret")
def _(d: Path) -> tuple[str, str]:
    return (
        "hmac_secret = tooshort\n",
        "[auth.jwt] hmac_secret: key (no kid): HMAC secret of 8 bytes",
    )


@case("allow-list-leaves-nothing")
def _(d: Path) -> tuple[str, str]:
    (d / "k.pem").write_bytes(public_pem(signing_keys().ec256))
    return f"key_file = {d / 'k.pem'}\nalgorithms = RS256\n", "none of its algorithms (ES256)"


@pytest.mark.parametrize("name", CASES)
def test_check_config_refuses_what_serve_refuses(
    name: str, homepath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, expected = CASES[name](tmp_path)
    (homepath / "conf" / "custom.ini").write_text(f"[auth.jwt]\nenabled = true\n{HEADER}{body}")

    assert main(["check-config", "--homepath", str(homepath)]) == 1
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if not line.startswith(("warning:", "note:"))]
    [problem] = problems
    assert problem.startswith("conf/custom.ini [auth.jwt] "), problem
    assert expected in problem, problem

    # serve refuses it with the very same line.
    with pytest.raises(StartupError) as refused:
        create_app(load_settings(homepath, environ={}), migrate_schema=True, testing=True)
    assert str(refused.value) == problem


def test_a_roca_weak_key_is_refused_by_check_config(
    homepath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_key_policy import roca_modulus

    key = rsa.RSAPublicNumbers(65537, roca_modulus()).public_key()
    assert is_roca_weak(key.public_numbers().n)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "roca.pem").write_bytes(pem)
    (homepath / "conf" / "custom.ini").write_text(
        f"[auth.jwt]\nenabled = true\n{HEADER}key_file = {tmp_path / 'roca.pem'}\n"
    )
    assert main(["check-config", "--homepath", str(homepath)]) == 1
    assert "ROCA-weak" in capsys.readouterr().err


def test_problems_of_every_issuer_are_reported_together(
    homepath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.pem").write_bytes(_private_pem())
    (tmp_path / "b.pem").write_bytes(_rsa_1024_pem())
    (homepath / "conf" / "custom.ini").write_text(
        f"[auth.jwt.a]\n{HEADER}key_file = {tmp_path / 'a.pem'}\n"
        f"[auth.jwt.b]\nheader_name = X-B\nkey_file = {tmp_path / 'b.pem'}\n"
    )
    assert main(["check-config", "--homepath", str(homepath)]) == 1
    err = capsys.readouterr().err
    assert "conf/custom.ini [auth.jwt.a] key_file: is a private key" in err
    assert "conf/custom.ini [auth.jwt.b] key_file: key (no kid): RSA modulus of 1024 bits" in err


def test_indistinguishable_issuers_are_reported(
    homepath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k = signing_keys()
    (tmp_path / "a.pem").write_bytes(public_pem(k.rsa))
    (tmp_path / "b.pem").write_bytes(public_pem(k.rsa2))
    (homepath / "conf" / "custom.ini").write_text(
        f"[auth.jwt.a]\n{HEADER}key_file = {tmp_path / 'a.pem'}\n"
        f"[auth.jwt.b]\n{HEADER}key_file = {tmp_path / 'b.pem'}\n"
    )
    assert main(["check-config", "--homepath", str(homepath)]) == 1
    assert "issuers 'a' ([auth.jwt.a]) and 'b' ([auth.jwt.b])" in capsys.readouterr().err


def test_a_good_config_is_ok(
    homepath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "k.pem").write_bytes(public_pem(signing_keys().ec256))
    (homepath / "conf" / "custom.ini").write_text(
        f"[auth.jwt]\nenabled = true\n{HEADER}key_file = {tmp_path / 'k.pem'}\n"
    )
    assert main(["check-config", "--homepath", str(homepath)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_urls_are_fetched_only_online(
    homepath: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    httpserver.expect_request("/jwks").respond_with_data("down", status=503)
    (homepath / "conf" / "custom.ini").write_text(
        f"[auth.jwt.idp]\n{HEADER}audience = api\njwk_set_url = {httpserver.url_for('/jwks')}\n"
    )
    assert main(["check-config", "--homepath", str(homepath)]) == 0
    captured = capsys.readouterr()
    assert (
        "note: [auth.jwt.idp] keys come from a URL: not fetched (--online fetches)" in captured.err
    )
    assert len(httpserver.log) == 0

    assert main(["check-config", "--online", "--homepath", str(homepath)]) == 1
    err = capsys.readouterr().err
    assert "conf/custom.ini [auth.jwt.idp] jwk_set_url:" in err and "HTTP 503" in err

    httpserver.clear()
    key = RSAKey.generate_key(2048)
    httpserver.expect_request("/jwks").respond_with_json(jwks(public_jwk(key, "k")))
    assert main(["check-config", "--online", "--homepath", str(homepath)]) == 0
