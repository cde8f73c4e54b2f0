"""Conformance vectors: Wycheproof JWS/JWK and the RFC 7515, 7520 and 8037 examples.

Every case goes through our own path: the key set through ``parse_key_set``
(our key policy), a ``StaticJwksProvider`` over what it kept, and a
``Verifier`` allowing every algorithm of ``[auth.jwt]`` with ``require_exp =
false`` (no vector carries ``exp``).

**Where the vectors are.** Outside the repository, in ``$AUTHSVC_VECTORS`` or
``<repo>/../shared/vectors``; they are never copied in. Without that directory
these tests skip, saying where the vectors come from (``VECTORS_SOURCE``);
under ``CI=true`` they fail instead.

- Wycheproof, https://github.com/C2SP/wycheproof (formerly google/wycheproof),
  Apache-2.0 (its LICENSE sits beside the files): ``testvectors_v1/``
  json_web_signature_test.json, json_web_key_test.json and
  json_web_crypto_test.json, under ``wycheproof/testvectors_v1/``. The shared
  copy records no upstream commit, so ``SHA256`` pins each file's content
  (``test_vector_files_are_the_recorded_ones``): a different version is looked
  at before it is accepted.
- The RFC examples, transcribed as JSON under ``rfc/``: RFC 7515 Appendix A
  (A.1-A.7), RFC 7520 §4 (4.1-4.4, 4.6-4.8) and RFC 8037 Appendix A.4.

**What runs.** 476 Wycheproof cases of the JWS layer: all 401 of
json_web_signature_test.json, all 26 of json_web_key_test.json and the 49
``jws`` cases of json_web_crypto_test.json. JWE is out of scope: we refuse
encrypted tokens outright, so json_web_encryption_test.json (139 cases), the 34
``jwe`` cases of json_web_crypto_test.json and the X25519/X448 key files
(key agreement keys) are not run. Labels: 55 valid, 421 invalid, 0 acceptable.
Outcome: 49 valid accepted, 419 invalid rejected, 8 excluded (below), 0 false
accepts, 0 false rejects. ``test_wycheproof_counts`` prints these figures.

**Keys.** A group's ``public`` key (or set) when it has one, else its
``private`` one: HMAC groups only have the secret, and the one set without a
``public`` (``jws_mixedSymmetryKeyset``) holds an HMAC secret and an EC
*public* key. A single JWK is a one-key set. A set in which our policy
refuses any key is refused as a whole, as ``jwk_set_file`` / ``jwk_set_value``
do; ``jwk_set_url``'s rule (drop the key, keep the rest) gives the same verdict
on every vector, because every refused key is the one its token names.
joserfc warns (SecurityWarning) about some weak keys before our policy sees
them; each such key must then be refused by our policy, which is asserted.

**Kids.** No mapping is needed: in every group the keys and the tokens agree
on having a kid, except the kid-less ``alg: none`` tokens (tcId 341, 342 of
the signature file), which are refused before any key lookup.

**Results.** ``valid``: the JWS layer must accept. ``invalid``: key loading
or the JWS layer must refuse. ``acceptable`` (legal but discouraged, Wycheproof
lets an implementation go either way): either outcome passes. These files have
no acceptable case; ``test_wycheproof_counts`` asserts that, so a new version
that adds some is looked at before it is accepted.

**JWS layer, not claims.** The vectors' payloads are not JWT claims (``foo``,
``Test``, Tolkien), so ``Verifier.verify`` refuses them after the signature has
verified, when it reads the payload as claims. The JWS layer (RFC 7515 §5.2:
header, key, algorithm, signature, base64url payload) accepted a token when
``verify`` returns or fails with one of ``_CLAIMS_LAYER`` exactly; any other
refusal is the JWS layer's. A reworded claims reason turns valid vectors red
rather than letting an invalid one pass. (Proposed: a public
``Verifier.verify_signature`` that ``_verify`` calls, so this split needs no
reason text.) A JSON-serialised JWS is given to ``verify`` as its JSON text,
as a client would send it.

**Excluded: eight signature-file vectors whose labels are wrong.** Each still
runs, against the corrected label in ``EXCLUDED``, and
``test_exclusions_still_apply`` checks the fact each exclusion rests on, so a
fixed upstream file makes it fail and the exclusion can go.

- 346, 350 (rfc7520 / rfc7520WithKeyOps, Figure20), labelled valid: the token
  is RFC 7520 §4.2's PS384 signature, but Wycheproof's copy of the key pins
  ``"alg": "PS256"`` (the RFC's key has no ``alg``). RFC 7517 §4.4 ties the
  key to PS256, and the same file labels the same mismatch invalid
  (tcId 340, WrongPrimitive). Correct label: invalid. The RFC's own example
  (key without alg) verifies in ``test_rfc_example[rfc7520-4.2]``.
- 347, 351 (Figure27), labelled valid: RFC 7520 §4.3's ES512 token, with a key
  pinning ``"alg": "ES521"``, which is no JWS algorithm (RFC 7518 §3.1).
  json_web_key_test.json tcId 19 labels a key with that alg invalid. Our
  policy refuses the key. Correct label: invalid. The RFC example verifies
  in ``test_rfc_example[rfc7520-4.3]``.
- 367 (invalidBase64Padding), 370 (invalidBase64PaddingInPayload), labelled
  invalid: the token is byte for byte tcId 357 (ValidMac, labelled valid); the
  padding it is named after is missing. One token cannot be both. Correct
  label: valid.
- 372 (InvalidCharacterInsertedInHeader), 373 (InvalidCharacterInsertedInPayload),
  labelled valid: the token carries a ``?``, which is outside the base64url
  alphabet (RFC 7515 §2), as the comment says; the neighbouring cases with
  the same damage (361-371) are labelled invalid. Correct label: invalid.

**RFC examples.** RFC 7515 A.1-A.4 (HS256, RS256, ES256, ES512), RFC 7520
4.1-4.4 (RS256, PS384, ES512, HS256) and RFC 8037 A.4 (Ed25519) verify with
their public keys. None of these keys is refused by our policy (A.1's
secret is 64 bytes, 7520's is 32; both RSA keys are 2048 bits). RFC 7515 A.5
(``alg: none``) is refused with each A.1-A.4 key configured. The JSON
serialisations (RFC 7515 A.6, A.7; RFC 7520 4.6-4.8) are valid JWS but not
compact JWTs: each is refused as malformed with each of its keys. RFC 7520
4.5 (detached payload) is not in the vector file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from joserfc.errors import SecurityWarning

from authsvc.config import ALGORITHMS, JWTSettings, Settings
from authsvc.errors import InvalidToken, MissingClaim
from authsvc.keys.base import KeyError_
from authsvc.keys.jwks import parse_key_set
from authsvc.keys.jwks_static import StaticJwksProvider
from authsvc.verifier import Verifier

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("AUTHSVC_VECTORS", REPO.parent / "shared" / "vectors"))
WYCHEPROOF = VECTORS / "wycheproof" / "testvectors_v1"
RFC = VECTORS / "rfc"
IN_CI = os.environ.get("CI", "").lower() == "true"

WYCHEPROOF_FILES = {
    "sig": "json_web_signature_test.json",
    "key": "json_web_key_test.json",
    "crypto": "json_web_crypto_test.json",
}
RFC_FILES = ("rfc7515_appendix_a.json", "rfc7520_jws.json", "rfc8037_ed25519.json")
SHA256 = {
    "wycheproof/testvectors_v1/json_web_signature_test.json": (
        "8e687a06fe8359f4ec51480f1a9f73c8faebd6f4c01b818b843b44eee54fd5d9"
    ),
    "wycheproof/testvectors_v1/json_web_key_test.json": (
        "be983255bce26406f97020ec5458b33930a90d5f868e604fcd569c300aba2862"
    ),
    "wycheproof/testvectors_v1/json_web_crypto_test.json": (
        "dcd58ac9548a7d6173437a691e4cc307dcd3cec9fd814a39cd2a94531cf4f8ce"
    ),
    "rfc/rfc7515_appendix_a.json": (
        "90c299315970f08f42de61b36e51e15d270cbb1459b838cad5bb714d5c12c740"
    ),
    "rfc/rfc7520_jws.json": ("b0ca48550f9b21b25cc832d84ebb6e02c27e51f85b236a3aac0779fcbdb2558e"),
    "rfc/rfc8037_ed25519.json": (
        "d80ae3cba1e91ceb142f29a43a847015193a4bdca2082dfeb05bc841adc8dbd4"
    ),
}
VECTORS_SOURCE = (
    "Wycheproof from https://github.com/C2SP/wycheproof (formerly google/wycheproof; "
    "the copy used records no commit, its files are pinned by SHA-256 in tests/test_vectors.py): "
    + ", ".join(f"testvectors_v1/{name}" for name in WYCHEPROOF_FILES.values())
    + ", with its LICENSE; and the RFC 7515 Appendix A, RFC 7520 §4 and RFC 8037 "
    "Appendix A.4 examples as JSON (" + ", ".join(RFC_FILES) + "). Point AUTHSVC_VECTORS "
    "at a directory holding wycheproof/testvectors_v1/<those files> and rfc/<those files> "
    "(the default is ../shared/vectors beside the repository)"
)

# Refusals raised only after the signature verified and the payload decoded.
_CLAIMS_LAYER = frozenset(
    {
        (InvalidToken, "malformed token: payload is not JSON"),
        (InvalidToken, "malformed token: payload is not a JSON object"),
        (MissingClaim, "claim 'sub' is missing or not a non-empty string"),
    }
)

# Signature-file tcId → the correct label; the module docstring says why.
EXCLUDED = {
    346: "invalid",
    347: "invalid",
    350: "invalid",
    351: "invalid",
    367: "valid",
    370: "valid",
    372: "invalid",
    373: "invalid",
}


def require_vectors() -> None:
    if VECTORS.is_dir():
        return
    why = f"conformance vectors not found at {VECTORS}. They are {VECTORS_SOURCE}"
    if IN_CI:
        pytest.fail(f"{why}; CI=true: they must run")
    pytest.skip(why)


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One Wycheproof JWS-layer case, with the key set our verifier is given."""

    file: str
    tc_id: int
    comment: str
    result: str
    key_set: Mapping[str, Any]
    token: str


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _key_set(group: Mapping[str, Any]) -> Mapping[str, Any]:
    given = group.get("public") or group["private"]
    return given if "keys" in given else {"keys": [given]}


