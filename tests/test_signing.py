"""authsvc.signing keys and their publication (CONTRACT §5 ``[signing]``, §6 re-reading).

Every key form authsvc reads, every refusal (at start-up and through
``check-config``, blamed as ``FILE [signing] KEY: why``), the JWKS and discovery
documents, ``x5t``/``x5c`` from a certificate chain, rotation through
``previous_key_files`` and a key file re-read on change. What authsvc signed is
checked by verifying it with joserfc against the JWKS it publishes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from flask import Flask
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import ECKey
from signing_material import (
    PKCS8,
    TRADITIONAL,
    certificate,
    chain_pem,
    kids,
    private_pem,
    public_pem,
    roca_private_key,
    thumbprint,
    verify,
    weak_rsa_key,
    write,
)
from tokens import SIGNING_KID, Keys, sign, signing_keys

from authsvc import config
from authsvc.cli import main as call_cli
from authsvc.config import ConfigError, load_settings
from authsvc.plugins import StartupError

HEADER = "X-JWT-Assertion"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def keys() -> Keys:
    return signing_keys()


def inbound(jwks_file: Path) -> dict[str, str]:
    """``[auth.jwt]`` verifying conftest's ES256 test tokens, with auto sign-up."""
    return {
        "enabled": "true",
        "header_name": HEADER,
        "jwk_set_file": str(jwks_file),
        "auto_sign_up": "true",
        "username_claim": "sub",
        "email_claim": "email",
        "groups_attribute_path": "groups",
    }


def inbound_token(key: ECKey, sub: str = "alice", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "email": f"{sub}@example.com", "iat": now, "exp": now + 3600}
    return sign(key, "ES256", {**payload, **claims}, kid=SIGNING_KID)


AppFactory = Callable[..., Flask]


def signing_app(
    make_app: AppFactory, jwks_file: Path, signing: dict[str, str], **sections: dict[str, str]
) -> Flask:
    values = {
        "auth.jwt": inbound(jwks_file),
        "signing": signing,
        "upstream_assertion": {"enabled": "true"},
        **sections,
    }
    return make_app(values)


