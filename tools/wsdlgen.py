"""Writes our own Finkok WSDL files (``worker/finkok/wsdl/*.wsdl``) from a compact spec.

The spec below is written from the facts in the Finkok reference (operation and parameter
names, their order, result types in ``apps.services.soap.core.views``); the shipped WSDL
files are its output, committed, and ``tests/finkok/test_wsdl_conformance.py`` checks them
against the real WSDLs Finkok served, and that they are up to date with this spec.

A build-time tool, not part of the installed package: run ``python -m tools.wsdlgen``
from the repository root after changing the spec.

Field spec: ``(name, type, occurs)``; occurs is ``opt`` (minOccurs=0 nillable, Finkok's
default), ``many`` (minOccurs=0 maxOccurs=unbounded nillable), ``many1`` (maxOccurs=unbounded
nillable), ``req`` (no occurrence attributes) or ``attr`` (an XML attribute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

VIEWS_NS = "apps.services.soap.core.views"
WSDL_DIR = Path(__file__).resolve().parents[1] / "worker" / "finkok" / "wsdl"

Field = tuple[str, str, str]

_B64 = "xs:base64Binary"
_S = "xs:string"
_BOOL = "xs:boolean"
_INT = "xs:integer"


def _f(*names: str, type_: str = _S) -> list[Field]:
    return [(n, type_, "opt") for n in names]


@dataclass(frozen=True)
class Op:
    name: str
    params: list[Field]
    result_type: str | None  # s0 type of <name>Result; None: empty response (dmethod)
    doc: str = ""


@dataclass(frozen=True)
class Service:
    key: str  # file stem and URL path segment: /servicios/soap/<key>
    namespace: str
    service_name: str
    address: str
    views_types: dict[str, list[Field]]
    tns_types: dict[str, list[Field]] = field(default_factory=dict)
    tns_simple: dict[str, str] = field(default_factory=dict)  # name -> restriction base
    ops: list[Op] = field(default_factory=list)
    note: str = ""


_CRED = _f("username", "password")

# --- shared result types (all in apps.services.soap.core.views) ------------------------

_ACUSE = {
    "AcuseRecepcionCFDI": [
        *_f("xml", "UUID", "faultstring", "Fecha", "CodEstatus", "faultcode", "SatSeal"),
        ("Incidencias", "s0:IncidenciaArray", "opt"),
        *_f("NoCertificadoSAT"),
    ],
    "IncidenciaArray": [("Incidencia", "s0:Incidencia", "many")],
    "Incidencia": _f(
        "IdIncidencia", "RfcEmisor", "Uuid", "CodigoError", "WorkProcessId",
        "MensajeIncidencia", "ExtraInfo", "NoCertificadoPac", "FechaRegistro",
    ),
}
_QUERY_PENDING = {
    "QueryPendingResult": _f(
        "status", "xml", "uuid", "uuid_status", "next_attempt", "attempts", "error", "date"
    ),
}
_CANCELA = {
    "CancelaCFDResult": [
        ("Folios", "s0:FolioArray", "opt"),
        *_f("Acuse", "Fecha", "RfcEmisor", "CodEstatus"),
    ],
    "FolioArray": [("Folio", "s0:Folio", "many")],
    "Folio": _f("UUID", "EstatusUUID", "EstatusCancelacion"),
}
_RECEIPT = {
    "ReceiptResult": [
        *_f("uuid"),
        ("success", _BOOL, "opt"),
        *_f("receipt", "taxpayer_id", "error", "date"),
    ],
}


def _xml_op(name: str, result: str, doc: str = "", extra: list[Field] | None = None) -> Op:
    return Op(name, [("xml", _B64, "opt"), *_CRED, *(extra or [])], result, doc)


STAMP = Service(
    key="stamp",
    namespace="http://facturacion.finkok.com/stamp",
    service_name="StampSOAP",
    address="https://facturacion.finkok.com/servicios/soap/stamp",
    views_types={**_ACUSE, **_QUERY_PENDING},
    ops=[
        _xml_op("stamp", "AcuseRecepcionCFDI", "Stamps a sealed CFDI"),
        _xml_op("sign_stamp", "AcuseRecepcionCFDI", "Seals (with the CSD kept at Finkok) and stamps"),
        _xml_op("stamped", "AcuseRecepcionCFDI", "Returns the previous stamp of the same pre-CFDI"),
        _xml_op("quick_stamp", "AcuseRecepcionCFDI", "Stamps; delivery to SAT is queued"),
        Op("query_pending", [*_CRED, *_f("uuid")], "QueryPendingResult",
           "Status of a stamped CFDI in the pending-delivery buffer: S stamped, F delivered"),
    ],
)

CANCEL = Service(
    key="cancel",
    namespace="http://facturacion.finkok.com/cancel",
    service_name="CancelSOAP",
    address="https://facturacion.finkok.com/servicios/soap/cancel",
    views_types={
        "CancelPendingResult": [("uuids", "tns:stringArray", "opt"), *_f("error")],
        "AcuseSatEstatus": [*_f("error"), ("sat", "s0:AcuseSATConsulta", "opt")],
        "AcuseSATConsulta": _f(
            "DetallesValidacionEFOS", "EsCancelable", "ValidacionEFOS", "CodigoEstatus",
            "Estado", "EstatusCancelacion",
        ),
        "UUIDS_AR": [("uuids_ar", "s0:UUID_ARArray", "opt")],
        "UUID_ARArray": [("UUID_AR", "s0:UUID_AR", "many1")],
        "UUID_AR": _f("uuid", "respuesta"),
        **_CANCELA,
        "UUIDS": [("uuids", "s0:UUIDArray", "opt")],
        "UUIDArray": [("UUID", "s0:UUID", "many")],
        **_RECEIPT,
        "UUID": [("UUID", _S, "attr"), ("FolioSustitucion", _S, "attr"), ("Motivo", _S, "attr")],
        **_QUERY_PENDING,
        "AcceptRejectResult": [
            ("rechazo", "s0:RechazaArray", "opt"),
            ("aceptacion", "s0:AceptaArray", "opt"),
            *_f("error"),
        ],
        "AceptaArray": [("Acepta", "s0:Acepta", "many")],
        "Acepta": _f("status", "uuid"),
        "RechazaArray": [("Rechaza", "s0:Rechaza", "many")],
        "Rechaza": _f("status", "uuid"),
        "RelatedResult": [
            ("Padres", "s0:PadreArray", "opt"), *_f("error"), ("Hijos", "s0:HijoArray", "opt"),
        ],
        "PadreArray": [("Padre", "s0:Padre", "many")],
        "Padre": _f("uuid", "emisor", "receptor"),
        "HijoArray": [("Hijo", "s0:Hijo", "many")],
        "Hijo": _f("uuid", "emisor", "receptor"),
    },
    tns_types={"stringArray": [("string", _S, "many1")]},
    ops=[
        Op("dmethod", [("UUIDS", "s0:UUIDS", "opt")], None),
        _xml_op("cancel_signature", "CancelaCFDResult",
                "Cancels CFDI with a Cancelacion document signed by the issuer",
                [("store_pending", _BOOL, "opt")]),
        Op("get_out_sat_status", [*_CRED, *_f("taxpayer_id", "rtaxpayer_id", "uuid", "total")],
           "AcuseSatEstatus"),
        Op("get_out_pending", [*_CRED, *_f("rtaxpayer_id")], "CancelPendingResult"),
        Op("get_pending", [*_CRED, *_f("rtaxpayer_id")], "CancelPendingResult",
           "UUIDs waiting for the receiver's accept/reject answer"),
        Op("get_sat_status", [*_CRED, *_f("taxpayer_id", "rtaxpayer_id", "uuid", "total")],
           "AcuseSatEstatus", "SAT status of a CFDI (Vigente, Cancelado, No Encontrado)"),
        _xml_op("get_related_signature", "RelatedResult",
                "Related CFDI, with a signed PeticionConsultaRelacionados"),
        Op("get_related", [*_CRED, *_f("taxpayer_id", "rtaxpayer_id", "uuid"),
                           ("cer", _B64, "opt"), ("key", _B64, "opt")], "RelatedResult"),
        Op("query_pending_cancellation", [*_CRED, *_f("uuid")], "QueryPendingResult"),
        _xml_op("accept_reject_signature", "AcceptRejectResult",
                "Receiver's answer, with a signed SolicitudAceptacionRechazo"),
        Op("sign_cancel", [("UUIDS", "s0:UUIDArray", "opt"), *_CRED,
                           *_f("taxpayer_id", "serial"), ("store_pending", _BOOL, "opt")],
           "CancelaCFDResult"),
        Op("get_receipt", [*_CRED, *_f("taxpayer_id", "uuid", "type")], "ReceiptResult",
           "The last SAT cancellation (C) or reception receipt of a UUID"),
        Op("cancel", [("UUIDS", "s0:UUIDArray", "opt"), *_CRED, *_f("taxpayer_id"),
                      ("cer", _B64, "opt"), ("key", _B64, "opt"), ("store_pending", _BOOL, "opt")],
           "CancelaCFDResult"),
        Op("get_out_related", [*_CRED, *_f("taxpayer_id", "rtaxpayer_id", "uuid"),
                               ("cer", _B64, "opt"), ("key", _B64, "opt")], "RelatedResult"),
        Op("out_cancel", [("xml", _B64, "opt"), *_CRED, *_f("taxpayer_id"),
                          ("cer", _B64, "opt"), ("key", _B64, "opt"),
                          ("store_pending", _BOOL, "opt")], "CancelaCFDResult"),
        Op("out_accept_reject", [("UUID_AR", "s0:UUID_AR", "opt"), *_CRED, *_f("rtaxpayer_id"),
                                 ("cer", _B64, "opt"), ("key", _B64, "opt")],
           "AcceptRejectResult"),
        Op("accept_reject", [("UUIDS_AR", "s0:UUIDS_AR", "opt"), *_CRED, *_f("rtaxpayer_id"),
                             ("cer", _B64, "opt"), ("key", _B64, "opt")], "AcceptRejectResult"),
    ],
)

_RESELLER = _f("reseller_username", "reseller_password")

REGISTRATION = Service(
    key="registration",
    namespace="http://facturacion.finkok.com/registration",
    service_name="RegistrationSOAP",
    address="https://facturacion.finkok.com/servicios/soap/registration",
    views_types={
        "AssingResult": [("success", _BOOL, "opt"), ("credit", _INT, "opt"), *_f("message")],
        "RegistrationListResult": [*_f("message"), ("users", "s0:ResellerUserArray", "opt")],
        "ResellerUserArray": [("ResellerUser", "s0:ResellerUser", "many")],
        "ResellerUser": [
            *_f("status"), ("counter", _INT, "opt"), *_f("taxpayer_id"), ("credit", _INT, "opt"),
        ],
        "RegistrationResult": [*_f("message"), ("success", _BOOL, "opt")],
        "SwitchResult": [*_f("message"), ("success", _BOOL, "opt")],
        "CustomersResult": [*_f("message"), ("users", "s0:ResellerUserArray", "opt")],
    },
    # 2018 restricted credit to > 0; since 2022 a negative credit decrements, so no facet.
    tns_simple={"assign_creditType": _INT},
    ops=[
        Op("edit", [*_RESELLER, *_f("taxpayer_id", "status"), ("cer", _B64, "opt"),
                    ("key", _B64, "opt"), *_f("passphrase")], "RegistrationResult",
           "Suspends (S) or activates (A) a customer"),
        Op("add", [*_RESELLER, *_f("taxpayer_id", "type_user", "coupon", "added"),
                   ("cer", _B64, "opt"), ("key", _B64, "opt"), *_f("passphrase")],
           "RegistrationResult", "Adds a customer RFC under the reseller account"),
        Op("assign", [("username", _S, "req"), ("password", _S, "req"), ("taxpayer_id", _S, "req"),
                      ("credit", "tns:assign_creditType", "opt")], "AssingResult",
           "Adds (or, negative, removes) stamp credits of a customer"),
        Op("get", [*_RESELLER, *_f("taxpayer_id")], "RegistrationListResult",
           "Status and credit of a customer RFC"),
        Op("switch", [*_CRED, *_f("taxpayer_id", "type_user")], "SwitchResult",
           "Switches a customer between on-demand (O) and prepaid (P)"),
        Op("customers", [*_CRED, ("page", _INT, "opt")], "CustomersResult",
           "Lists customers, 50 per page (1-based)"),
    ],
)

UTILITIES = Service(
    key="utilities",
    namespace="http://facturacion.finkok.com/utilities",
    service_name="UtilitiesSOAP",
    address="https://facturacion.finkok.com/servicios/soap/utilities",
    note=(
        "No copy of the real utilities.wsdl was found; operations and fields come from client"
        " code. Report dates are typed xs:string (not xs:dateTime) to accept either format."
        " The token operations' shapes were NOT FOUND anywhere: they are our assumption."
    ),
    views_types={
        "DateResult": _f("error", "datetime"),
        "XMLResult": _f("xml", "error"),
        "ReportCreditResult": [("result", "s0:ReportTotalCreditArray", "opt"), *_f("error")],
        "ReportTotalCreditArray": [("ReportTotalCredit", "s0:ReportTotalCredit", "many")],
        "ReportTotalCredit": [("credit", _INT, "opt"), *_f("date")],
        "ReportTotalResult": [("result", "s0:ReportTotalArray", "opt"), *_f("error")],
        "ReportTotalArray": [("ReportTotal", "s0:ReportTotal", "many")],
        "ReportTotal": [("total", _INT, "opt"), *_f("taxpayer_id")],
        "ReportUUIDResult": [("invoices", "s0:ReportUUIDArray", "opt"), *_f("error")],
        "ReportUUIDArray": [("ReportUUID", "s0:ReportUUID", "many")],
        "ReportUUID": _f("date", "uuid"),
        "TokenResult": [("success", _BOOL, "opt"), *_f("message", "token")],
    },
    ops=[
        Op("datetime", [*_CRED, *_f("zipcode")], "DateResult",
           "Finkok server time (in the zone of zipcode, else America/Mexico_City)"),
        Op("get_xml", [*_CRED, *_f("uuid", "taxpayer_id", "invoice_type")], "XMLResult",
           "A stamped CFDI (I) or retention (R) of the last 3 months"),
        Op("report_credit", [*_CRED, *_f("taxpayer_id")], "ReportCreditResult"),
        Op("report_total", [*_CRED, *_f("taxpayer_id", "invoice_type", "date_from", "date_to")],
           "ReportTotalResult"),
        Op("report_uuid", [*_CRED, *_f("taxpayer_id", "invoice_type", "date_from", "date_to")],
           "ReportUUIDResult"),
        Op("add_token", [*_CRED, *_f("name", "taxpayer_id")], "TokenResult",
           "ASSUMED shape: creates a token (user)"),
        Op("reset_token", [*_CRED, *_f("token")], "TokenResult",
           "ASSUMED shape: changes a token's passphrase"),
        Op("update_token", [*_CRED, *_f("token", "status")], "TokenResult",
           "ASSUMED shape: sets a token active (A) or inactive (I)"),
    ],
)

RETENTIONS = Service(
    key="retentions",
    namespace="http://facturacion.finkok.com/retentions",
    service_name="RetentionsSOAP",
    address="https://facturacion.finkok.com/servicios/soap/retentions",
    note="No copy of the real retentions.wsdl was found; shapes come from client code.",
    views_types={
        **_ACUSE,
        "CancelaCFDResult": [*_CANCELA["CancelaCFDResult"], *_f("SeguimientoCancelacion")],
        "FolioArray": _CANCELA["FolioArray"],
        "Folio": _CANCELA["Folio"],
        **_RECEIPT,
    },
    ops=[
        _xml_op("stamp", "AcuseRecepcionCFDI", "Stamps a retention (RET) document"),
        _xml_op("stamped", "AcuseRecepcionCFDI", "Returns the previous stamp of the same RET"),
        _xml_op("cancel_signature", "CancelaCFDResult", "Cancels a RET with a signed request",
                [("store_pending", _BOOL, "opt")]),
        Op("get_receipt", [*_CRED, *_f("taxpayer_id", "uuid", "type")], "ReceiptResult"),
    ],
)

MANIFEST = Service(
    key="firmar",
    namespace="http://facturacion.finkok.com/firmar",
    service_name="ManifestSOAP",
    address="https://manifiesto.cfdiquadrum.com.mx/servicios/soap/firmar",
    note=(
        "Manifest (contracts) service on its own host. Operations and fields come from client"
        " code; its target namespace was NOT FOUND and is our assumption."
    ),
    views_types={
        "ContractsResult": [
            ("success", _BOOL, "opt"), ("contract", _B64, "opt"), ("privacy", _B64, "opt"),
            *_f("error"),
        ],
        "SignContractResult": [("success", _BOOL, "opt"), *_f("message")],
    },
    ops=[
        Op("get_contracts_snid", _f("snid", "taxpayer_id", "name", "address", "email"),
           "ContractsResult", "The privacy notice and contract texts to sign"),
        Op("sign_contract", _f("snid", "privacy_xml", "contract_xml"), "SignContractResult",
           "Sends the texts signed with the FIEL"),
        Op("get_documents", _f("snid", "taxpayer_id", "type"), "ContractsResult",
           "The signed texts, as XML or PDF"),
    ],
)

SERVICES: dict[str, Service] = {
    s.key: s for s in (STAMP, CANCEL, UTILITIES, REGISTRATION, RETENTIONS, MANIFEST)
}

# Namespace prefixes declared on wsdl:definitions, as Finkok's own files do.
_DEFS_NS = (
    ("wsa", "http://schemas.xmlsoap.org/ws/2003/03/addressing"),
    ("tns", None),
    ("plink", "http://schemas.xmlsoap.org/ws/2003/05/partner-link/"),
    ("xop", "http://www.w3.org/2004/08/xop/include"),
    ("senc", "http://schemas.xmlsoap.org/soap/encoding/"),
    ("s0", VIEWS_NS),
    ("s12env", "http://www.w3.org/2003/05/soap-envelope/"),
    ("s12enc", "http://www.w3.org/2003/05/soap-encoding/"),
    ("xs", "http://www.w3.org/2001/XMLSchema"),
    ("wsdl", "http://schemas.xmlsoap.org/wsdl/"),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
    ("senv", "http://schemas.xmlsoap.org/soap/envelope/"),
    ("soap", "http://schemas.xmlsoap.org/wsdl/soap/"),
)


def _element(name: str, type_: str, occurs: str) -> str:
    extra = {
        "opt": ' minOccurs="0" nillable="true"',
        "many": ' minOccurs="0" maxOccurs="unbounded" nillable="true"',
        "many1": ' maxOccurs="unbounded" nillable="true"',
        "req": "",
    }[occurs]
    return f'<xs:element name="{name}" type="{type_}"{extra}/>'


def _complex(name: str, fields: list[Field]) -> str:
    elements = "".join(_element(*f) for f in fields if f[2] != "attr")
    attrs = "".join(f'<xs:attribute name="{n}" type="{t}"/>' for n, t, o in fields if o == "attr")
    seq = f"<xs:sequence>{elements}</xs:sequence>" if elements else "<xs:sequence/>"
    return f'<xs:complexType name="{name}">{seq}{attrs}</xs:complexType>'


def render(service: Service) -> str:
    """The WSDL text of one service."""
    defs_ns = " ".join(
        f'xmlns:{p}="{service.namespace if u is None else u}"' for p, u in _DEFS_NS
    )
    views = "".join(_complex(n, f) for n, f in service.views_types.items())
    views += "".join(f'<xs:element name="{n}" type="s0:{n}"/>' for n in service.views_types)
    views_imports = f'<xs:import namespace="{service.namespace}"/>' if service.tns_types else ""
    tns_parts: list[str] = []
    for name, fields in service.tns_types.items():
        tns_parts.append(_complex(name, fields))
    for name, base in service.tns_simple.items():
        tns_parts.append(
            f'<xs:simpleType name="{name}"><xs:restriction base="{base}"/></xs:simpleType>'
        )
    for op in service.ops:
        tns_parts.append(_complex(op.name, op.params))
        out = [(f"{op.name}Result", f"s0:{op.result_type}", "opt")] if op.result_type else []
        tns_parts.append(_complex(f"{op.name}Response", out))
    tns_parts += [f'<xs:element name="{n}" type="tns:{n}"/>' for n in service.tns_types]
    for op in service.ops:
        tns_parts.append(f'<xs:element name="{op.name}" type="tns:{op.name}"/>')
        tns_parts.append(f'<xs:element name="{op.name}Response" type="tns:{op.name}Response"/>')
    messages = "".join(
        f'<wsdl:message name="{m}"><wsdl:part name="{m}" element="tns:{m}"/></wsdl:message>'
        for op in service.ops
        for m in (op.name, f"{op.name}Response")
    )
    port_ops = "".join(
        f'<wsdl:operation name="{op.name}" parameterOrder="{op.name}">'
        + (f"<wsdl:documentation>{escape(op.doc)}</wsdl:documentation>" if op.doc else "")
        + f'<wsdl:input name="{op.name}" message="tns:{op.name}"/>'
        f'<wsdl:output name="{op.name}Response" message="tns:{op.name}Response"/>'
        "</wsdl:operation>"
        for op in service.ops
    )
    binding_ops = "".join(
        f'<wsdl:operation name="{op.name}">'
        f'<soap:operation soapAction="{op.name}" style="document"/>'
        f'<wsdl:input name="{op.name}"><soap:body use="literal"/></wsdl:input>'
        f'<wsdl:output name="{op.name}Response"><soap:body use="literal"/></wsdl:output>'
        "</wsdl:operation>"
        for op in service.ops
    )
    note = f"<wsdl:documentation>{escape(service.note)}</wsdl:documentation>" if service.note else ""
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<!-- Written by the rupture billing worker from public facts about Finkok's service"
        " (see tools/wsdlgen.py); not a copy of Finkok's file. -->\n"
        f'<wsdl:definitions {defs_ns} targetNamespace="{service.namespace}" name="Application">'
        f"{note}<wsdl:types>"
        f'<xs:schema targetNamespace="{VIEWS_NS}" elementFormDefault="qualified">'
        f"{views_imports}{views}</xs:schema>"
        f'<xs:schema targetNamespace="{service.namespace}" elementFormDefault="qualified">'
        f'<xs:import namespace="{VIEWS_NS}"/>{"".join(tns_parts)}</xs:schema>'
        f"</wsdl:types>{messages}"
        f'<wsdl:portType name="Application">{port_ops}</wsdl:portType>'
        '<wsdl:binding name="Application" type="tns:Application">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{binding_ops}</wsdl:binding>"
        f'<wsdl:service name="{service.service_name}">'
        '<wsdl:port name="Application" binding="tns:Application">'
        f"<soap:address location={quoteattr(service.address)}/>"
        "</wsdl:port></wsdl:service></wsdl:definitions>\n"
    )


def write_all(folder: Path = WSDL_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for service in SERVICES.values():
        path = folder / f"{service.key}.wsdl"
        path.write_text(render(service), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(p)
