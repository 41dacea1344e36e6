"""The bad-input corpus through the HTTP API (a real uvicorn on 127.0.0.1), as an XML body
and as base64 inside JSON: each refused with its reason (413 for size, else 422), nothing
written or published, and the server still takes a valid invoice afterwards."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.api import create_api
from worker.api.keys import ALL_EMPRESAS, create_key
from worker.api.server import BackgroundServer
from worker.settings import Settings, load_settings

from .conftest import NOTHING, Counts, queued_messages
from .corpus import MAX_BYTES, BadInput, corpus, sealed

CASES = {case.name: case for case in corpus()}


@pytest.fixture(scope="module")
def api_settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        database_url=db_url, data_dir=tmp_path_factory.mktemp("badinput-api"),
        broker_url="filesystem://", max_xml_bytes=MAX_BYTES, environment="test",
    )


@pytest.fixture(scope="module")
def base_url(api_settings: Settings) -> Iterator[str]:
    with BackgroundServer(create_api(api_settings)) as url:
        yield url


@pytest.fixture()
def client(base_url: str, sessions: sessionmaker[Session]) -> Iterator[httpx.Client]:
    key = create_key(sessions, "badinput", ALL_EMPRESAS).key  # tables are emptied per test
    with httpx.Client(base_url=base_url, timeout=30, headers={"X-API-Key": key}) as c:
        yield c


def _post(client: httpx.Client, case: BadInput, as_json: bool) -> httpx.Response:
    if as_json:
        return client.post("/v1/invoices", json={
            "empresaRefId": case.empresa, "reference": case.ref,
            "xml": base64.b64encode(case.data).decode("ascii"),
        })
    return client.post(
        "/v1/invoices", content=case.data, headers={"Content-Type": "application/xml"},
        params={"empresaRefId": case.empresa, "reference": case.ref},
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["xml-body", "json-base64"])
@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_its_reason_and_nothing_written(
    name: str, as_json: bool, client: httpx.Client, written: Counts, api_settings: Settings
) -> None:
    case = CASES[name]
    reply = _post(client, case, as_json)
    assert reply.status_code == (413 if case.reason == "too_large" else 422), reply.text[:500]
    error = reply.json()["error"]
    assert error["reason"] == case.reason, error
    for word in case.words:
        assert word.lower() in error["message"].lower(), (word, error["message"])
    assert written() == NOTHING
    assert queued_messages(api_settings.data_dir) == 0


def test_after_the_whole_corpus_a_valid_invoice_goes_in(
    client: httpx.Client, written: Counts, api_settings: Settings
) -> None:
    for case in CASES.values():
        for as_json in (False, True):
            reply = _post(client, case, as_json)
            assert reply.status_code in (413, 422), (case.name, reply.status_code)
    assert client.get("/healthz").json() == {"status": "ok"}
    reply = client.post("/v1/invoices", content=sealed(),
                        headers={"Content-Type": "application/xml"},
                        params={"empresaRefId": "E1", "reference": "GOOD-1"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["outcome"] == "created" and reply.json()["published"] is True
    assert written() == {**NOTHING, "invoices": 1}
    assert queued_messages(api_settings.data_dir) == 1