def published(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200, response.data
    document: dict[str, Any] = response.get_json()
    return document


def upstream_assertion(app: Flask, token: str) -> str:
    response = app.test_client().get("/api/auth/verify", headers={HEADER: token})
    assert response.status_code == 200, response.data
    return response.headers["X-Auth-Assertion"]


def root_url(app: Flask) -> str:
    root: str = app.extensions["authsvc"].settings.server.root_url
    return root


# --------------------------------------------------------------------------- configuration
def test_defaults_ini_documents_every_assertion_key_with_its_default() -> None:
    """[assertion.NAME] has no section in defaults.ini: its keys are a commented template."""
    text = (REPO / "conf" / "defaults.ini").read_text()
    template = text[text.index("# Outbound assertions are sections [assertion.NAME]") :]
    documented = {}
    comments = []
    for line in template.splitlines():
        if line.startswith(";"):
            key, _, value = line[1:].partition("=")
            documented[key.strip()] = value.strip()
        elif line.startswith("#"):
            comments.append(line)
    assert documented == config.ASSERTION_SCHEMA
    assert len(comments) >= 10  # one line of comment per key (the four overrides share one)


def _problems(make_settings: Any, values: dict[str, dict[str, str]]) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        make_settings(values)
    return excinfo.value.problems


def test_upstream_assertion_without_signing_is_a_startup_error(make_settings: Any) -> None:
    problems = _problems(make_settings, {"upstream_assertion": {"enabled": "true"}})
    assert problems == [
        "argument cfg:upstream_assertion.enabled [upstream_assertion] enabled: "
        "enabled = true needs [signing] key_file: the assertion is signed"
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"signing": {"algorithm": "HS256"}},
            "[signing] algorithm: expected one of RS256",
            id="hmac-algorithm",
        ),
        pytest.param(
            {"signing": {"algorithm": "none"}},
            "[signing] algorithm: expected one of RS256",
            id="none-algorithm",
        ),
        pytest.param(
            {"signing": {"key_file": "/nonexistent/key.pem"}},
            "[signing] key_file: file not found: /nonexistent/key.pem",
            id="missing-key-file",
        ),
        pytest.param(
            {"signing": {"certificate_file": "/etc/hostname"}},
            "[signing] certificate_file: needs key_file",
            id="certificate-without-key",
        ),
        pytest.param(
            {"signing": {"previous_key_files": "/etc/hostname"}},
            "[signing] previous_key_files: needs key_file",
            id="previous-without-key",
        ),
        pytest.param(
            {"upstream_assertion": {"lifetime": "0"}},
            "[upstream_assertion] lifetime: expected a duration above 0",
            id="zero-lifetime",
        ),
        pytest.param(
            {"upstream_assertion": {"header_name": "X Bad"}},
            "[upstream_assertion] header_name: expected an HTTP header name",
            id="bad-header",
        ),
        pytest.param(
            {"assertion.x": {"issuer": "client"}},
            "[assertion.x] audience: required",
            id="assertion-without-audience",
        ),
        pytest.param(
            {"assertion.x": {"audience": "https://idp/token"}},
            "[assertion.x] key_file: no key to sign with",
            id="assertion-without-key",
        ),
        pytest.param(
            {"assertion.x": {"audience": "a", "key_file": "/etc/hostname", "claims": "[1]"}},
            "[assertion.x] claims: expected a JSON object, got list",
            id="claims-not-an-object",
        ),
        pytest.param(
            {"assertion.x": {"audience": "a", "key_file": "/etc/hostname", "claims": '{"sub": 1}'}},
            "[assertion.x] claims: sub cannot be fixed here",
            id="claims-registered",
        ),
        pytest.param(
            {"assertion.x": {"audience": "a", "key_file": "/etc/hostname", "upn_claim": "sub"}},
            "[assertion.x] upn_claim: 'sub' is a registered claim",
            id="upn-registered",
        ),
        pytest.param(
            {"assertion.x": {"audience": "a", "key_file": "/etc/hostname", "min_role": "Boss"}},
            "[assertion.x] min_role: expected one of None, Viewer, Editor, Admin",
            id="bad-min-role",
        ),
        pytest.param(
            {"assertion.x": {"audience": "a", "key_file": "/etc/hostname", "lifetime": "0"}},
            "[assertion.x] lifetime: expected a duration above 0",
            id="assertion-zero-lifetime",
        ),
        pytest.param(
            {"assertion.Bad": {"audience": "a"}},
            "[assertion.Bad]: a NAME is 1 to 32 of a-z",
            id="bad-name",
        ),
        pytest.param(
            {"assertion.a-b": {"audience": "a"}, "assertion.a_b": {"audience": "a"}},
            "[assertion.a_b]: its environment variables (AUTHSVC_ASSERTION_A_B_*) are also "
            "[assertion.a-b]'s",
            id="env-collision",
        ),
    ],
)
def test_bad_signing_values_are_startup_errors(
    make_settings: Any, values: dict[str, dict[str, str]], expected: str
) -> None:
    problems = _problems(make_settings, values)
    assert any(expected in p for p in problems), problems


def test_assertion_sections_warn_on_unknown_keys_and_take_environment_overrides(
    make_settings: Any, homepath: Path, keys: Keys
) -> None:
    key = write(homepath, "key.pem", private_pem(keys.ec256.private_key))
    (homepath / "conf" / "custom.ini").write_text(
        f"[assertion.aisera]\naudience = a\nkey_file = {key}\naudiance = typo\n"
    )
    settings = make_settings(
        env={"AUTHSVC_ASSERTION_AISERA_AUDIENCE": "https://login.example.com/token"}
    )
    assert any("[assertion.aisera] audiance: unknown key" in w for w in settings.warnings)
    aisera = settings.assertions["aisera"]
    assert aisera.audience == "https://login.example.com/token"
    assert aisera.upn_claim == "upn"
    assert aisera.lifetime == 300
    assert aisera.issuer == settings.server.root_url  # [signing] issuer's default


