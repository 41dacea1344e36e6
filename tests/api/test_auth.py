"""API keys: 401 missing vs invalid/revoked, 403 per empresaRefId, secrets never stored."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import MakeKey
from worker.api.keys import hash_secret, revoke_key
from worker.cfdi.factory import build_invoice
from worker.db.models import ApiKey


def _submit(client: httpx.Client, headers: dict[str, str], empresa: str, ref: str) -> httpx.Response:
    return client.post(
        "/v1/invoices", params={"empresaRefId": empresa, "reference": ref},
        content=build_invoice(), headers={"Content-Type": "application/xml", **headers},
    )


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dTpw"}, {"X-API-Key": ""}])
def test_missing_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    for res in (
        _submit(client, headers, "E1", "R"),
        client.get("/v1/invoices", params={"reference": "R"}, headers=headers),
    ):
        assert res.status_code == 401
        assert res.json()["error"] == {
            "reason": "missing_api_key",
            "message": "missing API key: send it in X-API-Key or Authorization: Bearer",
        }
        assert res.headers["www-authenticate"].startswith("Bearer")


def test_unknown_malformed_and_revoked_keys_are_401_invalid(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    prefix = key_e1.split("_")[1]
    wrong_secret = f"bk_{prefix}_{'A' * 43}"
    unknown = f"bk_{'0' * 12}_{'A' * 43}"
    for key in (wrong_secret, unknown, "not-a-key", key_e1 + "x"):
        res = _submit(client, {"X-API-Key": key}, "E1", "R")
        assert res.status_code == 401
        assert res.json()["error"] == {"reason": "invalid_api_key", "message": "invalid or revoked API key"}

    assert _submit(client, {"X-API-Key": key_e1}, "E1", "R-ok").status_code == 201
    revoke_key(sessions, prefix)
    res = client.get(
        "/v1/invoices", params={"reference": "R-ok"}, headers={"Authorization": f"Bearer {key_e1}"}
    )
    assert res.status_code == 401 and res.json()["error"]["reason"] == "invalid_api_key"


def test_a_key_may_only_submit_for_its_empresas(client: httpx.Client, make_key: MakeKey) -> None:
    key = make_key("E1", "E2")
    assert _submit(client, {"X-API-Key": key}, "E2", "R-1").status_code == 201
    res = _submit(client, {"X-API-Key": key}, "E3", "R-1")
    assert res.status_code == 403
    err = res.json()["error"]
    assert (err["reason"], err["empresaRefId"]) == ("forbidden_empresa", "E3")
    assert "may not submit invoices for empresaRefId 'E3'" in err["message"]
    assert key.split("_", 2)[2] not in res.text  # the secret is never echoed


def test_reads_are_scoped_to_the_keys_empresas(client: httpx.Client, make_key: MakeKey) -> None:
    k1, k2, every = make_key("E1"), make_key("E2"), make_key("*")
    one = _submit(client, {"X-API-Key": k1}, "E1", "SAME").json()["id"]
    two = _submit(client, {"X-API-Key": k2}, "E2", "SAME").json()["id"]

    # Another tenant's invoice: the same 404 as one that does not exist, never naming E2.
    res = client.get(f"/v1/invoices/{two}", headers={"X-API-Key": k1})
    assert res.status_code == 404 and "E2" not in res.text
    assert res.json() == client.get("/v1/invoices/no-such-id", headers={"X-API-Key": k1}).json() \
        | {"error": {"reason": "not_found", "message": f"no invoice {two!r}"}}
    for path in (f"/v1/invoices/{two}/xml", f"/v1/invoices/{two}/pdf"):
        assert client.get(path, headers={"X-API-Key": k1}).status_code == 404

    def ids(key: str, **params: str) -> list[str]:
        res = client.get("/v1/invoices", params={"reference": "SAME", **params}, headers={"X-API-Key": key})
        assert res.status_code == 200, res.text
        return [item["id"] for item in res.json()["items"]]

    assert ids(k1) == [one] and ids(k2) == [two]
    assert sorted(ids(every)) == sorted([one, two])
    assert ids(every, empresaRefId="E2") == [two]
    forbidden = client.get("/v1/invoices", params={"reference": "SAME", "empresaRefId": "E2"},
                           headers={"X-API-Key": k1})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["empresaRefId"] == "E2"


def test_only_the_hash_is_stored_and_last_use_is_recorded(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    _, prefix, secret = key_e1.split("_", 2)
    started = time.time()
    res = client.get("/v1/invoices", params={"reference": "R"}, headers={"X-API-Key": key_e1})
    assert res.status_code == 200
    with sessions() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
        assert row.secret_sha256 == hash_secret(secret) != secret
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
        assert secret not in stored
        assert row.last_used_at is not None and row.last_used_at.timestamp() >= started - 1
