"""The stamp service of the local Finkok: stamp, quick_stamp, stamped, sign_stamp,
query_pending, and the same for retentions.

Order of checks for a stamp: account rules, existing TFD (707), repeat (307), seal (302/303),
Fecha window (401), certificate at Fecha (305), receptor catalog rules (CFDI40157-40161;
these three shared with intake: worker.cfdi.preflight), configured rejections (e.g.
CFDI40143), then a fresh UUID and TFD.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from worker.cfdi.csd import Csd
from worker.cfdi.preflight import PreflightError, check_fecha, parse_fecha, preflight
from worker.cfdi.sealing import SealError, verify_seal
from worker.cfdi.tfd import add_tfd, build_tfd_element
from worker.finkok.errors import message_of
from worker.sandbox.finkok.config import SandboxConfig
from worker.sandbox.finkok.documents import (
    PreCfdi,
    Refusal,
    decode_b64,
    mexico_now,
    read,
)
from worker.sandbox.finkok.ledger import DocumentRecord, Ledger, Stamp
from worker.sandbox.finkok.wire import Node, Request

OK_STAMP = "Comprobante timbrado satisfactoriamente"
OK_REPEAT = "Comprobante timbrado previamente"
OK_STAMPED = "Comprobante recibido satisfactoriamente"
XML_DECL = '<?xml version="1.0" encoding="utf-8"?>\n'
_SELLO_SAT = re.compile(r'SelloSAT="([^"]*)"')
_DECL = re.compile(r"^\s*<\?xml[^>]*\?>\s*")


@dataclass
class Outcome:
    """A result to answer (None: an empty response element) and what happened."""

    result: list[Node] | None
    new_stamp: bool = False
    document: DocumentRecord | None = None


def incidencia(code: str, detail: str = "", *, uuid: str = "", rfc_emisor: str | None = None) -> Node:
    """One Incidencia as Finkok fills it (its IdIncidencia/WorkProcessId are literal placeholders)."""
    return Node("Incidencia", [
        Node("IdIncidencia", "ID_incidencia"),
        Node("RfcEmisor", rfc_emisor),
        Node("Uuid", uuid),
        Node("CodigoError", code),
        Node("WorkProcessId", "WorkProcessId"),
        Node("MensajeIncidencia", message_of(code) or detail or "Error"),
        Node("ExtraInfo", detail if message_of(code) else ""),
        Node("NoCertificadoPac", ""),
        Node("FechaRegistro", mexico_now().isoformat()),
    ])


def refusal_result(refusal: Refusal, rfc_emisor: str | None = None) -> list[Node]:
    return [
        Node("xml", ""),
        Node("Incidencias", [incidencia(refusal.code, refusal.detail, rfc_emisor=rfc_emisor)]),
    ]


def stamp_nodes(stamp: Stamp, cod_estatus: str, incidencias: list[Node] | None = None) -> list[Node]:
    return [
        Node("xml", stamp.xml),
        Node("UUID", stamp.uuid),
        Node("Fecha", stamp.fecha),
        Node("CodEstatus", cod_estatus),
        Node("SatSeal", stamp.sat_seal),
        Node("Incidencias", incidencias or []),
        Node("NoCertificadoSAT", stamp.no_certificado_sat),
    ]


class StampDesk:
    def __init__(
        self,
        config: SandboxConfig,
        ledger: Ledger,
        rng: random.Random,
        pac: Callable[[], Csd],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.rng = rng
        self.pac = pac

    # --- stamp / quick_stamp ----------------------------------------------------------------

    def stamp(self, req: Request, operation: str, *, retention: bool = False) -> Outcome:
        doc = read(decode_b64(req.text("xml")), retention=retention)
        rules = self.config.rules_for(doc.receptor_rfc, doc.emisor_rfc)
        if self.config.outage and self.config.outage.isdigit():
            raise Refusal(self.config.outage)  # a whole-service answer (708, 718, 300...)
        rec = self.ledger.get_or_create(doc.key, doc.receptor_rfc, doc.emisor_rfc)
        with self.ledger.key_lock(doc.key):
            if operation == "quick_stamp":
                rec.quick_stamp_calls += 1
            else:
                rec.stamp_calls += 1
            for rule in rules:
                if rule.startswith("account:"):
                    raise Refusal(rule.split(":", 1)[1])
            if doc.has_tfd:
                raise Refusal("707", "the XML already carries a TimbreFiscalDigital")
            if rec.stamps and self.config.guard_307:
                rec.hits_307 += 1
                return Outcome(self._repeat(rec, operation, rules, doc), document=rec)
            if not retention:
                try:
                    verify_seal(doc.root)  # already parsed safely by read()
                except SealError as exc:
                    raise Refusal(getattr(exc, "code", "302") or "302", str(exc)) from None
            self._preflight(doc, retention)
            for rule in rules:
                if rule.startswith("reject:"):
                    raise Refusal(rule.split(":", 1)[1])
            stamp = self._make_stamp(doc)
            self.ledger.add_stamp(rec, stamp)
            rec.relacionados = doc.relacionados
            self._enter_pending(rec, operation, rules)
            rec.stamped_603_left = self.config.stamped_603_calls + (1 if "603_once" in rules else 0)
            return Outcome(stamp_nodes(stamp, OK_STAMP), new_stamp=True, document=rec)

    def _preflight(self, doc: PreCfdi, retention: bool) -> None:
        """Fecha (401), the certificate at Fecha (305) and the receptor rules (CFDI40157-
        40161): the very checks intake runs (worker.cfdi.preflight), so both refuse alike."""
        try:
            if retention:
                check_fecha(parse_fecha(doc.fecha), max_age_h=self.config.max_age_h)
            else:
                preflight(doc.root, check_seal=False, max_age_h=self.config.max_age_h)
        except PreflightError as exc:
            raise Refusal(exc.code, exc.message) from None

    def _repeat(self, rec: DocumentRecord, operation: str, rules: list[str], doc: PreCfdi) -> list[Node]:
        prev = rec.last
        assert prev is not None
        with_xml = (
            operation == "stamp" and self.config.stamp_307_with_xml and "307_no_xml" not in rules
        )
        if with_xml:
            inc = incidencia("307", uuid=prev.uuid, rfc_emisor=doc.emisor_rfc)
            return stamp_nodes(prev, OK_REPEAT, [inc])
        return [Node("xml", ""), Node("Incidencias", [incidencia("307", rfc_emisor=doc.emisor_rfc)])]

    def _enter_pending(self, rec: DocumentRecord, operation: str, rules: list[str]) -> None:
        pending = (
            "pending" in rules
            or (operation == "quick_stamp" and self.config.quick_stamp_pending)
            or (self.config.pending_rate > 0 and self.rng.random() < self.config.pending_rate)
        )
        rec.pending = pending
        rec.pending_polls_left = self.config.pending_polls if pending else 0
        rec.pending_until = time.monotonic() + (self.config.pending_s if pending else 0.0)

    def _make_stamp(self, doc: PreCfdi) -> Stamp:
        uid = str(uuid_mod.uuid4()).upper()
        fecha = mexico_now().isoformat(timespec="seconds")
        pac = self.pac()
        if doc.kind == "cfdi":
            stamped = add_tfd(doc.raw, uuid=uid, fecha_timbrado=fecha, pac=pac)
        else:
            stamped = self._retention_tfd(doc, uid, fecha, pac)
        text = XML_DECL + _DECL.sub("", stamped.decode("utf-8"), count=1)
        seals = _SELLO_SAT.findall(text)  # only the TFD carries SelloSAT
        return Stamp(
            uuid=uid, xml=text, fecha=fecha, sat_seal=seals[-1] if seals else "",
            no_certificado_sat=pac.no_certificado, stamped_at=time.time(),
        )

    @staticmethod
    def _retention_tfd(doc: PreCfdi, uid: str, fecha: str, pac: Csd) -> bytes:
        tfd = build_tfd_element(sello_cfd=doc.sello, uuid=uid, fecha_timbrado=fecha, pac=pac)
        root = doc.root
        ns = etree.QName(root).namespace
        complemento = root.find(f"{{{ns}}}Complemento")
        if complemento is None:
            complemento = etree.SubElement(root, f"{{{ns}}}Complemento")
        complemento.append(tfd)
        return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True))

    # --- stamped --------------------------------------------------------------------------

    def stamped(self, req: Request, *, retention: bool = False) -> Outcome:
        doc = read(decode_b64(req.text("xml")), retention=retention)
        rec = self.ledger.get(doc.key)
        if rec is not None:
            with self.ledger.key_lock(doc.key):
                rec.stamped_calls += 1
                if rec.stamps and rec.stamped_603_left > 0:
                    rec.stamped_603_left -= 1
                elif rec.stamps:
                    assert rec.last is not None
                    return Outcome(stamp_nodes(rec.last, OK_STAMPED), document=rec)
        raise Refusal("603")

    def sign_stamp(self, req: Request) -> Outcome:
        """The sandbox keeps no issuer CSDs, so sealing on the issuer's behalf is refused."""
        doc_rfc = None
        with contextlib.suppress(Refusal):
            doc_rfc = read(decode_b64(req.text("xml"))).emisor_rfc
        raise Refusal("720", f"RFC {doc_rfc or ''} has no CSD loaded in the sandbox".strip())

    # --- query_pending --------------------------------------------------------------------

    def query_pending(self, req: Request) -> Outcome:
        uid = (req.text("uuid") or "").strip().upper()
        date = mexico_now(micro=True).strftime("%Y-%m-%d %H:%M:%S.%f")
        try:
            uuid_mod.UUID(uid)
        except ValueError:
            return Outcome([Node("error", "UUID con formato invalido")])
        rec = self.ledger.find_uuid(uid)
        if rec is None:
            return Outcome([Node("error", f"UUID {uid} No Encontrado")])
        with self.ledger.key_lock(rec.key):
            delivered = True
            if rec.pending:
                if rec.pending_polls_left > 0:
                    rec.pending_polls_left -= 1
                    delivered = False
                elif time.monotonic() < rec.pending_until:
                    delivered = False
                else:
                    rec.pending = False
        stamp = next((s for s in rec.stamps if s.uuid == uid), rec.last)
        if not delivered:
            return Outcome([Node("status", "S"), Node("uuid", uid), Node("error", ""), Node("date", date)])
        return Outcome([
            Node("status", "F"), Node("xml", stamp.xml if stamp else None), Node("uuid", uid),
            Node("error", ""), Node("date", date),
        ])
