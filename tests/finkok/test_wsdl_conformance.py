"""Our WSDL files against the real ones Finkok served, both read by zeep.

For every operation of a real file: the same operation in our file, the same input
parameters in the same order with the same types, the same result element and result
type, the same fields (recursively), the same namespaces.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from zeep.transports import Transport
from zeep.wsdl import Document
from zeep.xsd import ComplexType

from tools import wsdlgen
from worker.finkok import services

# real file -> our service. cancel40 is the current (CFDI 4.0) cancel service.
CURRENT = {"stamp.wsdl": "stamp", "registration.wsdl": "registration", "cancel40.wsdl": "cancel"}
# Superseded cancel versions: their operations must still exist in ours, but their
# signatures changed later (UUIDS became UUIDArray for CFDI 4.0 motivos; get_related got
# taxpayer_id), so only the names are compared.
SUPERSEDED = {
    "cancel.wsdl": "cancel",
    "cancel@7707480.wsdl": "cancel",
    "cancel@f0cc8f6.wsdl": "cancel",
    "cancel@530f1f7.wsdl": "cancel",
    "cancel-test@f0cc8f6.wsdl": "cancel",
}


def _qname(obj: Any) -> str:
    q = getattr(obj, "qname", None)
    return q.text if q is not None else type(obj).__name__


def _describe(type_: Any, depth: int = 0) -> Any:
    """A comparable structure of an XSD type: fields with occurrence, type and sub-fields."""
    if not isinstance(type_, ComplexType) or depth > 6:
        return _qname(type_)
    fields = []
    for name, el in type_.elements:
        fields.append((
            name, el.qname.namespace if el.qname is not None else None,
            el.min_occurs, el.max_occurs, _qname(el.type), _describe(el.type, depth + 1),
        ))
    attrs = tuple((name, _qname(attr.type)) for name, attr in type_.attributes)
    return (_qname(type_), tuple(fields), attrs)


def _operations(doc: Document) -> dict[str, dict[str, Any]]:
    (binding,) = doc.bindings.values()
    out = {}
    for name, op in binding._operations.items():
        in_el = op.input.body
        out_el = op.output.body
        params = [(n, _qname(e.type)) for n, e in in_el.type.elements]
        results = [(n, e.qname.text, _describe(e.type)) for n, e in out_el.type.elements]
        out[name] = {
            "input_element": in_el.qname.text,
            "params": params,
            "param_types": [_describe(e.type) for _, e in in_el.type.elements],
            "output_element": out_el.qname.text,
            "results": results,
            "soap_action": op.soapaction,
            "style": op.style,
        }
    return out


def _load(path: Path) -> Document:
    return Document(str(path), Transport(), settings=services.ZEEP_SETTINGS)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ours() -> dict[str, dict[str, dict[str, Any]]]:
    return {key: _operations(services.document(key)) for key in services.SERVICES}


@pytest.mark.shared
@pytest.mark.parametrize("real_file,key", sorted(CURRENT.items()))
def test_every_real_operation_matches_ours(
    shared_dir: Path, ours: dict[str, Any], real_file: str, key: str
) -> None:
    real = _operations(_load(shared_dir / "finkok" / "wsdl" / real_file))
    mine = ours[key]
    assert real, "the real WSDL has operations"
    for name, sig in real.items():
        assert name in mine, f"{key}: missing operation {name}"
        assert mine[name]["input_element"] == sig["input_element"], name
        assert mine[name]["params"] == sig["params"], name
        assert mine[name]["param_types"] == sig["param_types"], name
        assert mine[name]["output_element"] == sig["output_element"], name
        assert mine[name]["results"] == sig["results"], name
        assert (mine[name]["soap_action"], mine[name]["style"]) == (name, "document")


@pytest.mark.shared
@pytest.mark.parametrize("real_file,key", sorted(SUPERSEDED.items()))
def test_superseded_versions_operations_still_exist(
    shared_dir: Path, ours: dict[str, Any], real_file: str, key: str
) -> None:
    real = _operations(_load(shared_dir / "finkok" / "wsdl" / real_file))
    assert set(real) <= set(ours[key])


@pytest.mark.shared
def test_namespaces_and_service_names(shared_dir: Path) -> None:
    for real_file, key in CURRENT.items():
        real = _load(shared_dir / "finkok" / "wsdl" / real_file)
        mine = services.document(key)
        assert set(real.bindings) == set(mine.bindings) == {services.SERVICES[key].binding}
        assert set(real.services) == set(mine.services)
        assert services.VIEWS_NS in mine.types.namespaces
        assert services.SERVICES[key].namespace in mine.types.namespaces


def test_known_shapes_of_services_without_a_real_wsdl(ours: dict[str, Any]) -> None:
    """utilities/retentions/manifest: operations and parameters as client code sends them."""
    util = ours["utilities"]
    assert [p for p, _ in util["get_xml"]["params"]] == [
        "username", "password", "uuid", "taxpayer_id", "invoice_type"]
    assert [p for p, _ in util["report_total"]["params"]] == [
        "username", "password", "taxpayer_id", "invoice_type", "date_from", "date_to"]
    assert [p for p, _ in util["datetime"]["params"]] == ["username", "password", "zipcode"]
    ret = ours["retentions"]
    assert set(ret) == {"stamp", "stamped", "cancel_signature", "get_receipt"}
    assert [r[0] for r in ret["cancel_signature"]["results"]] == ["cancel_signatureResult"]
    fields = [f[0] for f in ret["cancel_signature"]["results"][0][2][1]]
    assert fields[-1] == "SeguimientoCancelacion"
    man = ours["firmar"]
    assert [p for p, _ in man["get_contracts_snid"]["params"]] == [
        "snid", "taxpayer_id", "name", "address", "email"]
    assert [p for p, _ in man["sign_contract"]["params"]] == ["snid", "privacy_xml", "contract_xml"]
    reg = ours["registration"]
    assert [p for p, _ in reg["switch"]["params"]] == ["username", "password", "taxpayer_id", "type_user"]
    for key in services.SERVICES:
        for sig in ours[key].values():
            for _, qname, _ in sig["results"]:
                assert qname.split("}")[1].endswith("Result")


def test_shipped_files_are_the_generator_output() -> None:
    for key, spec in wsdlgen.SERVICES.items():
        assert services.wsdl_text(key).decode("utf-8") == wsdlgen.render(spec), key


def test_wsdls_load_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a WSDL load tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(services, "_documents", {})
    for key in services.SERVICES:
        doc = services.document(key)
        assert doc.bindings
