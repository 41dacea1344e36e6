"""Utilities, registration (reseller customers) and manifest services of the local Finkok.

Answers use the messages Finkok is known to send ("Account Created successfully",
"RFC Invalido", "The user is on demand type", ...); reports (``report_uuid``, ``report_total``) and
``get_xml`` are computed from the sandbox's own ledger: what it stamped, in the asked
window of FechaTimbrado. A stamp whose answer never reached the client
(``drop_rate: 1.0``, or the ``drop_once`` rule) is in the ledger like any other: the orphan
only a reconciliation finds.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid as uuid_mod

from worker.sandbox.finkok.documents import RET_NS, Refusal, mexico_now
from worker.sandbox.finkok.ledger import Customer, Ledger
from worker.sandbox.finkok.stamping import Outcome
from worker.sandbox.finkok.wire import Node, Request

RFC_RE = re.compile(r"^[A-ZÑ&]{3,4}\d{6}[A-Z0-9]{3}$")


def _user(c: Customer) -> Node:
    return Node("ResellerUser", [
        Node("status", c.status), Node("counter", c.counter), Node("taxpayer_id", c.taxpayer_id),
        Node("credit", c.credit),
    ])


class AccountsDesk:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # --- utilities ------------------------------------------------------------------------

    def datetime(self, req: Request) -> Outcome:
        return Outcome([Node("datetime", mexico_now().isoformat())])

    def get_xml(self, req: Request) -> Outcome:
        rec = self.ledger.find_uuid(req.text("uuid") or "")
        taxpayer = (req.text("taxpayer_id") or "").upper()
        if rec is None or not rec.stamps or (taxpayer and taxpayer != (rec.emisor_rfc or "").upper()):
            return Outcome([Node("error", "UUID Does not Exists")])
        uid = (req.text("uuid") or "").strip().upper()
        stamp = next((s for s in rec.stamps if s.uuid == uid), rec.stamps[-1])
        return Outcome([Node("xml", stamp.xml)])

    def _stamps_of(self, taxpayer: str, window: tuple[dt.datetime | None, dt.datetime | None]
                   = (None, None), invoice_type: str = "") -> list[tuple[str, str]]:
        """(UUID, FechaTimbrado) of every stamp of ``taxpayer``'s documents whose
        FechaTimbrado (Mexico City time, like ``date_from``/``date_to``) is inside the window,
        both ends included; ``invoice_type`` ``I`` CFDI, ``R`` retentions, empty: both."""
        low, high = window
        out = []
        for d in list(self.ledger.documents.values()):
            if (d.emisor_rfc or "").upper() != taxpayer.upper():
                continue
            for s in d.stamps:
                if invoice_type and (RET_NS in s.xml) != (invoice_type.upper() == "R"):
                    continue
                fecha = dt.datetime.fromisoformat(s.fecha)
                if (low is None or fecha >= low) and (high is None or fecha <= high):
                    out.append((s.uuid, s.fecha))
        return out

    @staticmethod
    def _window(req: Request) -> tuple[dt.datetime | None, dt.datetime | None]:
        """``date_from``/``date_to`` (``YYYY-MM-DDTHH:MM:SS``; empty: open); Refusal if bad."""
        bounds = []
        for name in ("date_from", "date_to"):
            text = (req.text(name) or "").strip()
            try:
                bounds.append(dt.datetime.fromisoformat(text).replace(tzinfo=None) if text else None)
            except ValueError:
                raise Refusal("705", f"{name} {text!r} is not YYYY-MM-DDTHH:MM:SS") from None
        return bounds[0], bounds[1]

    def report_credit(self, req: Request) -> Outcome:
        c = self.ledger.customers.get((req.text("taxpayer_id") or "").upper())
        if c is None or c.credit < 0:
            return Outcome([Node("result", [])])
        entry = Node("ReportTotalCredit", [Node("credit", c.credit), Node("date", mexico_now().isoformat())])
        return Outcome([Node("result", [entry])])

    def report_total(self, req: Request) -> Outcome:
        taxpayer = (req.text("taxpayer_id") or "").upper()
        total = len(self._stamps_of(taxpayer, self._window(req), req.text("invoice_type") or ""))
        return Outcome([Node("result", [
            Node("ReportTotal", [Node("total", total), Node("taxpayer_id", taxpayer)]),
        ])])

    def report_uuid(self, req: Request) -> Outcome:
        rows = self._stamps_of(req.text("taxpayer_id") or "", self._window(req),
                               req.text("invoice_type") or "")
        return Outcome([Node("invoices", [
            Node("ReportUUID", [Node("date", fecha), Node("uuid", uid)]) for uid, fecha in rows
        ])])

    def token(self, req: Request, operation: str) -> Outcome:
        if operation == "update_token":
            status = req.text("status") or ""
            if status not in ("A", "I"):
                return Outcome([Node("success", False), Node("message", "Invalid status")])
            return Outcome([Node("success", True), Node("message", "Token updated successfully"),
                            Node("token", req.text("token"))])
        message = "Token created successfully" if operation == "add_token" else "Token reset successfully"
        return Outcome([Node("success", True), Node("message", message),
                        Node("token", uuid_mod.uuid4().hex)])

    # --- registration ---------------------------------------------------------------------

    def add(self, req: Request) -> Outcome:
        rfc = (req.text("taxpayer_id") or "").strip().upper()
        if not RFC_RE.match(rfc):
            return Outcome([Node("message", "RFC Invalido"), Node("success", False)])
        if rfc in self.ledger.customers:
            return Outcome([Node("message", "Account Already exists"), Node("success", True)])
        type_user = (req.text("type_user") or "O").upper()
        self.ledger.customers[rfc] = Customer(rfc, "A", type_user, -1 if type_user == "O" else 0)
        return Outcome([Node("message", "Account Created successfully"), Node("success", True)])

    def edit(self, req: Request) -> Outcome:
        c = self.ledger.customers.get((req.text("taxpayer_id") or "").upper())
        if c is None:
            return Outcome([
                Node("message", "ERROR: El rfc no se encuentra registrado"), Node("success", False),
            ])
        status = (req.text("status") or "").upper()
        if status not in ("A", "S"):
            return Outcome([Node("message", "Invalid status"), Node("success", False)])
        c.status = status
        word = "Activated" if status == "A" else "Suspended"
        return Outcome([Node("message", f"Account was {word} successfully"), Node("success", True)])

    def get(self, req: Request) -> Outcome:
        rfc = (req.text("taxpayer_id") or "").strip().upper()
        if not RFC_RE.match(rfc):
            return Outcome([Node("message", "RFC Invalido"), Node("users", [])])
        c = self.ledger.customers.get(rfc)
        if c is None:
            return Outcome([Node("message", "RFC no encontrado"), Node("users", [])])
        return Outcome([Node("message", ""), Node("users", [_user(c)])])

    def assign(self, req: Request) -> Outcome:
        c = self.ledger.customers.get((req.text("taxpayer_id") or "").upper())
        if c is None:
            return Outcome([Node("success", False), Node("credit", 0), Node("message", "RFC no encontrado")])
        if c.type_user == "O":
            return Outcome([Node("success", False), Node("credit", -1),
                            Node("message", "The user is on demand type")])
        delta = int(req.text("credit") or 0)
        if c.credit + delta < 0:
            return Outcome([Node("success", False), Node("credit", c.credit), Node(
                "message", "The number of credits to decrease is greater than the number of current credits."
            )])
        c.credit += delta
        return Outcome([Node("success", True), Node("credit", c.credit), Node("message", "Success")])

    def switch(self, req: Request) -> Outcome:
        c = self.ledger.customers.get((req.text("taxpayer_id") or "").upper())
        type_user = (req.text("type_user") or "").upper()
        if c is None:
            return Outcome([Node("message", "RFC no encontrado"), Node("success", False)])
        if type_user not in ("O", "P"):
            return Outcome([Node("message", "Invalid type_user"), Node("success", False)])
        c.type_user = type_user
        c.credit = -1 if type_user == "O" else max(c.credit, 0)
        return Outcome([Node("message", "Type of user changed successfully"), Node("success", True)])

    def customers(self, req: Request) -> Outcome:
        page = max(int(req.text("page") or 1), 1)
        everyone = sorted(self.ledger.customers.values(), key=lambda c: c.taxpayer_id)
        chunk = everyone[(page - 1) * 50 : page * 50]
        first = (page - 1) * 50 + 1 if chunk else 0
        last = (page - 1) * 50 + len(chunk)
        return Outcome([
            Node("message", f"Showing {first} to {last} of {len(everyone)} entries"),
            Node("users", [_user(c) for c in chunk]),
        ])

    # --- manifest -------------------------------------------------------------------------

    def get_contracts(self, req: Request) -> Outcome:
        name = req.text("name") or ""
        rfc = req.text("taxpayer_id") or ""
        if not RFC_RE.match(rfc.upper()):
            return Outcome([Node("success", False), Node("error", "RFC Invalido")])
        contract = f"Contrato de prestación de servicios entre Finkok y {name} ({rfc})."
        privacy = f"Aviso de privacidad para {name} ({rfc}), {req.text('email') or ''}."
        return Outcome([
            Node("success", True),
            Node("contract", base64.b64encode(contract.encode()).decode()),
            Node("privacy", base64.b64encode(privacy.encode()).decode()),
        ])

    def sign_contract(self, req: Request) -> Outcome:
        snid = req.text("snid") or ""
        privacy, contract = req.text("privacy_xml") or "", req.text("contract_xml") or ""
        if not (snid and privacy and contract):
            return Outcome([Node("success", False), Node("message", "Missing signed documents")])
        self.ledger.signed_contracts[snid] = (privacy, contract)
        return Outcome([Node("success", True), Node("message", "Contracts signed successfully")])

    def get_documents(self, req: Request) -> Outcome:
        signed = self.ledger.signed_contracts.get(req.text("snid") or "")
        if signed is None:
            return Outcome([Node("success", False), Node("error", "No signed documents found")])
        privacy, contract = signed
        return Outcome([
            Node("success", True),
            Node("contract", base64.b64encode(contract.encode()).decode()),
            Node("privacy", base64.b64encode(privacy.encode()).decode()),
        ])
