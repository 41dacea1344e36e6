"""The error catalog: every code Finkok's own catalog lists, with the kind the pipeline needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.finkok import catalog
from worker.finkok.errors import (
    FinkokAmbiguous,
    FinkokBadResponse,
    FinkokFault,
    FinkokNotSent,
    Kind,
    classify,
    classify_text,
    message_of,
)
from worker.finkok.results import Incidencia, StampResult, stamp_result_kind


def _shared_catalog(shared_dir: Path) -> dict[str, str]:
    rows = {}
    for line in (shared_dir / "finkok" / "error-catalog.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        code, message = line.split("\t", 1)
        rows[code.strip()] = message.strip()
    return rows


# What each kind means, stated independently of our catalog: the test derives the expected
# kind of every shared code from these rules and compares.
ALREADY = {"307"}
NOT_STAMPED = {"603"}
OK = {"201", "202"}
TRANSIENT = {"205", "501", "502", "708", "709", "715", "717", "723", "725", "731", "732", "733", "735"}
ACCOUNT = {"300", "304", "604", "701", "702", "703", "704", "706", "713", "714", "718", "719",
           "720", "721"}


def _expected(code: str) -> Kind:
    for codes, kind in ((ALREADY, Kind.ALREADY_STAMPED), (NOT_STAMPED, Kind.NOT_STAMPED),
                        (OK, Kind.OK), (TRANSIENT, Kind.TRANSIENT), (ACCOUNT, Kind.ACCOUNT)):
        if code in codes:
            return kind
    return Kind.PERMANENT


@pytest.mark.shared
def test_every_shared_code_is_present_with_its_message_and_kind(shared_dir: Path) -> None:
    shared = _shared_catalog(shared_dir)
    assert len(shared) > 60
    for code, message in shared.items():
        assert code in catalog.CODES, code
        assert message_of(code) == message, code
        assert classify(code) is _expected(code), code


def test_the_kinds_the_pipeline_branches_on() -> None:
    assert classify("307") is Kind.ALREADY_STAMPED
    assert classify(603) is Kind.NOT_STAMPED
    for code in ("708", "709"):
        assert classify(code) is Kind.TRANSIENT
    for code in ("300", "701", "702", "703", "713", "714", "718"):
        assert classify(code) is Kind.ACCOUNT
    for code in ("301", "302", "401", "705", "707"):
        assert classify(code) is Kind.PERMANENT


def test_receptor_fiscal_data_range() -> None:
    for n in range(40143, 40162):
        assert classify(f"CFDI{n}") is Kind.FISCAL_DATA
    assert classify("cfdi40145 ") is Kind.FISCAL_DATA
    assert classify("CFDI40142") is Kind.PERMANENT  # not a receptor field
    assert classify("CFDI40162") is Kind.PERMANENT
    assert classify("CFDI33102") is Kind.PERMANENT
    assert message_of("CFDI40143", ) == (
        "Este RFC del receptor no existe en la lista de RFC inscritos no cancelados del SAT.")


def test_cancellation_context_and_texts() -> None:
    assert classify("300", context="cancel") is Kind.TRANSIENT  # SAT authentication hiccup
    assert classify("1201") is Kind.OK and classify("1205") is Kind.TRANSIENT
    assert classify("1000") is Kind.OK and classify("1003") is Kind.PERMANENT
    assert classify_text("Invalid Username or Password") is Kind.ACCOUNT
    assert classify_text("UUID: 7ED34E9C-9B8E-5BFC-96A3-576C5A04CDB8 No Encontrado") is Kind.TRANSIENT
    assert classify_text("708") is Kind.TRANSIENT
    assert classify_text("something new") is None
    assert classify("999") is Kind.PERMANENT  # unknown: never retried blindly


def _result(*codes: str, uuid: str | None = None, xml: str | None = None) -> StampResult:
    return StampResult(uuid=uuid, xml=xml, fecha=None, cod_estatus=None, sat_seal=None,
                       no_certificado_sat=None,
                       incidencias=tuple(Incidencia(codigo_error=c, mensaje=None) for c in codes))


def test_stamp_result_kind() -> None:
    assert stamp_result_kind(_result(uuid="U", xml="<x/>")) is Kind.OK
    assert stamp_result_kind(_result("307", uuid="U", xml="<x/>")) is Kind.ALREADY_STAMPED
    assert stamp_result_kind(_result("307")) is Kind.ALREADY_STAMPED
    assert stamp_result_kind(_result("603")) is Kind.NOT_STAMPED
    assert stamp_result_kind(_result("CFDI40145", "702")) is Kind.ACCOUNT
    assert stamp_result_kind(_result("CFDI40145")) is Kind.FISCAL_DATA
    assert stamp_result_kind(_result("709")) is Kind.TRANSIENT
    assert stamp_result_kind(_result("709", "302")) is Kind.PERMANENT
    assert stamp_result_kind(_result()) is Kind.TRANSIENT  # nothing learned


def test_exception_kinds() -> None:
    assert FinkokNotSent("x").kind is Kind.TRANSIENT
    assert FinkokAmbiguous("x").kind is Kind.TRANSIENT
    assert FinkokFault("x", code="senv:Server").kind is Kind.TRANSIENT
    assert FinkokBadResponse("x", status=404).kind is Kind.ACCOUNT
