"""``authsvc dev keys`` / ``dev token``: the newcomer's signer, checked with joserfc.

The commands run in-process through ``authsvc.cli.main`` with the test's home
path; tokens are verified by joserfc against the JWKS the command wrote.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from authsvc.cli import main

AppFactory = Callable[..., Flask]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dev_dir(homepath: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A home path whose dev keys `authsvc dev keys` has just made."""
    code, _, err = _run(capsys, "dev", "keys", "--homepath", str(homepath))
    assert code == 0, err
    return homepath / "data" / "dev"


def _mint(capsys: pytest.CaptureFixture[str], homepath: Path, *args: str) -> str:
    code, out, err = _run(capsys, "dev", "token", "--homepath", str(homepath), *args)
    assert code == 0, err
    token = out.strip()
    assert "\n" not in token
    return token


# --------------------------------------------------------------------------- dev keys
def test_dev_keys_writes_the_key_pair(homepath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "dev", "keys", "--homepath", str(homepath))

    assert code == 0
    jwks_path = homepath / "data" / "dev" / "jwks.json"
    private = [p for p in jwks_path.parent.iterdir() if p != jwks_path]
    assert len(private) == 1
    assert str(jwks_path) in out
    assert str(private[0]) in out
    assert stat.S_IMODE(private[0].stat().st_mode) == 0o600

    jwks = json.loads(jwks_path.read_text())
    assert len(jwks["keys"]) == 1
    public = jwks["keys"][0]
    assert "d" not in public  # the JWKS is public
    assert public["kid"]
    assert "d" in json.loads(private[0].read_text())


def test_dev_keys_refuses_to_overwrite(
    homepath: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in dev_dir.iterdir()}

    code, _, err = _run(capsys, "dev", "keys", "--homepath", str(homepath))

    assert code != 0
    assert "exists" in err
    assert err.strip().count("\n") == 0
    assert {p.name: p.read_bytes() for p in dev_dir.iterdir()} == before


# --------------------------------------------------------------------------- dev token
def test_dev_token_verifies_against_the_jwks(
    homepath: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _mint(
        capsys,
        homepath,
        "--sub",
        "alice",
        "--claim",
        'role="Admin"',
        "--claim",
        "n=3",
        "--ttl",
        "10m",
    )

    keys = KeySet.import_key_set(json.loads((dev_dir / "jwks.json").read_text()))
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    claims = decoded.claims
    assert decoded.header["kid"] == keys.keys[0].kid
    assert claims["sub"] == "alice"
    assert claims["role"] == "Admin"
    assert claims["n"] == 3
    assert type(claims["n"]) is int
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 60
    jwt.JWTClaimsRegistry(sub={"essential": True, "value": "alice"}).validate(claims)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("admin=true", True),
        ('groups=["a","b"]', ["a", "b"]),
        ("name=Alice Smith", "Alice Smith"),
        ("email=alice@example.com", "alice@example.com"),
        ('quoted="3"', "3"),
    ],
    ids=["bool", "list", "plain-string", "email", "quoted-number-stays-string"],
)
def test_dev_token_claim_values(
    homepath: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str], claim: str, value: object
) -> None:
    token = _mint(capsys, homepath, "--sub", "alice", "--claim", claim)

    keys = KeySet.import_key_set(json.loads((dev_dir / "jwks.json").read_text()))
    assert jwt.decode(token, keys).claims[claim.partition("=")[0]] == value


@pytest.mark.parametrize(
    ("ttl_args", "lifetime"),
    [([], 3600), (["--ttl", "90s"], 90), (["--ttl", "2h"], 7200), (["--ttl", "1d"], 86400)],
    ids=["default-1h", "90s", "2h", "1d"],
)
def test_dev_token_ttl(
    homepath: Path,
    dev_dir: Path,
    capsys: pytest.CaptureFixture[str],
    ttl_args: list[str],
    lifetime: int,
) -> None:
    token = _mint(capsys, homepath, "--sub", "alice", *ttl_args)

    keys = KeySet.import_key_set(json.loads((dev_dir / "jwks.json").read_text()))
    claims = jwt.decode(token, keys).claims
    assert claims["exp"] - claims["iat"] == lifetime


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--ttl", "soon"], "expected a duration"),
        (["--claim", "no-equals-sign"], "expected NAME=VALUE"),
    ],
    ids=["bad-ttl", "bad-claim"],
)
def test_dev_token_refuses_bad_arguments(
    homepath: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = _run(capsys, "dev", "token", "--homepath", str(homepath), "--sub", "a", *args)

    assert code != 0
    assert out == ""
    assert says in err


def test_dev_token_without_keys_says_what_to_run(
    homepath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "dev", "token", "--homepath", str(homepath), "--sub", "alice")

    assert code != 0
    assert out == ""
    assert "authsvc dev keys" in err


# --------------------------------------------------------------------------- quickstart
QUICKSTART = """\
[auth.jwt]
enabled = true
header_name = Authorization
jwk_set_file = data/dev/jwks.json
"""


def test_quickstart_config_serves_the_dev_keys(
    homepath: Path, dev_dir: Path, make_app: AppFactory
) -> None:
    """A relative jwk_set_file is read from the home path, as a quickstart config writes it."""
    (homepath / "conf" / "custom.ini").write_text(QUICKSTART)

    app = make_app()

    assert app.extensions["authsvc"].settings.jwt.jwk_set_file == str(dev_dir / "jwks.json")
    response = app.test_client().get("/api/health")
    assert response.status_code == 200
    assert response.get_json()["keys"] == "ok"
