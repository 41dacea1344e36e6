"""The OpenAPI contract: the served document is the committed one; fuzzing every
operation with a valid key never yields a 5xx, and every answer matches the document.

After changing the API, regenerate the committed document:

    .venv/bin/python -m worker.api.contract > worker/api/openapi.json
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import MakeKey
from worker.api.contract import COMMITTED, openapi_document, render


def test_served_document_is_the_committed_one(client: httpx.Client) -> None:
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text(encoding="utf-8")), (
        "worker/api/openapi.json is stale: run "
        "`.venv/bin/python -m worker.api.contract > worker/api/openapi.json`"
    )


def test_contract_renders_byte_for_byte() -> None:
    assert render(openapi_document()) == COMMITTED.read_text(encoding="utf-8")


@pytest.fixture()
def fuzz_key(make_key: MakeKey) -> str:
    return make_key("*", name="fuzz")


# Cases come from the committed document (the test above ties it to the served one).
# (schemathesis.pytest.from_fixture would load the served one, but it breaks on pytest 9.)
schema = schemathesis.openapi.from_path(COMMITTED)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_every_operation(case: schemathesis.Case, api_server: str, fuzz_key: str) -> None:
    response = case.call(base_url=api_server, headers={"X-API-Key": fuzz_key}, timeout=10)
    case.validate_response(response, checks=CHECKS)
