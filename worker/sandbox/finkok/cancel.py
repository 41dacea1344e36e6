"""The cancel service of the local Finkok (and retentions cancellation): plausible answers
in Finkok's shapes, driven by what the sandbox stamped.

A ``Cancelacion`` sent to ``cancel_signature`` is verified as SAT does
(``worker.cfdi.cancellation.verify_cancelacion``): an unsigned, altered or wrongly signed
request is refused with SAT's ``CodEstatus`` (301 malformed, 302 bad seal, 303 a seal that
is not the emisor's, 304 an expired certificate), and no folio is processed. The other
signed documents (SolicitudAceptacionRechazo, PeticionConsultaRelacionados) are read for
their UUIDs only.

SAT's side of a cancellation, by rule: a request answered 201 is "En proceso" for
``cancel_process_polls`` get_sat_status polls, then settles as the receptor's rule says
(``cancel_accept``: "Cancelado con aceptación"; ``cancel_reject``: "Solicitud rechazada",
the CFDI still Vigente), or "Cancelado sin aceptación" (``sin_aceptacion``, no rule), or
waits for accept_reject (``con_aceptacion``). A repeated request answers 202 without an
Acuse, as Finkok does; ``get_receipt`` returns the stored acuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from lxml import etree

from worker.cfdi.xml import UnsafeXmlError, parse
from worker.sandbox.finkok.config import SandboxConfig
from worker.sandbox.finkok.documents import Refusal, decode_b64, mexico_now
from worker.sandbox.finkok.ledger import DocumentRecord, Ledger
from worker.sandbox.finkok.stamping import Outcome
from worker.sandbox.finkok.wire import Node, Request

REQUESTED_OK = "Petición de cancelación realizada exitosamente"


def _local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def _read_signed(req: Request) -> etree._Element:
    try:
        return parse(decode_b64(req.text("xml")))
    except (UnsafeXmlError, Refusal) as exc:
        raise Refusal("301", str(exc)) from None


def _folios_of(doc: etree._Element) -> list[tuple[str, str | None, str | None]]:
    """(UUID, Motivo, FolioSustitucion) from a Cancelacion: 4.0 attributes or old text form."""
    out: list[tuple[str, str | None, str | None]] = []
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        if _local(el) == "Folio" and el.get("UUID"):
            out.append((el.get("UUID", "").upper(), el.get("Motivo"), el.get("FolioSustitucion")))
        elif (_local(el) == "UUID" and el.text and (parent := el.getparent()) is not None
              and _local(parent) == "Folios"):
            out.append((el.text.strip().upper(), None, None))
    return out


def _acuse(rfc: str, fecha: str, folios: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<Folios><UUID>{u}</UUID><EstatusUUID>{s}</EstatusUUID></Folios>" for u, s in folios)
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><CancelaCFDResponse '
        f'xmlns="http://cancelacfd.sat.gob.mx"><CancelaCFDResult Fecha={quoteattr(fecha)} '
        f"RfcEmisor={quoteattr(rfc)}>{items}</CancelaCFDResult></CancelaCFDResponse>"
        "</s:Body></s:Envelope>"
    )


class CancelDesk:
    def __init__(self, config: SandboxConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    # --- cancellation requests ------------------------------------------------------------

    def _outage(self) -> None:
        """``outage`` set to a code (708, 718, 300...): every cancellation request answers
        it as its ``CodEstatus``, no folio processed; lookups still answer."""
        if self.config.outage and self.config.outage.isdigit():
            raise Refusal(self.config.outage)

    def cancel_signature(self, req: Request, *, retention: bool = False) -> Outcome:
        self._outage()
        if not retention:
            from worker.cfdi.cancellation import SignatureError, verify_cancelacion

            try:
                verified = verify_cancelacion(decode_b64(req.text("xml")))
            except SignatureError as exc:
                raise Refusal(exc.code, str(exc)) from None
            return self._cancel(verified.rfc_emisor, list(verified.folios))
        doc = _read_signed(req)
        return self._cancel(doc.get("RfcEmisor") or "", _folios_of(doc), retention=retention)

    def cancel_uuids(self, req: Request) -> Outcome:
        """cancel / sign_cancel: UUIDS is a list of UUID elements with attributes."""
        self._outage()
        el = req.element("UUIDS")
        folios = []
        if el is not None:
            for item in el.iter():
                if isinstance(item.tag, str) and item.get("UUID"):
                    folios.append((item.get("UUID", "").upper(), item.get("Motivo"),
                                   item.get("FolioSustitucion")))
        return self._cancel(req.text("taxpayer_id") or "", folios)

    def out_cancel(self, req: Request) -> Outcome:
        """A CFDI another PAC stamped: the sandbox cannot know it, so it accepts the request."""
        self._outage()
        doc = _read_signed(req)
        rfc = req.text("taxpayer_id") or doc.get("RfcEmisor") or ""
        fecha = mexico_now().isoformat()
        folios = [(u, "201") for u, _, _ in _folios_of(doc)]
        return Outcome(self._cancel_nodes(folios, _acuse(rfc, fecha, folios), fecha, rfc))

    def _cancel(self, rfc: str, folios: list[tuple[str, str | None, str | None]], *,
                retention: bool = False) -> Outcome:
        if not folios:
            return Outcome([Node("CodEstatus", "206")])
        for _uid, motivo, sustitucion in folios:
            if motivo == "01" and not sustitucion:
                return Outcome([Node(
                    "CodEstatus", "Motivo cancelación es 01, FolioSustitucion del CFDI es requerido."
                )])
        records: list[tuple[str, DocumentRecord | None]] = [
            (uid, self.ledger.find_uuid(uid)) for uid, _, _ in folios
        ]
        if not retention:
            missing = next((u for u, r in records if r is None), None)
            if missing:
                return Outcome([Node("CodEstatus", f"UUID: {missing} No Encontrado")])
        now = mexico_now()
        fecha = now.isoformat()
        answered: list[Node] = []
        fresh: list[tuple[str, str]] = []
        for uid, rec in records:
            if rec is None:  # retentions: SAT does not know it (yet)
                answered.append(self._folio(uid, "1205", "UUID No existe"))
            elif rfc and rec.emisor_rfc and rfc.upper() != rec.emisor_rfc.upper():
                answered.append(self._folio(uid, "203", "No corresponde el RFC del Emisor"))
            elif rec.cancel_status in ("cancelled", "requested"):
                status = "Cancelado sin aceptación" if rec.cancel_status == "cancelled" else "En proceso"
                answered.append(self._folio(uid, "202", status))
            else:
                code = "1201" if retention else "201"
                rec.cancel_requests += 1
                outcome = self._outcome_for(rec) if not retention else "sin"
                rec.cancel_outcome = outcome
                rec.cancel_polls_left = self.config.cancel_process_polls
                immediate = outcome == "sin" and rec.cancel_polls_left == 0
                rec.cancel_status = "cancelled" if immediate else "requested"
                answered.append(self._folio(uid, code, "" if retention else REQUESTED_OK))
                fresh.append((uid, code))
        if not fresh:  # a repeat: no Acuse, and Finkok's other date format
            return Outcome([
                Node("Folios", answered),
                Node("Fecha", mexico_now(micro=True).strftime("%Y-%m-%d %H:%M:%S.%f")),
                Node("RfcEmisor", rfc),
            ])
        acuse = _acuse(rfc, fecha, fresh)
        for uid, _ in fresh:
            rec = self.ledger.find_uuid(uid)
            if rec is not None:
                rec.cancel_acuse = acuse
                rec.cancel_date = fecha
        return Outcome([Node("Folios", answered), Node("Acuse", acuse), Node("Fecha", fecha),
                        Node("RfcEmisor", rfc)])

    def _outcome_for(self, rec: DocumentRecord) -> str:
        rules = self.config.rules_for(rec.receptor_rfc, rec.emisor_rfc)
        if "cancel_reject" in rules:
            return "reject"
        if "cancel_accept" in rules:
            return "accept"
        return "await" if self.config.cancel_mode == "con_aceptacion" else "sin"

    def _advance(self, rec: DocumentRecord) -> None:
        """One get_sat_status poll of a request: SAT settles it once its polls ran out."""
        if rec.cancel_status != "requested" or rec.cancel_outcome in (None, "await"):
            return
        with self.ledger.key_lock(rec.key):
            if rec.cancel_polls_left > 0:
                rec.cancel_polls_left -= 1
                return
            rec.cancel_status = "rejected" if rec.cancel_outcome == "reject" else "cancelled"

    @staticmethod
    def _folio(uid: str, code: str, text: str) -> Node:
        return Node("Folio", [Node("UUID", uid), Node("EstatusUUID", code),
                              Node("EstatusCancelacion", text)])

    def _cancel_nodes(self, folios: list[tuple[str, str]], acuse: str, fecha: str, rfc: str) -> list[Node]:
        return [
            Node("Folios", [self._folio(u, s, REQUESTED_OK) for u, s in folios]),
            Node("Acuse", acuse), Node("Fecha", fecha), Node("RfcEmisor", rfc),
        ]

    # --- receipts and status --------------------------------------------------------------

    def get_receipt(self, req: Request) -> Outcome:
        uid = (req.text("uuid") or "").strip().upper()
        rec = self.ledger.find_uuid(uid)
        acuse = rec.cancel_acuse if rec else None
        if rec is None or acuse is None:
            return Outcome([Node("uuid", uid), Node("success", False),
                            Node("error", "There is not a Cancellation receipt with that info")])
        return Outcome([
            Node("uuid", uid), Node("success", True), Node("receipt", acuse),
            Node("taxpayer_id", rec.emisor_rfc), Node("date", rec.cancel_date),
        ])

    def get_sat_status(self, req: Request) -> Outcome:
        rec = self.ledger.find_uuid(req.text("uuid") or "")
        if rec is None:
            sat = [Node("CodigoEstatus", "N - 602: Comprobante no encontrado."),
                   Node("Estado", "No Encontrado")]
        else:
            self._advance(rec)
            estado = "Cancelado" if rec.cancel_status == "cancelled" else "Vigente"
            con = rec.cancel_outcome in ("accept", "reject", "await") or (
                rec.cancel_outcome is None and self.config.cancel_mode == "con_aceptacion")
            es_cancelable = "Cancelable con aceptación" if con else "Cancelable sin aceptación"
            estatus = {
                "cancelled": "Cancelado con aceptación" if rec.cancel_outcome in ("accept", "await")
                else "Cancelado sin aceptación",
                "requested": "En proceso",
                "rejected": "Solicitud rechazada",
            }.get(rec.cancel_status or "")
            sat = [
                Node("EsCancelable", es_cancelable), Node("ValidacionEFOS", "200"),
                Node("CodigoEstatus", "S - Comprobante obtenido satisfactoriamente."),
                Node("Estado", estado), Node("EstatusCancelacion", estatus),
            ]
        return Outcome([Node("sat", sat)])

    def query_pending_cancellation(self, req: Request) -> Outcome:
        uid = (req.text("uuid") or "").strip().upper()
        rec = self.ledger.find_uuid(uid)
        if rec is None or rec.cancel_status is None:
            return Outcome([Node("error", f"UUID {uid} No Encontrado")])
        status = "F" if rec.cancel_status == "cancelled" else "S"
        return Outcome([Node("status", status), Node("uuid", uid), Node("error", ""),
                        Node("date", mexico_now(micro=True).strftime("%Y-%m-%d %H:%M:%S.%f"))])

    # --- receiver side ----------------------------------------------------------------------

    def get_pending(self, req: Request, *, out: bool = False) -> Outcome:
        rfc = (req.text("rtaxpayer_id") or "").upper()
        uuids = [] if out else [
            s.uuid for d in list(self.ledger.documents.values())
            if d.cancel_status == "requested" and (d.receptor_rfc or "").upper() == rfc
            for s in d.stamps[-1:]
        ]
        return Outcome([Node("uuids", [Node("string", u, prefix="tns") for u in uuids])])

    def accept_reject_signature(self, req: Request) -> Outcome:
        doc = _read_signed(req)
        answers: list[tuple[str, str]] = []
        for folios in doc.iter():
            if not isinstance(folios.tag, str) or _local(folios) != "Folios":
                continue
            uid = folios.get("UUID") or next(
                (c.text for c in folios if isinstance(c.tag, str) and _local(c) == "UUID"), None)
            resp = folios.get("Respuesta") or next(
                (c.text for c in folios if isinstance(c.tag, str) and _local(c) == "Respuesta"), None)
            if uid:
                answers.append((uid.strip().upper(), (resp or "").strip()))
        return self._answer(answers)

    def accept_reject_items(self, req: Request) -> Outcome:
        """accept_reject (UUIDS_AR list) and out_accept_reject (one UUID_AR)."""
        answers: list[tuple[str, str]] = []
        container = req.element("UUIDS_AR") if req.element("UUIDS_AR") is not None else req.element("UUID_AR")
        if container is not None:
            items = [e for e in container.iter() if isinstance(e.tag, str) and _local(e) == "UUID_AR"]
            if not items and _local(container) == "UUID_AR":
                items = [container]
            for item in items:
                fields = {_local(c): (c.text or "").strip() for c in item if isinstance(c.tag, str)}
                if fields.get("uuid"):
                    answers.append((fields["uuid"].upper(), fields.get("respuesta", "")))
        return self._answer(answers)

    def _answer(self, answers: list[tuple[str, str]]) -> Outcome:
        acepta: list[Node] = []
        rechaza: list[Node] = []
        for uid, resp in answers:
            rec = self.ledger.find_uuid(uid)
            if rec is None:
                return Outcome([Node("error", f"UUID: {uid} No Encontrado")])
            if rec.cancel_status == "requested":
                status = "1000"
                rec.cancel_status = "cancelled" if resp.lower().startswith("acept") else "rejected"
            else:
                status = "1001"
            item = [Node("status", status), Node("uuid", uid)]
            (acepta if resp.lower().startswith("acept") else rechaza).append(
                Node("Acepta" if resp.lower().startswith("acept") else "Rechaza", item)
            )
        return Outcome([Node("rechazo", rechaza or None), Node("aceptacion", acepta or None)])

    # --- related ----------------------------------------------------------------------------

    def related(self, req: Request, *, signed: bool) -> Outcome:
        if signed:
            doc = _read_signed(req)
            uid = (doc.get("Uuid") or doc.get("UUID") or "").upper()
        else:
            uid = (req.text("uuid") or "").strip().upper()
        rec = self.ledger.find_uuid(uid)
        if rec is None:
            return Outcome([Node("error", f"UUID: {uid} No Encontrado")])

        def item(tag: str, d: DocumentRecord) -> Node:
            u = d.stamps[-1].uuid if d.stamps else ""
            return Node(tag, [
                Node("uuid", u), Node("emisor", d.emisor_rfc), Node("receptor", d.receptor_rfc),
            ])

        docs = list(self.ledger.documents.values())
        padres = [item("Padre", d) for d in docs if uid in d.relacionados]
        hijos = [item("Hijo", d) for d in (self.ledger.find_uuid(u) for u in rec.relacionados) if d]
        return Outcome([Node("Padres", padres), Node("Hijos", hijos)])