# --------------------------------------------------------------------------- key forms
FORMS = {
    "rsa-pkcs8": ("rsa", PKCS8, "RS256"),
    "rsa-pkcs1": ("rsa", TRADITIONAL, "RS256"),
    "p256-pkcs8": ("ec256", PKCS8, "ES256"),
    "p256-sec1": ("ec256", TRADITIONAL, "ES256"),
    "p384-sec1": ("ec384", TRADITIONAL, "ES384"),
    "p521-sec1": ("ec521", TRADITIONAL, "ES512"),
    "ed25519-pkcs8": ("ed", PKCS8, "EdDSA"),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_key_form_signs_with_its_default_algorithm_and_thumbprint_kid(
    form: str, make_app: AppFactory, jwks_file: Path, signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    attr, encoding, algorithm = FORMS[form]
    native = getattr(keys, attr).private_key
    pem = private_pem(native, encoding)
    marker = {"rsa-pkcs1": b"RSA PRIVATE KEY", "p256-sec1": b"EC PRIVATE KEY"}.get(form)
    assert marker is None or marker in pem
    key_file = write(tmp_path, "signing.pem", pem)
    app = signing_app(make_app, jwks_file, {"key_file": str(key_file)})

    jwks = published(app)
    kid = thumbprint(native)  # RFC 7638, by joserfc
    assert kids(jwks) == [kid]
    assert jwks["keys"][0]["alg"] == algorithm
    assert jwks["keys"][0]["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwks["keys"][0])  # public half only

    token = upstream_assertion(app, inbound_token(signing_key))
    verified = verify(token, jwks, iss=root_url(app), aud=root_url(app))
    assert verified.header["alg"] == algorithm
    assert verified.header["kid"] == kid
    assert verified.header["typ"] == "JWT"
    assert "x5t" not in verified.header  # no certificate configured


@pytest.mark.parametrize(
    ("attr", "algorithm"),
    [
        ("rsa", "RS384"),
        ("rsa", "RS512"),
        ("rsa", "PS256"),
        ("rsa", "PS384"),
        ("rsa", "PS512"),
        ("ec384", "ES384"),
        ("ed", "Ed25519"),
    ],
)
def test_a_configured_algorithm_that_fits_the_key_signs(
    attr: str,
    algorithm: str,
    make_app: AppFactory,
    jwks_file: Path,
    signing_key: ECKey,
    keys: Keys,
    tmp_path: Path,
) -> None:
    key_file = write(tmp_path, "signing.pem", private_pem(getattr(keys, attr).private_key))
    app = signing_app(
        make_app, jwks_file, {"key_file": str(key_file), "algorithm": algorithm, "key_id": "k1"}
    )
    jwks = published(app)
    assert jwks["keys"][0]["alg"] == algorithm
    assert kids(jwks) == ["k1"]
    verified = verify(upstream_assertion(app, inbound_token(signing_key)), jwks)
    assert (verified.header["alg"], verified.header["kid"]) == (algorithm, "k1")


# --------------------------------------------------------------------------- refusals
def _files(keys: Keys, tmp_path: Path, case: str) -> dict[str, str]:
    """The [signing] values of a refusal case, their files written under tmp_path."""

    def pem(name: str, data: bytes) -> str:
        return str(write(tmp_path, name, data))

    rsa, rsa2 = keys.rsa.private_key, keys.rsa2.private_key
    if case == "weak-rsa":
        return {"key_file": pem("k.pem", private_pem(weak_rsa_key(), TRADITIONAL))}
    if case == "roca":
        return {"key_file": pem("k.pem", private_pem(roca_private_key()))}
    if case == "public-key":
        return {"key_file": pem("k.pem", public_pem(rsa))}
    if case == "certificate-as-key":
        return {"key_file": pem("k.pem", chain_pem(certificate(rsa, "signer")))}
    if case == "encrypted":
        return {"key_file": pem("k.pem", private_pem(rsa, PKCS8, b"secret"))}
    if case == "secp256k1":
        return {"key_file": pem("k.pem", private_pem(ec.generate_private_key(ec.SECP256K1())))}
    if case == "ed448":
        return {"key_file": pem("k.pem", private_pem(ed448.Ed448PrivateKey.generate()))}
    if case == "not-pem":
        return {"key_file": pem("k.pem", b"just some text\n")}
    if case == "certificate-of-another-key":
        return {
            "key_file": pem("k.pem", private_pem(rsa)),
            "certificate_file": pem("c.pem", chain_pem(certificate(rsa2, "other"))),
        }
    if case == "not-a-certificate":
        return {"key_file": pem("k.pem", private_pem(rsa)), "certificate_file": pem("c.pem", b"x")}
    if case == "es256-with-rsa":
        return {"key_file": pem("k.pem", private_pem(rsa)), "algorithm": "ES256"}
    if case == "es384-with-p256":
        return {"key_file": pem("k.pem", private_pem(keys.ec256.private_key)), "algorithm": "ES384"}
    if case == "rs256-with-ed25519":
        return {"key_file": pem("k.pem", private_pem(keys.ed.private_key)), "algorithm": "RS256"}
    if case == "eddsa-with-p256":
        return {"key_file": pem("k.pem", private_pem(keys.ec256.private_key)), "algorithm": "EdDSA"}
    if case == "weak-previous-key":
        return {
            "key_file": pem("k.pem", private_pem(rsa)),
            "previous_key_files": pem("old.pem", private_pem(weak_rsa_key())),
        }
    if case == "previous-is-current":
        return {
            "key_file": pem("k.pem", private_pem(rsa)),
            "previous_key_files": pem("old.pem", public_pem(rsa)),
        }
    raise AssertionError(case)


REFUSALS = {
    "weak-rsa": ("key_file", "RSA modulus of 1024 bits is too short (at least 2048)"),
    "roca": ("key_file", "RSA modulus is ROCA-weak (CVE-2017-15361); replace the key"),
    "public-key": ("key_file", "is a public key or certificate; signing needs the private key"),
    "certificate-as-key": (
        "key_file",
        "is a public key or certificate; signing needs the private key",
    ),
    "encrypted": ("key_file", "is encrypted; authsvc reads unencrypted keys only"),
    "secp256k1": ("key_file", "EC curve secp256k1 is not P-256, P-384 or P-521"),
    "ed448": ("key_file", "Ed448 keys are not supported (Ed25519 is)"),
    "not-pem": ("key_file", "holds no PEM private key"),
    "certificate-of-another-key": (
        "certificate_file",
        "its (first) certificate is not of key_file's key (subject CN=other)",
    ),
    "not-a-certificate": ("certificate_file", "not a PEM certificate"),
    "es256-with-rsa": ("algorithm", "ES256 does not fit the RSA key (it signs RS256, RS384"),
    "es384-with-p256": ("algorithm", "ES384 does not fit the P-256 key (it signs ES256)"),
    "rs256-with-ed25519": ("algorithm", "RS256 does not fit the Ed25519 key"),
    "eddsa-with-p256": ("algorithm", "EdDSA does not fit the P-256 key"),
    "weak-previous-key": ("previous_key_files", "RSA modulus of 1024 bits is too short"),
    "previous-is-current": ("previous_key_files", "is also key_file's (the same key listed"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_signing_key_stops_start_up_and_check_config_names_it(
    case: str,
    keys: Keys,
    homepath: Path,
    make_settings: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setting, why = REFUSALS[case]
    values = _files(keys, homepath, case)
    custom = "[signing]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    (homepath / "conf" / "custom.ini").write_text(custom)

    code = call_cli(["check-config", "--homepath", str(homepath)])
    _out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if not line.startswith(("warning:", "note:"))]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"conf/custom.ini [signing] {setting}: "), err
    assert why in lines[0]

    from authsvc.app import create_app

    with pytest.raises(StartupError) as excinfo:
        create_app(make_settings(), testing=True)
    assert str(excinfo.value) == lines[0]


def test_check_config_accepts_a_sound_signing_section(
    keys: Keys, homepath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = write(homepath, "k.pem", private_pem(keys.ec256.private_key, TRADITIONAL))
    cert = write(homepath, "c.pem", chain_pem(certificate(keys.ec256.private_key, "signer")))
    old = write(homepath, "old.pem", private_pem(keys.rsa.private_key))
    (homepath / "conf" / "custom.ini").write_text(
        f"[signing]\nkey_file = {key}\ncertificate_file = {cert}\nprevious_key_files = {old}\n"
        "[upstream_assertion]\nenabled = true\n"
    )
    assert call_cli(["check-config", "--homepath", str(homepath)]) == 0, capsys.readouterr()


def test_check_config_names_a_refused_assertion_key(
    keys: Keys, homepath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = write(homepath, "k.pem", private_pem(keys.ec256.private_key))
    weak = write(homepath, "weak.pem", private_pem(weak_rsa_key()))
    (homepath / "conf" / "custom.ini").write_text(
        f"[signing]\nkey_file = {key}\n"
        f"[assertion.entra]\naudience = https://login.example.com/token\nkey_file = {weak}\n"
        "[assertion.fit]\naudience = a\nalgorithm = ES384\n"
    )
    assert call_cli(["check-config", "--homepath", str(homepath)]) == 1
    err = capsys.readouterr().err
    assert f"conf/custom.ini [assertion.entra] key_file: {weak}: RSA modulus of 1024" in err
    # The inherited key does not fit the assertion's own algorithm: blamed on that.
    assert "conf/custom.ini [assertion.fit] algorithm: ES384 does not fit the P-256 key" in err


# --------------------------------------------------------------------------- publication
def test_signing_off_answers_404_for_both_documents(make_app: AppFactory) -> None:
    client = make_app().test_client()
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["messageId"] == "api.not_found"
        assert "signing is off" in response.get_json()["reason"]


def test_jwks_and_discovery_documents(
    make_app: AppFactory, jwks_file: Path, keys: Keys, tmp_path: Path
) -> None:
    key_file = write(tmp_path, "k.pem", private_pem(keys.ec256.private_key))
    app = make_app(
        {
            "server": {"root_url": "https://auth.example.com/sso/"},
            "signing": {"key_file": str(key_file)},
        }
    )
    client = app.test_client()
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    assert jwks.mimetype == "application/json"
    discovery = client.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200
    assert discovery.get_json() == {
        "issuer": "https://auth.example.com/sso/",
        "jwks_uri": "https://auth.example.com/sso/.well-known/jwks.json",
    }

    other = make_app({"signing": {"key_file": str(key_file), "issuer": "urn:authsvc:test"}})
    assert other.test_client().get("/.well-known/openid-configuration").get_json()["issuer"] == (
        "urn:authsvc:test"
    )


def test_a_certificate_chain_adds_x5t_and_x5c(
    make_app: AppFactory, jwks_file: Path, signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    ca_key, leaf_key = keys.rsa2.private_key, keys.rsa.private_key
    ca = certificate(ca_key, "Test CA")
    leaf = certificate(leaf_key, "authsvc signer", issuer_key=ca_key, issuer_cn="Test CA")
    app = signing_app(
        make_app,
        jwks_file,
        {
            "key_file": str(write(tmp_path, "k.pem", private_pem(leaf_key, TRADITIONAL))),
            "certificate_file": str(write(tmp_path, "chain.pem", chain_pem(leaf, ca))),
        },
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf_der, ca_der = leaf.public_bytes(Encoding.DER), ca.public_bytes(Encoding.DER)

    def b64u(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    x5t = b64u(hashlib.sha1(leaf_der).digest())  # RFC 7515 §4.1.7: SHA-1 of the DER
    x5t256 = b64u(hashlib.sha256(leaf_der).digest())
    jwk = published(app)["keys"][0]
    assert jwk["x5c"] == [base64.b64encode(leaf_der).decode(), base64.b64encode(ca_der).decode()]
    assert (jwk["x5t"], jwk["x5t#S256"]) == (x5t, x5t256)

    verified = verify(upstream_assertion(app, inbound_token(signing_key)), published(app))
    assert (verified.header["x5t"], verified.header["x5t#S256"]) == (x5t, x5t256)


# --------------------------------------------------------------------------- rotation
def test_rotation_publishes_both_keys_and_old_assertions_verify_until_the_old_key_goes(
    make_app: AppFactory, jwks_file: Path, signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    old = write(tmp_path, "old.pem", private_pem(keys.ec256.private_key))
    new = write(tmp_path, "new.pem", private_pem(keys.ec384.private_key))
    old_kid = thumbprint(keys.ec256.private_key)
    new_kid = thumbprint(keys.ec384.private_key)

    before = signing_app(make_app, jwks_file, {"key_file": str(old)})
    signed_by_old = upstream_assertion(before, inbound_token(signing_key, "rot"))
    assert verify(signed_by_old, published(before)).header["kid"] == old_kid

    during = signing_app(
        make_app, jwks_file, {"key_file": str(new), "previous_key_files": str(old)}
    )
    jwks = published(during)
    assert kids(jwks) == [new_kid, old_kid]
    assert "alg" not in jwks["keys"][1]  # which algorithm the old key used is not known here
    fresh = upstream_assertion(during, inbound_token(signing_key, "rot"))
    assert verify(fresh, jwks).header["kid"] == new_kid
    assert verify(signed_by_old, jwks).claims["sub"] == "jwt/rot"

    after = signing_app(make_app, jwks_file, {"key_file": str(new)})
    assert kids(published(after)) == [new_kid]
    with pytest.raises(InvalidKeyIdError):
        verify(signed_by_old, published(after))


def test_a_previous_key_may_be_given_as_its_public_half(
    make_app: AppFactory, keys: Keys, tmp_path: Path
) -> None:
    app = make_app(
        {
            "signing": {
                "key_file": str(write(tmp_path, "k.pem", private_pem(keys.ed.private_key))),
                "previous_key_files": str(
                    write(tmp_path, "o.pem", public_pem(keys.rsa.private_key))
                ),
            }
        }
    )
    assert kids(published(app))[1] == thumbprint(keys.rsa.private_key)


def _replace(path: Path, data: bytes) -> None:
    """Swap the file as a Kubernetes secret update does: a new inode under the same name."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout}s")
        time.sleep(0.1)


def test_a_changed_key_file_is_read_again_and_a_bad_one_keeps_the_old_key(
    make_app: AppFactory, jwks_file: Path, signing_key: ECKey, keys: Keys, tmp_path: Path
) -> None:
    key_file = write(tmp_path, "k.pem", private_pem(keys.ec256.private_key))
    app = signing_app(make_app, jwks_file, {"key_file": str(key_file)})
    token = inbound_token(signing_key, "watched")
    first = upstream_assertion(app, token)
    assert upstream_assertion(app, token) == first  # cached

    _replace(key_file, private_pem(keys.ed.private_key))
    new_kid = thumbprint(keys.ed.private_key)
    _wait_for("re-read key", lambda: kids(published(app)) == [new_kid])
    second = upstream_assertion(app, token)
    assert second != first  # the cached assertion went with the old key
    assert verify(second, published(app)).header["kid"] == new_kid

    _replace(key_file, private_pem(weak_rsa_key()))
    client = app.test_client()

    def reported() -> bool:
        return "problems" in client.get("/api/health").get_json()

    _wait_for("reported refusal", reported)
    health = client.get("/api/health")
    assert health.status_code == 200
    (problem,) = health.get_json()["problems"]
    assert problem.startswith("signing: [signing] key_file: ")
    assert "RSA modulus of 1024 bits is too short" in problem
    assert kids(published(app)) == [new_kid]  # the previous key still signs
    assert verify(upstream_assertion(app, token), published(app)).header["kid"] == new_kid


def test_signing_settings_reach_the_loader_only_through_config(homepath: Path, keys: Keys) -> None:
    """A relative key_file is read from the home path, like every other key file."""
    write(homepath, "signing.pem", private_pem(keys.ec256.private_key))
    settings = load_settings(homepath, None, ["cfg:signing.key_file=signing.pem"], environ={})
    assert settings.signing.key.key_file == str(homepath / "signing.pem")
    assert settings.signing.enabled
