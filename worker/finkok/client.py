"""Finkok SOAP client: one method per Finkok operation, typed results, our exceptions.

    client = FinkokClient.from_settings(get_settings())
    result = client.stamp(sealed_xml_bytes)      # StampResult, never a zeep object
    if result.kind is Kind.OK: ...

* The CFDI goes as the exact bytes given (zeep base64-encodes them); the stamped XML comes
  back as the text Finkok sent.
* One zeep ``Client`` per service per ``FinkokClient``, built on first use from the
  process-wide parsed WSDL (``services.document``); the endpoint comes from the base URL.
* Timeouts: (connect, read) on every call. No automatic retries: see ``transport``.
* Business errors are data in the result (``Incidencias``, ``CodEstatus``, ``error``);
  failures raise ``FinkokNotSent`` / ``FinkokAmbiguous`` / ``FinkokFault`` /
  ``FinkokBadResponse`` (``worker.finkok.errors``).
* The password is a ``SecretStr``; it is masked in ``repr``, in zeep's DEBUG envelope logs
  (``worker.redaction``) and never placed in an exception.

A client may be shared by threads (urllib3 pools and zeep clients tolerate concurrent
calls); for heavy parallelism give each worker thread its own client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
import zeep.exceptions
from lxml import etree
from pydantic import SecretStr
from zeep import Client as ZeepClient
from zeep.proxy import ServiceProxy

from worker import redaction
from worker.finkok import results, services
from worker.finkok.services import ServiceInfo
from worker.finkok.transport import StatusTransport, translate

T = TypeVar("T")

_CAUGHT = (
    urllib3.exceptions.HTTPError,
    OSError,
    zeep.exceptions.Fault,
    zeep.exceptions.TransportError,
    zeep.exceptions.XMLSyntaxError,
    zeep.exceptions.XMLParseError,
    etree.XMLSyntaxError,
)


@dataclass(frozen=True, slots=True)
class CancelFolio:
    """One UUID to cancel (CFDI 4.0): ``motivo`` 01-04; 01 needs ``folio_sustitucion``."""

    uuid: str
    motivo: str = "02"
    folio_sustitucion: str | None = None

    def as_zeep(self) -> dict[str, str | None]:
        return {"UUID": self.uuid, "Motivo": self.motivo, "FolioSustitucion": self.folio_sustitucion}


def manifest_url_for(base_url: str) -> str:
    """Manifest host for a Finkok host; any other base URL (sandbox) serves it itself."""
    return services.MANIFEST_HOSTS.get(base_url.rstrip("/"), base_url.rstrip("/"))


class FinkokClient:
    """All Finkok operations over SOAP 1.1 with zeep. See the module docstring."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str | SecretStr,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        manifest_url: str | None = None,
        pool_maxsize: int = 10,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Finkok base URL must be http(s)://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.manifest_url = (manifest_url or manifest_url_for(self.base_url)).rstrip("/")
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._transport = StatusTransport(connect_timeout_s=connect_timeout_s,
                                          read_timeout_s=read_timeout_s, pool_maxsize=pool_maxsize)
        self._proxies: dict[str, ServiceProxy] = {}
        self._clients: dict[str, ZeepClient] = {}
        self._lock = threading.Lock()
        redaction.register_secret(self._password.get_secret_value(), min_length=6)

    @classmethod
    def from_settings(cls, settings: Any) -> FinkokClient:
        """From ``worker.settings.Settings`` (finkok_* fields)."""
        return cls(
            settings.finkok_base_url,
            settings.finkok_username,
            settings.finkok_password,
            connect_timeout_s=settings.finkok_connect_timeout_s,
            read_timeout_s=settings.finkok_read_timeout_s,
            manifest_url=getattr(settings, "finkok_manifest_url", "") or None,
        )

    def __repr__(self) -> str:
        return (
            f"FinkokClient(base_url={self.base_url!r}, username={self.username!r}, "
            f"password='{redaction.MASK}', timeouts=({self.connect_timeout_s:g}, "
            f"{self.read_timeout_s:g}))"
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> FinkokClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------

    def address(self, info: ServiceInfo) -> str:
        return info.address(self.manifest_url if info.manifest_host else self.base_url)

    def zeep_client(self, key: str) -> ZeepClient:
        """The zeep client of one service (for tooling and the benchmark)."""
        self._proxy(key)
        return self._clients[key]

    def _proxy(self, key: str) -> ServiceProxy:
        proxy = self._proxies.get(key)
        if proxy is not None:
            return proxy
        with self._lock:
            proxy = self._proxies.get(key)
            if proxy is None:
                info = services.SERVICES[key]
                client = ZeepClient(
                    services.document(key),
                    transport=self._transport,
                    settings=services.ZEEP_SETTINGS,
                )
                proxy = client.create_service(info.binding, self.address(info))
                self._clients[key] = client
                self._proxies[key] = proxy
        return proxy

    def _call(
        self, key: str, operation: str, parse: Callable[[Any], T], /, **params: Any
    ) -> T:
        proxy = self._proxy(key)
        failure: BaseException | None = None
        try:
            raw = getattr(proxy, operation)(**params)
        except _CAUGHT as exc:
            failure = exc
        if failure is not None:
            # Raised outside the except block: no library exception (which may hold the
            # request, password included) rides along as __context__.
            error = translate(
                failure,
                operation=operation,
                url=self.address(services.SERVICES[key]),
                read_timeout_s=self.read_timeout_s,
                status=self._transport.last_status,
            )
            del failure
            raise error
        return parse(raw)

    def _creds(self) -> dict[str, str]:
        return {"username": self.username, "password": self._password.get_secret_value()}

    def _reseller(self) -> dict[str, str]:
        return {
            "reseller_username": self.username,
            "reseller_password": self._password.get_secret_value(),
        }

    # --- stamp service --------------------------------------------------------------------

    def stamp(self, xml: bytes) -> results.StampResult:
        """Stamp a sealed CFDI. A repeat returns 307 with (usually) the previous stamp."""
        return self._call("stamp", "stamp", results.StampResult.from_zeep, xml=xml, **self._creds())

    def quick_stamp(self, xml: bytes) -> results.StampResult:
        """Stamp; delivery to SAT is queued. A repeat returns 307 only."""
        return self._call(
            "stamp", "quick_stamp", results.StampResult.from_zeep, xml=xml, **self._creds()
        )

    def stamped(self, xml: bytes) -> results.StampResult:
        """The previous stamp of these exact sealed bytes, or incidencia 603."""
        return self._call(
            "stamp", "stamped", results.StampResult.from_zeep, xml=xml, **self._creds()
        )

    def sign_stamp(self, xml: bytes) -> results.StampResult:
        """Seal with the CSD stored at Finkok, then stamp (we seal ourselves; for completeness)."""
        return self._call(
            "stamp", "sign_stamp", results.StampResult.from_zeep, xml=xml, **self._creds()
        )

    def query_pending(self, uuid: str) -> results.QueryPendingResult:
        """Delivery status of a stamped CFDI: S (not yet at SAT) or F (delivered)."""
        return self._call(
            "stamp", "query_pending", results.QueryPendingResult.from_zeep,
            uuid=uuid, **self._creds(),
        )

    # --- cancel service -------------------------------------------------------------------

    def cancel_signature(self, xml: bytes, *, store_pending: bool = False) -> results.CancelResult:
        """Cancel with a ``Cancelacion`` document the issuer signed (XMLDSig)."""
        return self._call(
            "cancel", "cancel_signature", results.CancelResult.from_zeep,
            xml=xml, store_pending=store_pending, **self._creds(),
        )

    def get_receipt(self, taxpayer_id: str, uuid: str, type: str = "C") -> results.ReceiptResult:
        """The last SAT receipt of a UUID: ``C`` cancellation (``R`` reception)."""
        return self._call(
            "cancel", "get_receipt", results.ReceiptResult.from_zeep,
            taxpayer_id=taxpayer_id, uuid=uuid, type=type, **self._creds(),
        )

    def get_sat_status(
        self, taxpayer_id: str, rtaxpayer_id: str, uuid: str, total: str
    ) -> results.SatStatusResult:
        return self._call(
            "cancel", "get_sat_status", results.SatStatusResult.from_zeep,
            taxpayer_id=taxpayer_id, rtaxpayer_id=rtaxpayer_id, uuid=uuid, total=total,
            **self._creds(),
        )

    def accept_reject_signature(self, xml: bytes) -> results.AcceptRejectResult:
        """The receiver's answer, as a signed ``SolicitudAceptacionRechazo``."""
        return self._call(
            "cancel", "accept_reject_signature", results.AcceptRejectResult.from_zeep,
            xml=xml, **self._creds(),
        )

    def get_pending(self, rtaxpayer_id: str) -> results.PendingCancellationsResult:
        return self._call(
            "cancel", "get_pending", results.PendingCancellationsResult.from_zeep,
            rtaxpayer_id=rtaxpayer_id, **self._creds(),
        )

    def get_related_signature(self, xml: bytes) -> results.RelatedResult:
        return self._call(
            "cancel", "get_related_signature", results.RelatedResult.from_zeep,
            xml=xml, **self._creds(),
        )

    def query_pending_cancellation(self, uuid: str) -> results.QueryPendingResult:
        return self._call(
            "cancel", "query_pending_cancellation", results.QueryPendingResult.from_zeep,
            uuid=uuid, **self._creds(),
        )

    def cancel(
        self,
        folios: Sequence[CancelFolio],
        taxpayer_id: str,
        cer: bytes,
        key: bytes,
        *,
        store_pending: bool = False,
    ) -> results.CancelResult:
        """Cancel with the CSD sent in the request (prefer ``cancel_signature``)."""
        return self._call(
            "cancel", "cancel", results.CancelResult.from_zeep,
            UUIDS={"UUID": [f.as_zeep() for f in folios]}, taxpayer_id=taxpayer_id,
            cer=cer, key=key, store_pending=store_pending, **self._creds(),
        )

    def sign_cancel(
        self, folios: Sequence[CancelFolio], taxpayer_id: str, serial: str, *,
        store_pending: bool = False,
    ) -> results.CancelResult:
        """Cancel with the CSD stored at Finkok (identified by ``serial``)."""
        return self._call(
            "cancel", "sign_cancel", results.CancelResult.from_zeep,
            UUIDS={"UUID": [f.as_zeep() for f in folios]}, taxpayer_id=taxpayer_id,
            serial=serial, store_pending=store_pending, **self._creds(),
        )

    def accept_reject(
        self, answers: Sequence[tuple[str, str]], rtaxpayer_id: str, cer: bytes, key: bytes
    ) -> results.AcceptRejectResult:
        """``answers``: (uuid, ``Aceptacion`` | ``Rechazo``) pairs; CSD sent in the request."""
        return self._call(
            "cancel", "accept_reject", results.AcceptRejectResult.from_zeep,
            UUIDS_AR={"uuids_ar": {"UUID_AR": [{"uuid": u, "respuesta": r} for u, r in answers]}},
            rtaxpayer_id=rtaxpayer_id, cer=cer, key=key, **self._creds(),
        )

    def get_related(
        self, taxpayer_id: str, rtaxpayer_id: str, uuid: str, cer: bytes, key: bytes
    ) -> results.RelatedResult:
        return self._call(
            "cancel", "get_related", results.RelatedResult.from_zeep,
            taxpayer_id=taxpayer_id, rtaxpayer_id=rtaxpayer_id, uuid=uuid, cer=cer, key=key,
            **self._creds(),
        )

    # CFDI stamped by another PAC ("out_" operations). These carry the CSD (cer/key).

    def get_out_pending(self, rtaxpayer_id: str) -> results.PendingCancellationsResult:
        return self._call(
            "cancel", "get_out_pending", results.PendingCancellationsResult.from_zeep,
            rtaxpayer_id=rtaxpayer_id, **self._creds(),
        )

    def get_out_related(
        self, taxpayer_id: str, rtaxpayer_id: str, uuid: str, cer: bytes, key: bytes
    ) -> results.RelatedResult:
        return self._call(
            "cancel", "get_out_related", results.RelatedResult.from_zeep,
            taxpayer_id=taxpayer_id, rtaxpayer_id=rtaxpayer_id, uuid=uuid, cer=cer, key=key,
            **self._creds(),
        )

    def get_out_sat_status(
        self, taxpayer_id: str, rtaxpayer_id: str, uuid: str, total: str
    ) -> results.SatStatusResult:
        return self._call(
            "cancel", "get_out_sat_status", results.SatStatusResult.from_zeep,
            taxpayer_id=taxpayer_id, rtaxpayer_id=rtaxpayer_id, uuid=uuid, total=total,
            **self._creds(),
        )

    def out_cancel(
        self, xml: bytes, taxpayer_id: str, cer: bytes, key: bytes, *, store_pending: bool = False
    ) -> results.CancelResult:
        return self._call(
            "cancel", "out_cancel", results.CancelResult.from_zeep,
            xml=xml, taxpayer_id=taxpayer_id, cer=cer, key=key, store_pending=store_pending,
            **self._creds(),
        )

    def out_accept_reject(
        self, uuid: str, respuesta: str, rtaxpayer_id: str, cer: bytes, key: bytes
    ) -> results.AcceptRejectResult:
        """``respuesta``: ``Aceptacion`` or ``Rechazo``."""
        return self._call(
            "cancel", "out_accept_reject", results.AcceptRejectResult.from_zeep,
            UUID_AR={"uuid": uuid, "respuesta": respuesta}, rtaxpayer_id=rtaxpayer_id,
            cer=cer, key=key, **self._creds(),
        )

    # --- utilities service ----------------------------------------------------------------

    def datetime(self, zipcode: str | None = None) -> results.DatetimeResult:
        """Finkok's clock (in the zone of ``zipcode``, else America/Mexico_City)."""
        return self._call(
            "utilities", "datetime", results.DatetimeResult.from_zeep,
            zipcode=zipcode, **self._creds(),
        )

    def get_xml(self, uuid: str, taxpayer_id: str, invoice_type: str = "I") -> results.XmlResult:
        """A stamped CFDI (``I``) or retention (``R``) of the last three months."""
        return self._call(
            "utilities", "get_xml", results.XmlResult.from_zeep,
            uuid=uuid, taxpayer_id=taxpayer_id, invoice_type=invoice_type, **self._creds(),
        )

    def report_credit(self, taxpayer_id: str) -> results.ReportCreditResult:
        return self._call(
            "utilities", "report_credit", results.ReportCreditResult.from_zeep,
            taxpayer_id=taxpayer_id, **self._creds(),
        )

    def report_total(
        self, taxpayer_id: str, date_from: str, date_to: str, invoice_type: str = "I"
    ) -> results.ReportTotalResult:
        """Dates as ``YYYY-MM-DDT00:00:00``."""
        return self._call(
            "utilities", "report_total", results.ReportTotalResult.from_zeep,
            taxpayer_id=taxpayer_id, invoice_type=invoice_type, date_from=date_from,
            date_to=date_to, **self._creds(),
        )

    def report_uuid(
        self, taxpayer_id: str, date_from: str, date_to: str, invoice_type: str = "I"
    ) -> results.ReportUuidResult:
        return self._call(
            "utilities", "report_uuid", results.ReportUuidResult.from_zeep,
            taxpayer_id=taxpayer_id, invoice_type=invoice_type, date_from=date_from,
            date_to=date_to, **self._creds(),
        )

    # Token operations: their shapes are our assumption (nothing public describes them).

    def add_token(self, name: str, taxpayer_id: str) -> results.TokenResult:
        return self._call(
            "utilities", "add_token", results.TokenResult.from_zeep,
            name=name, taxpayer_id=taxpayer_id, **self._creds(),
        )

    def reset_token(self, token: str) -> results.TokenResult:
        return self._call(
            "utilities", "reset_token", results.TokenResult.from_zeep, token=token, **self._creds()
        )

    def update_token(self, token: str, status: str) -> results.TokenResult:
        """``status``: ``A`` active, ``I`` inactive."""
        return self._call(
            "utilities", "update_token", results.TokenResult.from_zeep,
            token=token, status=status, **self._creds(),
        )

    # --- registration service (reseller accounts) -----------------------------------------

    def registration_add(
        self,
        taxpayer_id: str,
        *,
        type_user: str = "O",
        coupon: str | None = None,
        added: str | None = None,
        cer: bytes | None = None,
        key: bytes | None = None,
        passphrase: str | None = None,
    ) -> results.RegistrationResult:
        """Add a customer RFC; ``type_user`` ``O`` on demand or ``P`` prepaid."""
        return self._call(
            "registration", "add", results.RegistrationResult.from_zeep,
            taxpayer_id=taxpayer_id, type_user=type_user, coupon=coupon, added=added,
            cer=cer, key=key, passphrase=passphrase, **self._reseller(),
        )

    def registration_edit(
        self,
        taxpayer_id: str,
        status: str,
        *,
        cer: bytes | None = None,
        key: bytes | None = None,
        passphrase: str | None = None,
    ) -> results.RegistrationResult:
        """``status``: ``A`` activate, ``S`` suspend."""
        return self._call(
            "registration", "edit", results.RegistrationResult.from_zeep,
            taxpayer_id=taxpayer_id, status=status, cer=cer, key=key, passphrase=passphrase,
            **self._reseller(),
        )

    def registration_get(self, taxpayer_id: str) -> results.CustomersResult:
        return self._call(
            "registration", "get", results.CustomersResult.from_zeep,
            taxpayer_id=taxpayer_id, **self._reseller(),
        )

    def registration_assign(self, taxpayer_id: str, credit: int) -> results.AssignResult:
        """Add (negative: remove) prepaid stamps of a customer."""
        return self._call(
            "registration", "assign", results.AssignResult.from_zeep,
            taxpayer_id=taxpayer_id, credit=credit, **self._creds(),
        )

    def registration_switch(self, taxpayer_id: str, type_user: str) -> results.RegistrationResult:
        return self._call(
            "registration", "switch", results.RegistrationResult.from_zeep,
            taxpayer_id=taxpayer_id, type_user=type_user, **self._creds(),
        )

    def registration_customers(self, page: int = 1) -> results.CustomersResult:
        return self._call(
            "registration", "customers", results.CustomersResult.from_zeep,
            page=page, **self._creds(),
        )

    # --- retentions service ---------------------------------------------------------------

    def retentions_stamp(self, xml: bytes) -> results.StampResult:
        return self._call(
            "retentions", "stamp", results.StampResult.from_zeep, xml=xml, **self._creds()
        )

    def retentions_stamped(self, xml: bytes) -> results.StampResult:
        return self._call(
            "retentions", "stamped", results.StampResult.from_zeep, xml=xml, **self._creds()
        )

    def retentions_cancel_signature(
        self, xml: bytes, *, store_pending: bool = False
    ) -> results.CancelResult:
        return self._call(
            "retentions", "cancel_signature", results.CancelResult.from_zeep,
            xml=xml, store_pending=store_pending, **self._creds(),
        )

    def retentions_get_receipt(
        self, taxpayer_id: str, uuid: str, type: str = "C"
    ) -> results.ReceiptResult:
        return self._call(
            "retentions", "get_receipt", results.ReceiptResult.from_zeep,
            taxpayer_id=taxpayer_id, uuid=uuid, type=type, **self._creds(),
        )

    # --- manifest service (no account credentials) ----------------------------------------

    def manifest_get_contracts(
        self, snid: str, taxpayer_id: str, name: str, address: str, email: str
    ) -> results.ContractsResult:
        return self._call(
            "firmar", "get_contracts_snid", results.ContractsResult.from_zeep,
            snid=snid, taxpayer_id=taxpayer_id, name=name, address=address, email=email,
        )

    def manifest_sign_contract(
        self, snid: str, privacy_xml: str, contract_xml: str
    ) -> results.SignContractResult:
        return self._call(
            "firmar", "sign_contract", results.SignContractResult.from_zeep,
            snid=snid, privacy_xml=privacy_xml, contract_xml=contract_xml,
        )

    def manifest_get_documents(
        self, snid: str, taxpayer_id: str, type: str = "XML"
    ) -> results.ContractsResult:
        return self._call(
            "firmar", "get_documents", results.ContractsResult.from_zeep,
            snid=snid, taxpayer_id=taxpayer_id, type=type,
        )
