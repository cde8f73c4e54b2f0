"""``GET /api/openapi.json``: the package's document, served without authentication.

Conformance of live responses to it is tests/test_openapi_live.py (schemathesis
against ``authsvc serve``); coverage of the app's routes and messageIds is
tests/test_docs.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import schemathesis
from flask import Flask

from authsvc.openapi import build_document


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="everything-off"),
        pytest.param(
            {
                "auth.jwt": {
                    "enabled": "true",
                    "header_name": "Authorization",
                    "hmac_secret": "k" * 64,
                }
            },
            id="jwt-on",
        ),
    ],
)
def test_served_without_auth(
    make_app: Callable[..., Flask], values: dict[str, dict[str, str]]
) -> None:
    response = make_app(values).test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.data) == build_document()


def test_openapi_3_1_with_every_operation_loadable() -> None:
    document = build_document()
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    labels = []
    for result in schema.get_all_operations():
        labels.append(result.ok().label)  # an invalid operation raises here
    assert len(labels) == sum(len(item) for item in document["paths"].values())


def test_every_operation_documents_its_errors() -> None:
    """Each error response of an operation is one of the shared Error<status> responses."""
    for path, item in build_document()["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], f"{method} {path}"
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "$ref" not in response:
                    assert path == "/api/health" and status == "503", f"{method} {path} {status}"
