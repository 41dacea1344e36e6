"""Finkok's SOAP 1.1 wire format, server side: parse requests, write answers.

Answers are written as text in the exact shape of Finkok's captured responses: the
``senv``/``tns``/``s0`` prefixes, the full (mostly unused) namespace declarations its SOAP
toolkit emits, result fields in ``apps.services.soap.core.views``, absent values left out,
text escaped as ``&lt;``/``&gt;``/``&amp;`` only. Used by the local Finkok sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VIEWS_NS = "apps.services.soap.core.views"
MAX_REQUEST_BYTES = 16 * 1024 * 1024

# s1 as Finkok declares it per service (nothing in the body uses it).
_S1 = {
    "stamp": "https://facturacion.finkok.com/servicios/async",
    "cancel": "http://facturacion.finkok.com/cancellation",
    "retentions": "http://facturacion.finkok.com/cancellation",
}

_FIXED = {
    "plink": "http://schemas.xmlsoap.org/ws/2003/05/partner-link/",
    "s0": VIEWS_NS,
    "s12enc": "http://www.w3.org/2003/05/soap-encoding/",
    "s12env": "http://www.w3.org/2003/05/soap-envelope/",
    "senc": "http://schemas.xmlsoap.org/soap/encoding/",
    "senv": SOAP_ENV,
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    "wsa": "http://schemas.xmlsoap.org/ws/2003/03/addressing",
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "xop": "http://www.w3.org/2004/08/xop/include",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}

# A field value: text/number/bool leaf, None (left out), or child nodes.
Value = str | int | bool | None | list["Node"]


@dataclass(frozen=True)
class Node:
    """One element of a result: ``<s0:name>value</s0:name>`` (prefix ``tns`` for stringArray)."""

    name: str
    value: Value
    prefix: str = "s0"


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def render_nodes(nodes: list[Node]) -> str:
    parts: list[str] = []
    for node in nodes:
        tag = f"{node.prefix}:{node.name}"
        if node.value is None:
            continue
        if isinstance(node.value, list):
            inner = render_nodes(node.value)
            parts.append(f"<{tag}>{inner}</{tag}>" if inner else f"<{tag}/>")
        else:
            parts.append(f"<{tag}>{_text(node.value)}</{tag}>")
    return "".join(parts)


def _envelope_open(service: str, namespace: str) -> str:
    decls = dict(_FIXED, tns=namespace)
    if service in _S1:
        decls["s1"] = _S1[service]
    attrs = " ".join(f'xmlns:{p}="{u}"' for p, u in sorted(decls.items()))
    return f"<?xml version='1.0' encoding='UTF-8'?>\n<senv:Envelope {attrs}><senv:Body>"


_CLOSE = "</senv:Body></senv:Envelope>"


def render_response(service: str, namespace: str, operation: str, result: list[Node] | None) -> bytes:
    """``<tns:opResponse><tns:opResult>…</tns:opResult></tns:opResponse>``; None: empty response."""
    if result is None:
        body = f"<tns:{operation}Response/>"
    else:
        body = (
            f"<tns:{operation}Response><tns:{operation}Result>{render_nodes(result)}"
            f"</tns:{operation}Result></tns:{operation}Response>"
        )
    return (_envelope_open(service, namespace) + body + _CLOSE).encode("utf-8")


def render_fault(service: str, namespace: str, message: str, code: str = "senv:Server") -> bytes:
    body = (
        f"<senv:Fault><faultcode>{escape(code)}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring><faultactor></faultactor></senv:Fault>"
    )
    return (_envelope_open(service, namespace) + body + _CLOSE).encode("utf-8")


class BadRequest(ValueError):
    """Not a SOAP 1.1 request we can read (answered with a ``senv:Client`` fault)."""


@dataclass
class Request:
    operation: str
    namespace: str
    params: dict[str, etree._Element] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        el = self.params.get(name)
        if el is None or el.get(f"{{{_FIXED['xsi']}}}nil") == "true":
            return None
        return el.text if el.text is not None else ""

    def element(self, name: str) -> etree._Element | None:
        return self.params.get(name)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        remove_blank_text=True,
    )


def parse_request(body: bytes) -> Request:
    """The operation (body element) and its parameters by local name. DTDs are refused."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest("request too large")
    try:
        tree = etree.fromstring(body, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"not well-formed XML: {exc.msg}") from None
    # lxml-stubs' DocInfo lacks doctype (lxml has it)
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # type: ignore[union-attr]
        raise BadRequest("a DTD is not allowed")
    root = tree.getroot()
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise BadRequest("not a SOAP 1.1 Envelope")
    body_el = root.find(f"{{{SOAP_ENV}}}Body")
    if body_el is None:
        raise BadRequest("no SOAP Body")
    op_el = next((c for c in body_el if isinstance(c.tag, str)), None)
    if op_el is None:
        raise BadRequest("empty SOAP Body")
    qname = etree.QName(op_el)
    params = {etree.QName(c).localname: c for c in op_el if isinstance(c.tag, str)}
    return Request(operation=qname.localname, namespace=qname.namespace or "", params=params)
