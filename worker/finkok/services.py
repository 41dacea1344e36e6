"""Where each Finkok service lives and how zeep reads its WSDL.

Our WSDL files ship as package data and are parsed once per process (a zeep ``Document``
takes tens of milliseconds to build); every zeep ``Client`` reuses the parsed document and
points the binding at the address derived from settings, never at the file's soap:address.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources

from zeep import Settings as ZeepSettings
from zeep.transports import Transport
from zeep.wsdl import Document

SOAP_PATH = "/servicios/soap/"
VIEWS_NS = "apps.services.soap.core.views"

# strict: a malformed answer is an error, not "recovered"; huge trees off (CFDI are small).
ZEEP_SETTINGS = ZeepSettings(
    strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True
)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    key: str  # WSDL file stem and URL path segment
    namespace: str
    manifest_host: bool = False  # lives on the manifest host, not the facturacion host

    @property
    def binding(self) -> str:
        return f"{{{self.namespace}}}Application"

    def address(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}{SOAP_PATH}{self.key}"

    def wsdl_url(self, base_url: str) -> str:
        return self.address(base_url) + ".wsdl"


STAMP = ServiceInfo("stamp", "http://facturacion.finkok.com/stamp")
CANCEL = ServiceInfo("cancel", "http://facturacion.finkok.com/cancel")
UTILITIES = ServiceInfo("utilities", "http://facturacion.finkok.com/utilities")
REGISTRATION = ServiceInfo("registration", "http://facturacion.finkok.com/registration")
RETENTIONS = ServiceInfo("retentions", "http://facturacion.finkok.com/retentions")
MANIFEST = ServiceInfo("firmar", "http://facturacion.finkok.com/firmar", manifest_host=True)

SERVICES: dict[str, ServiceInfo] = {
    s.key: s for s in (STAMP, CANCEL, UTILITIES, REGISTRATION, RETENTIONS, MANIFEST)
}

# Manifest host per Finkok environment (the sandbox serves it on its own host).
MANIFEST_HOSTS = {
    "https://demo-facturacion.finkok.com": "https://manifiesto.cfdiquadrum.com.mx:8008",
    "https://facturacion.finkok.com": "https://manifiesto.cfdiquadrum.com.mx",
}


def wsdl_text(key: str) -> bytes:
    """Our WSDL file for a service, as shipped in the package."""
    return resources.files("worker.finkok").joinpath("wsdl", f"{key}.wsdl").read_bytes()


def wsdl_path(key: str) -> str:
    with resources.as_file(resources.files("worker.finkok").joinpath("wsdl", f"{key}.wsdl")) as p:
        return str(p)


_documents: dict[str, Document] = {}
_lock = threading.Lock()


def document(key: str) -> Document:
    """The parsed WSDL of a service, built once per process and shared."""
    doc = _documents.get(key)
    if doc is not None:
        return doc
    with _lock:
        doc = _documents.get(key)
        if doc is None:
            # The files import nothing, so this transport never touches the network.
            # (zeep annotates this parameter as a class; it takes an instance)
            doc = Document(wsdl_path(key), Transport(), settings=ZEEP_SETTINGS)  # type: ignore[arg-type]
            _documents[key] = doc
    return doc