def _token(jws: str | Mapping[str, Any]) -> str:
    return jws if isinstance(jws, str) else json.dumps(jws, separators=(",", ":"))


def wycheproof_cases() -> Iterator[Case]:
    for prefix, name in WYCHEPROOF_FILES.items():
        for group in _load(WYCHEPROOF / name)["testGroups"]:
            key_set = _key_set(group)
            for test in group["tests"]:
                if "jws" in test:  # the crypto file's jwe cases are out of scope
                    yield Case(
                        prefix,
                        test["tcId"],
                        test["comment"],
                        test["result"],
                        key_set,
                        _token(test["jws"]),
                    )


def _case_id(case: Case) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", case.comment).strip("-")[:60]
    return f"{case.file}-tc{case.tc_id}-{words}"


def _params() -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, id="wycheproof-vectors-missing")]
    return [pytest.param(case, id=_case_id(case)) for case in wycheproof_cases()]


def _rfc_params() -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, None, id="rfc-vectors-missing")]
    params = []
    for name in RFC_FILES:
        vectors = _load(RFC / name)["vectors"]
        public_keys = [v["public_jwk"] for v in vectors if v["expected"] == "valid"]
        params += [pytest.param(v, public_keys, id=v["id"]) for v in vectors]
    return params


# --------------------------------------------------------------------------- the path under test
def jws_layer(settings: JWTSettings, key_set: Mapping[str, Any], token: str) -> str | None:
    """None when our key loading and JWS layer accept ``token``, else the reason they refuse."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", SecurityWarning)
        try:
            parsed = parse_key_set(key_set, settings.algorithms)
        except KeyError_ as exc:
            return f"key set refused: {exc}"
    if parsed.refused:
        return "key refused: " + "; ".join(parsed.refused)
    assert not warned, f"joserfc warned {[str(w.message) for w in warned]}; our policy took the key"
    verifier = Verifier(settings, StaticJwksProvider(dict(parsed.keys), "conformance vectors"))
    try:
        verifier.verify(token)
    except (InvalidToken, MissingClaim) as exc:
        return None if (type(exc), exc.reason) in _CLAIMS_LAYER else exc.reason
    return None


@pytest.fixture
def jwt_settings(make_settings: Callable[..., Settings]) -> JWTSettings:
    """Every algorithm we know, and no ``exp`` required: vectors carry none."""
    require_vectors()
    values = {"auth.jwt": {"algorithms": " ".join(ALGORITHMS), "require_exp": "false"}}
    return make_settings(values).jwt


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", _params())
def test_wycheproof(case: Case, jwt_settings: JWTSettings) -> None:
    refusal = jws_layer(jwt_settings, case.key_set, case.token)
    expected = EXCLUDED.get(case.tc_id, case.result) if case.file == "sig" else case.result
    if expected == "valid":
        assert refusal is None, f"false reject: {refusal}"
    elif expected == "invalid":
        assert refusal is not None, "false accept"
    else:
        assert expected == "acceptable", f"unknown result {expected!r}"


def test_wycheproof_counts() -> None:
    """The figures of the module docstring; new vector files must be looked at."""
    require_vectors()
    cases = list(wycheproof_cases())
    per_file = {p: sum(c.file == p for c in cases) for p in WYCHEPROOF_FILES}
    labels = {r: sum(c.result == r for c in cases) for r in ("valid", "invalid", "acceptable")}
    excluded = [c for c in cases if c.file == "sig" and c.tc_id in EXCLUDED]
    compared = [c for c in cases if not (c.file == "sig" and c.tc_id in EXCLUDED)]
    counts = {
        "total": len(cases),
        "accepted-valid": sum(c.result == "valid" for c in compared),
        "rejected-invalid": sum(c.result == "invalid" for c in compared),
        "excluded": len(excluded),
    }
    print(f"Wycheproof JWS layer: {counts}; per file {per_file}; labels {labels}")
    assert per_file == {"sig": 401, "key": 26, "crypto": 49}
    assert labels == {"valid": 55, "invalid": 421, "acceptable": 0}
    assert counts == {
        "total": 476,
        "accepted-valid": 49,
        "rejected-invalid": 419,
        "excluded": 8,
    }


def test_vector_files_are_the_recorded_ones() -> None:
    """The files are those SHA256 records; a new version is reviewed, then recorded."""
    require_vectors()
    for name, digest in SHA256.items():
        seen = hashlib.sha256((VECTORS / name).read_bytes()).hexdigest()
        assert seen == digest, f"{name} changed (sha256 {seen}); review it, then update SHA256"


def test_exclusions_still_apply() -> None:
    """The label problems behind EXCLUDED are still in the file (see the module docstring)."""
    require_vectors()
    groups = _load(WYCHEPROOF / WYCHEPROOF_FILES["sig"])["testGroups"]
    found = {t["tcId"]: (g, t) for g in groups for t in g["tests"]}
    for tc_id in (346, 350):
        group, test = found[tc_id]
        assert (group["public"]["alg"], test["result"]) == ("PS256", "valid")
        assert '"alg":"PS384"' in _header_json(test["jws"])
    for tc_id in (347, 351):
        group, test = found[tc_id]
        assert (group["public"]["alg"], test["result"]) == ("ES521", "valid")
    for tc_id in (367, 370):
        assert found[tc_id][1]["result"] == "invalid"
        assert found[tc_id][1]["jws"] == found[357][1]["jws"]
    assert found[357][1]["result"] == "valid"
    for tc_id in (372, 373):
        assert found[tc_id][1]["result"] == "valid"
        assert "?" in found[tc_id][1]["jws"]


def _header_json(jws: str) -> str:
    head = jws.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()


@pytest.mark.parametrize(("vector", "example_keys"), _rfc_params())
def test_rfc_example(
    vector: Mapping[str, Any], example_keys: list[Mapping[str, Any]], jwt_settings: JWTSettings
) -> None:
    token = _token(vector["jws"])
    if vector["expected"] == "valid":
        refusal = jws_layer(jwt_settings, {"keys": [vector["public_jwk"]]}, token)
        assert refusal is None, refusal
    elif vector["expected"] == "invalid":  # alg none: refused whichever key is configured
        for key in example_keys:
            assert jws_layer(jwt_settings, {"keys": [key]}, token) is not None, key
    else:
        assert vector["expected"] == "valid-json-only"
        for key in vector["keys"]:
            refusal = jws_layer(jwt_settings, {"keys": [key]}, token)
            assert refusal is not None and refusal.startswith("malformed token"), refusal
