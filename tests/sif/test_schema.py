"""Our copy of SIF's JSON Schema: valid draft-07, and strict where the page was loose."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft7Validator

from worker.sif.schema import SifBodyError, body_errors, load_schema, validate_body

UUID = "1044D724-23CB-43A2-9AA7-C08B73FF4381"
OK: dict[str, Any] = {
    "reference": "0016921514", "status": "OK", "folio": UUID, "type": "S", "pedidoga": "123435",
    "pdf": "JVBERi0=", "xml": "PD94bWw+",
    "datosFiscales": {
        "rfc": "RARA760229C54", "usoCfdi": "G03", "regimenFiscal": "612", "codigoPostal": "21200"
    },
}
NOK: dict[str, Any] = {
    "reference": "0016921514", "error": ["first error", "second error"], "errorDatosFiscales": 1,
    "status": "NOK", "folio": UUID, "type": "S",
}


def test_schema_is_valid_draft07_and_closed() -> None:
    schema = load_schema()
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["datosFiscales"]["additionalProperties"] is False
    assert schema["properties"]["status"]["enum"] == ["OK", "NOK"]
    assert schema["properties"]["errorDatosFiscales"]["type"] == "number"
    assert schema["properties"]["errorDatosFiscales"]["enum"] == [0, 1]
    assert schema["required"] == ["reference", "status", "folio", "type"]
    assert schema["properties"]["datosFiscales"]["required"] == [
        "rfc", "usoCfdi", "regimenFiscal", "codigoPostal"
    ]
    assert load_schema() is schema  # loaded once


def test_the_pages_examples_pass_once_corrected() -> None:
    validate_body(OK)
    validate_body(NOK)  # the page's NOK example, with type S (decision 1)


def _mutated(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DROP = object()


@pytest.mark.parametrize(
    ("base", "path", "value", "field"),
    [
        (OK, ["status"], "MAYBE", "status"),
        (OK, ["status"], "ok", "status"),
        (NOK, ["errorDatosFiscales"], False, "errorDatosFiscales"),  # the cURL example's false
        (NOK, ["errorDatosFiscales"], 2, "errorDatosFiscales"),
        (NOK, ["errorDatosFiscales"], "1", "errorDatosFiscales"),
        (OK, ["type"], 1, "type"),
        (OK, ["folio"], "524826", "folio"),  # the cURL example's folio is no UUID
        (OK, ["reference"], "", "reference"),
        (OK, ["reference"], _DROP, "reference"),
        (OK, ["folio"], _DROP, "folio"),
        (OK, ["extra"], "x", "extra"),
        (OK, ["datosFiscales", "codigoPostal"], 21200, "datosFiscales.codigoPostal"),
        (OK, ["datosFiscales", "codigoPostal"], "1200", "datosFiscales.codigoPostal"),
        (OK, ["datosFiscales", "regimenFiscal"], _DROP, "datosFiscales.regimenFiscal"),
        (OK, ["datosFiscales", "nombre"], "X", "datosFiscales.nombre"),
        (OK, ["datosFiscales"], _DROP, "datosFiscales"),
        (OK, ["xml"], "not base64!", "xml"),
        (OK, ["xml"], _DROP, "xml"),
        (OK, ["errorDatosFiscales"], 1, "errorDatosFiscales"),
        (NOK, ["error"], [], "error"),
        (NOK, ["error"], ["ok", 3], "error.1"),
        (NOK, ["error"], _DROP, "error"),
        (NOK, ["pdf"], "JVBERi0=", "pdf"),
        (NOK, ["datosFiscales"], OK["datosFiscales"], "datosFiscales"),
    ],
)
def test_invalid_bodies_name_the_field(base: dict[str, Any], path: list[str], value: Any, field: str) -> None:
    body = _mutated(base, path, value)
    with pytest.raises(SifBodyError) as info:
        validate_body(body)
    assert info.value.field == field
    assert str(info.value).startswith(f"SIF body invalid: {field}: ")
    assert any(line.startswith(f"{field}: ") for line in body_errors(body))


def test_error_text_stays_short_even_for_a_huge_value() -> None:
    body = _mutated(OK, ["xml"], "!" * 1_000_000)
    with pytest.raises(SifBodyError) as info:
        validate_body(body)
    assert len(str(info.value)) < 400


def test_not_an_object() -> None:
    with pytest.raises(SifBodyError) as info:
        validate_body(["OK"])
    assert info.value.field == "(body)"
