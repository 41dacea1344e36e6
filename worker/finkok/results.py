"""Typed, frozen results of Finkok operations (never raw zeep objects).

Field values are what Finkok sent (strings as text, ``None`` when the element was absent or
empty). ``from_zeep`` constructors read zeep's parsed objects defensively: an element
Finkok leaves out is ``None``, an empty array is an empty tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.finkok.errors import Kind, classify, classify_text


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return obj[name]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, name, None)


def _str(obj: Any, name: str) -> str | None:
    value = _get(obj, name)
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _int(obj: Any, name: str) -> int | None:
    value = _get(obj, name)
    if value is None or value == "":
        return None
    return int(value)


def _bool(obj: Any, name: str) -> bool | None:
    value = _get(obj, name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _items(obj: Any, array: str, item: str) -> list[Any]:
    """Items of ``<array><item/>...</array>`` as zeep parsed them (absent: empty list)."""
    container = _get(obj, array)
    if container is None:
        return []
    values = _get(container, item)
    if values is None:
        return []
    if isinstance(values, (list, tuple)):
        return [v for v in values if v is not None]
    return [values]


# --- stamp family ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incidencia:
    codigo_error: str | None
    mensaje: str | None
    id_incidencia: str | None = None
    rfc_emisor: str | None = None
    uuid: str | None = None
    work_process_id: str | None = None
    extra_info: str | None = None
    no_certificado_pac: str | None = None
    fecha_registro: str | None = None

    @property
    def kind(self) -> Kind:
        return classify(self.codigo_error or "")

    @classmethod
    def from_zeep(cls, obj: Any) -> Incidencia:
        return cls(
            codigo_error=_str(obj, "CodigoError"),
            mensaje=_str(obj, "MensajeIncidencia"),
            id_incidencia=_str(obj, "IdIncidencia"),
            rfc_emisor=_str(obj, "RfcEmisor"),
            uuid=_str(obj, "Uuid"),
            work_process_id=_str(obj, "WorkProcessId"),
            extra_info=_str(obj, "ExtraInfo"),
            no_certificado_pac=_str(obj, "NoCertificadoPac"),
            fecha_registro=_str(obj, "FechaRegistro"),
        )


@dataclass(frozen=True, slots=True)
class StampResult:
    """stamp / quick_stamp / stamped / sign_stamp answer (``AcuseRecepcionCFDI``).

    ``xml`` is the stamped CFDI exactly as Finkok returned it (text, with its TFD).
    """

    uuid: str | None
    xml: str | None
    fecha: str | None
    cod_estatus: str | None
    sat_seal: str | None
    no_certificado_sat: str | None
    incidencias: tuple[Incidencia, ...]
    faultstring: str | None = None
    faultcode: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(i.codigo_error for i in self.incidencias if i.codigo_error)

    @property
    def kind(self) -> Kind:
        """See :func:`stamp_result_kind`."""
        return stamp_result_kind(self)

    @property
    def has_stamp(self) -> bool:
        """UUID and stamped XML are both present (fresh stamp, or 307/stamped recovery)."""
        return bool(self.uuid and self.xml)

    @property
    def already_stamped(self) -> bool:
        return "307" in self.codes

    @property
    def not_stamped(self) -> bool:
        return "603" in self.codes

    @classmethod
    def from_zeep(cls, obj: Any) -> StampResult:
        return cls(
            uuid=_str(obj, "UUID"),
            xml=_str(obj, "xml"),
            fecha=_str(obj, "Fecha"),
            cod_estatus=_str(obj, "CodEstatus"),
            sat_seal=_str(obj, "SatSeal"),
            no_certificado_sat=_str(obj, "NoCertificadoSAT"),
            incidencias=tuple(
                Incidencia.from_zeep(i) for i in _items(obj, "Incidencias", "Incidencia")
            ),
            faultstring=_str(obj, "faultstring"),
            faultcode=_str(obj, "faultcode"),
        )


_PRIORITY = (
    Kind.ALREADY_STAMPED,
    Kind.NOT_STAMPED,
    Kind.ACCOUNT,
    Kind.FISCAL_DATA,
    Kind.PERMANENT,
    Kind.TRANSIENT,
)


def stamp_result_kind(result: StampResult) -> Kind:
    """One verdict for a stamp/quick_stamp/stamped answer.

    ``OK``: a fresh stamp (UUID and XML, no incidencia). ``ALREADY_STAMPED``: 307, check
    ``result.xml`` (present: recovered; absent: call ``stamped``). ``NOT_STAMPED``: 603.
    Otherwise the most decisive kind among the incidencias (account over data over
    transient). An answer with neither a stamp nor an incidencia is ``TRANSIENT``: we
    learned nothing, and the pipeline asks ``stamped`` before stamping again anyway.
    """
    if not result.incidencias:
        return Kind.OK if result.uuid and result.xml else Kind.TRANSIENT
    kinds = {classify(i.codigo_error or "") for i in result.incidencias}
    for kind in _PRIORITY:
        if kind in kinds:
            return kind
    return Kind.PERMANENT


@dataclass(frozen=True, slots=True)
class QueryPendingResult:
    """query_pending / query_pending_cancellation answer.

    ``status``: ``S`` stamped but not yet delivered to SAT, ``F`` delivered (finished).
    """

    status: str | None
    xml: str | None
    uuid: str | None
    uuid_status: str | None
    next_attempt: str | None
    attempts: str | None
    error: str | None
    date: str | None

    @property
    def delivered(self) -> bool:
        return self.status == "F"

    @property
    def pending(self) -> bool:
        return self.status == "S"

    @classmethod
    def from_zeep(cls, obj: Any) -> QueryPendingResult:
        return cls(
            status=_str(obj, "status"),
            xml=_str(obj, "xml"),
            uuid=_str(obj, "uuid"),
            uuid_status=_str(obj, "uuid_status"),
            next_attempt=_str(obj, "next_attempt"),
            attempts=_str(obj, "attempts"),
            error=_str(obj, "error"),
            date=_str(obj, "date"),
        )


# --- cancel family --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Folio:
    uuid: str | None
    estatus_uuid: str | None
    estatus_cancelacion: str | None

    @property
    def kind(self) -> Kind:
        return classify(self.estatus_uuid or "", context="cancel")


@dataclass(frozen=True, slots=True)
class CancelResult:
    """cancel_signature / cancel / out_cancel / retentions cancel_signature answer."""

    folios: tuple[Folio, ...]
    acuse: str | None
    fecha: str | None
    rfc_emisor: str | None
    cod_estatus: str | None
    seguimiento_cancelacion: str | None = None

    @property
    def kind(self) -> Kind:
        """Request-level ``CodEstatus`` first (it means no folio was processed), then folios."""
        if self.cod_estatus:
            return classify_text(self.cod_estatus) or Kind.PERMANENT
        if not self.folios:
            return Kind.TRANSIENT
        kinds = [f.kind for f in self.folios]
        for kind in (Kind.ACCOUNT, Kind.PERMANENT, Kind.TRANSIENT):
            if kind in kinds:
                return kind
        return Kind.OK

    @classmethod
    def from_zeep(cls, obj: Any) -> CancelResult:
        return cls(
            folios=tuple(
                Folio(_str(f, "UUID"), _str(f, "EstatusUUID"), _str(f, "EstatusCancelacion"))
                for f in _items(obj, "Folios", "Folio")
            ),
            acuse=_str(obj, "Acuse"),
            fecha=_str(obj, "Fecha"),
            rfc_emisor=_str(obj, "RfcEmisor"),
            cod_estatus=_str(obj, "CodEstatus"),
            seguimiento_cancelacion=_str(obj, "SeguimientoCancelacion"),
        )


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    uuid: str | None
    success: bool | None
    receipt: str | None
    taxpayer_id: str | None
    error: str | None
    date: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> ReceiptResult:
        return cls(
            uuid=_str(obj, "uuid"),
            success=_bool(obj, "success"),
            receipt=_str(obj, "receipt"),
            taxpayer_id=_str(obj, "taxpayer_id"),
            error=_str(obj, "error"),
            date=_str(obj, "date"),
        )


@dataclass(frozen=True, slots=True)
class SatStatusResult:
    """get_sat_status / get_out_sat_status answer (``AcuseSatEstatus``)."""

    error: str | None
    estado: str | None
    es_cancelable: str | None
    estatus_cancelacion: str | None
    codigo_estatus: str | None
    validacion_efos: str | None
    detalles_validacion_efos: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> SatStatusResult:
        sat = _get(obj, "sat")
        return cls(
            error=_str(obj, "error"),
            estado=_str(sat, "Estado"),
            es_cancelable=_str(sat, "EsCancelable"),
            estatus_cancelacion=_str(sat, "EstatusCancelacion"),
            codigo_estatus=_str(sat, "CodigoEstatus"),
            validacion_efos=_str(sat, "ValidacionEFOS"),
            detalles_validacion_efos=_str(sat, "DetallesValidacionEFOS"),
        )


@dataclass(frozen=True, slots=True)
class UuidStatus:
    uuid: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class AcceptRejectResult:
    aceptacion: tuple[UuidStatus, ...]
    rechazo: tuple[UuidStatus, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> AcceptRejectResult:
        def items(array: str, item: str) -> tuple[UuidStatus, ...]:
            return tuple(
                UuidStatus(_str(i, "uuid"), _str(i, "status")) for i in _items(obj, array, item)
            )

        return cls(
            aceptacion=items("aceptacion", "Acepta"),
            rechazo=items("rechazo", "Rechaza"),
            error=_str(obj, "error"),
        )


@dataclass(frozen=True, slots=True)
class PendingCancellationsResult:
    """get_pending / get_out_pending: UUIDs awaiting the receiver's answer."""

    uuids: tuple[str, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> PendingCancellationsResult:
        return cls(
            uuids=tuple(str(u) for u in _items(obj, "uuids", "string")),
            error=_str(obj, "error"),
        )


@dataclass(frozen=True, slots=True)
class RelatedCfdi:
    uuid: str | None
    emisor: str | None
    receptor: str | None


@dataclass(frozen=True, slots=True)
class RelatedResult:
    padres: tuple[RelatedCfdi, ...]
    hijos: tuple[RelatedCfdi, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> RelatedResult:
        def items(array: str, item: str) -> tuple[RelatedCfdi, ...]:
            return tuple(
                RelatedCfdi(_str(i, "uuid"), _str(i, "emisor"), _str(i, "receptor"))
                for i in _items(obj, array, item)
            )

        return cls(
            padres=items("Padres", "Padre"), hijos=items("Hijos", "Hijo"), error=_str(obj, "error")
        )


# --- utilities --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatetimeResult:
    datetime: str | None
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> DatetimeResult:
        return cls(datetime=_str(obj, "datetime"), error=_str(obj, "error"))


@dataclass(frozen=True, slots=True)
class XmlResult:
    xml: str | None
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> XmlResult:
        return cls(xml=_str(obj, "xml"), error=_str(obj, "error"))


@dataclass(frozen=True, slots=True)
class CreditEntry:
    credit: int | None
    date: str | None


@dataclass(frozen=True, slots=True)
class ReportCreditResult:
    entries: tuple[CreditEntry, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> ReportCreditResult:
        return cls(
            entries=tuple(
                CreditEntry(_int(i, "credit"), _str(i, "date"))
                for i in _items(obj, "result", "ReportTotalCredit")
            ),
            error=_str(obj, "error"),
        )


@dataclass(frozen=True, slots=True)
class TotalEntry:
    taxpayer_id: str | None
    total: int | None


@dataclass(frozen=True, slots=True)
class ReportTotalResult:
    entries: tuple[TotalEntry, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> ReportTotalResult:
        return cls(
            entries=tuple(
                TotalEntry(_str(i, "taxpayer_id"), _int(i, "total"))
                for i in _items(obj, "result", "ReportTotal")
            ),
            error=_str(obj, "error"),
        )


@dataclass(frozen=True, slots=True)
class UuidEntry:
    uuid: str | None
    date: str | None


@dataclass(frozen=True, slots=True)
class ReportUuidResult:
    invoices: tuple[UuidEntry, ...]
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> ReportUuidResult:
        return cls(
            invoices=tuple(
                UuidEntry(_str(i, "uuid"), _str(i, "date"))
                for i in _items(obj, "invoices", "ReportUUID")
            ),
            error=_str(obj, "error"),
        )


@dataclass(frozen=True, slots=True)
class TokenResult:
    success: bool | None
    message: str | None
    token: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> TokenResult:
        return cls(_bool(obj, "success"), _str(obj, "message"), _str(obj, "token"))


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """add / edit / switch. Note Finkok answers ``success=True`` to 'Account Already exists'."""

    success: bool | None
    message: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> RegistrationResult:
        return cls(_bool(obj, "success"), _str(obj, "message"))


@dataclass(frozen=True, slots=True)
class Customer:
    taxpayer_id: str | None
    status: str | None  # A active, S suspended
    counter: int | None
    credit: int | None  # -1: on demand


@dataclass(frozen=True, slots=True)
class CustomersResult:
    """get / customers: ``message`` carries the paging text for ``customers``."""

    message: str | None
    users: tuple[Customer, ...]

    @classmethod
    def from_zeep(cls, obj: Any) -> CustomersResult:
        return cls(
            message=_str(obj, "message"),
            users=tuple(
                Customer(
                    _str(u, "taxpayer_id"), _str(u, "status"), _int(u, "counter"),
                    _int(u, "credit"),
                )
                for u in _items(obj, "users", "ResellerUser")
            ),
        )


@dataclass(frozen=True, slots=True)
class AssignResult:
    success: bool | None
    credit: int | None
    message: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> AssignResult:
        return cls(_bool(obj, "success"), _int(obj, "credit"), _str(obj, "message"))


# --- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractsResult:
    """get_contracts_snid / get_documents: the texts, decoded from base64."""

    success: bool | None
    contract: bytes | None
    privacy: bytes | None
    error: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> ContractsResult:
        def raw(name: str) -> bytes | None:
            value = _get(obj, name)
            return bytes(value) if value else None

        return cls(_bool(obj, "success"), raw("contract"), raw("privacy"), _str(obj, "error"))


@dataclass(frozen=True, slots=True)
class SignContractResult:
    success: bool | None
    message: str | None

    @classmethod
    def from_zeep(cls, obj: Any) -> SignContractResult:
        return cls(_bool(obj, "success"), _str(obj, "message"))
