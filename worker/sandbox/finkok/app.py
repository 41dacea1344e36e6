"""The local Finkok's brain: one SOAP request in, one HTTP reply out (or a dropped
connection), with the configured latency, hangs, faults and drops applied.

Transport-independent so it can be driven by the HTTP server in
``worker.sandbox.finkok.server`` and exercised directly.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from worker.cfdi.csd import Csd, sandbox_pac_csd
from worker.finkok import services
from worker.sandbox.finkok.accounts import AccountsDesk
from worker.sandbox.finkok.cancel import CancelDesk
from worker.sandbox.finkok.config import SandboxConfig
from worker.sandbox.finkok.documents import Refusal, decode_b64, read
from worker.sandbox.finkok.ledger import Ledger
from worker.sandbox.finkok.stamping import Outcome, StampDesk, incidencia
from worker.sandbox.finkok.wire import (
    BadRequest,
    Node,
    Request,
    parse_request,
    render_fault,
    render_response,
)

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "Invalid Username or Password"
FAULT_TEXT = "'NoneType' object has no attribute 'date'"  # a real Finkok fault
DROP_OPS = frozenset({("stamp", "stamp"), ("stamp", "quick_stamp"), ("retentions", "stamp"),
                      ("cancel", "cancel_signature")})  # processed, then the answer is lost
XML_OPS = frozenset({("stamp", op) for op in ("stamp", "quick_stamp", "stamped", "sign_stamp")}
                    | {("retentions", "stamp"), ("retentions", "stamped")})

# How each operation reports bad credentials / a refusal (the shape of its result type).
INCIDENCIA, CODESTATUS, ERROR, REG, LIST, ASSIGN, TOKEN, NONE = (
    "incidencia", "codestatus", "error", "registration", "list", "assign", "token", "none"
)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    drop: bool = False  # close the connection without answering
    plain: bool = False  # a proxy's page, not SOAP


@lru_cache(maxsize=1)
def _default_pac() -> Csd:
    return sandbox_pac_csd()


class FinkokSimulator:
    def __init__(self, config: SandboxConfig | None = None, pac: Callable[[], Csd] | None = None) -> None:
        self.config = config or SandboxConfig()
        self.ledger = Ledger()
        self.rng = random.Random(self.config.seed)
        self.stop_event = threading.Event()
        self._pac = pac or _default_pac
        self.stamping = StampDesk(self.config, self.ledger, self.rng, self._pac)
        self.cancel = CancelDesk(self.config, self.ledger)
        self.accounts = AccountsDesk(self.ledger)
        s, c, a = self.stamping, self.cancel, self.accounts
        u, r, t = self.accounts, "registration", "retentions"
        self.routes: dict[tuple[str, str], tuple[Callable[[Request], Outcome], str]] = {
            ("stamp", "stamp"): (lambda q: s.stamp(q, "stamp"), INCIDENCIA),
            ("stamp", "quick_stamp"): (lambda q: s.stamp(q, "quick_stamp"), INCIDENCIA),
            ("stamp", "stamped"): (s.stamped, INCIDENCIA),
            ("stamp", "sign_stamp"): (s.sign_stamp, INCIDENCIA),
            ("stamp", "query_pending"): (s.query_pending, ERROR),
            ("cancel", "cancel_signature"): (c.cancel_signature, CODESTATUS),
            ("cancel", "cancel"): (c.cancel_uuids, CODESTATUS),
            ("cancel", "sign_cancel"): (c.cancel_uuids, CODESTATUS),
            ("cancel", "out_cancel"): (c.out_cancel, CODESTATUS),
            ("cancel", "get_receipt"): (c.get_receipt, ERROR),
            ("cancel", "get_sat_status"): (c.get_sat_status, ERROR),
            ("cancel", "get_out_sat_status"): (c.get_sat_status, ERROR),
            ("cancel", "query_pending_cancellation"): (c.query_pending_cancellation, ERROR),
            ("cancel", "get_pending"): (c.get_pending, ERROR),
            ("cancel", "get_out_pending"): (lambda q: c.get_pending(q, out=True), ERROR),
            ("cancel", "accept_reject_signature"): (c.accept_reject_signature, ERROR),
            ("cancel", "accept_reject"): (c.accept_reject_items, ERROR),
            ("cancel", "out_accept_reject"): (c.accept_reject_items, ERROR),
            ("cancel", "get_related_signature"): (lambda q: c.related(q, signed=True), ERROR),
            ("cancel", "get_related"): (lambda q: c.related(q, signed=False), ERROR),
            ("cancel", "get_out_related"): (lambda q: c.related(q, signed=False), ERROR),
            ("cancel", "dmethod"): (lambda q: Outcome(None), NONE),
            ("utilities", "datetime"): (u.datetime, ERROR),
            ("utilities", "get_xml"): (u.get_xml, ERROR),
            ("utilities", "report_credit"): (u.report_credit, ERROR),
            ("utilities", "report_total"): (u.report_total, ERROR),
            ("utilities", "report_uuid"): (u.report_uuid, ERROR),
            ("utilities", "add_token"): (lambda q: u.token(q, "add_token"), TOKEN),
            ("utilities", "reset_token"): (lambda q: u.token(q, "reset_token"), TOKEN),
            ("utilities", "update_token"): (lambda q: u.token(q, "update_token"), TOKEN),
            (r, "add"): (u.add, REG),
            (r, "edit"): (u.edit, REG),
            (r, "get"): (u.get, LIST),
            (r, "assign"): (u.assign, ASSIGN),
            (r, "switch"): (u.switch, REG),
            (r, "customers"): (u.customers, LIST),
            (t, "stamp"): (lambda q: s.stamp(q, "stamp", retention=True), INCIDENCIA),
            (t, "stamped"): (lambda q: s.stamped(q, retention=True), INCIDENCIA),
            (t, "cancel_signature"): (lambda q: c.cancel_signature(q, retention=True), CODESTATUS),
            (t, "get_receipt"): (c.get_receipt, ERROR),
            ("firmar", "get_contracts_snid"): (a.get_contracts, NONE),
            ("firmar", "sign_contract"): (a.sign_contract, NONE),
            ("firmar", "get_documents"): (a.get_documents, NONE),
        }

    # --- configuration ------------------------------------------------------------------

    def reseed(self) -> None:
        self.rng.seed(self.config.seed)

    def reset(self) -> None:
        self.ledger.reset()
        self.reseed()

    # --- WSDL -----------------------------------------------------------------------------

    def wsdl(self, key: str, base_url: str) -> bytes | None:
        info = services.SERVICES.get(key)
        if info is None:
            return None
        text = services.wsdl_text(key).decode("utf-8")
        text = re.sub(
            r'(<soap:address location=")[^"]*(")', lambda m: m.group(1) + info.address(base_url) + m.group(2),
            text, count=1,
        )
        return text.encode("utf-8")

    # --- SOAP -----------------------------------------------------------------------------

    def handle_soap(self, key: str, body: bytes) -> Reply:
        info = services.SERVICES.get(key)
        if info is None:
            return Reply(404, b"Not Found")
        try:
            req = parse_request(body)
        except BadRequest as exc:
            return Reply(
                500, render_fault(key, info.namespace, str(exc), "senv:Client.SchemaValidationError")
            )
        route = self.routes.get((key, req.operation))
        if route is None or req.namespace != info.namespace:
            return Reply(500, render_fault(
                key, info.namespace,
                f"Requested resource '{{{req.namespace}}}{req.operation}' not found",
                "senv:Client.ResourceNotFound",
            ))
        self.ledger.count_call(f"{key}.{req.operation}")
        handler, style = route
        cfg = self.config
        self._latency()
        if cfg.outage in ("drop", "http503", "http404"):  # the service is down, or a proxy answers
            self.ledger.count_event(f"outage_{cfg.outage}")
            if cfg.outage == "drop":
                return Reply(200, b"", drop=True)
            return Reply(int(cfg.outage[4:]), b"<html>Service Unavailable</html>", plain=True)
        rules, record_key = self._document_rules(key, req)
        fired = self._fire_once(record_key, rules, ("fault_once", "hang_once"))
        applies = cfg.fault_ops is None or req.operation in cfg.fault_ops
        if "hang_once" in fired or (applies and cfg.hang_rate and self.rng.random() < cfg.hang_rate):
            self.ledger.count_event("hang")
            self.stop_event.wait(cfg.hang_s)
        if "fault_once" in fired or (applies and cfg.fault_rate and self.rng.random() < cfg.fault_rate):
            self.ledger.count_event("fault")
            return Reply(500, render_fault(key, info.namespace, FAULT_TEXT))
        if style != NONE and not self._authorized(req):
            self.ledger.count_event("bad_credentials")
            return Reply(200, render_response(key, info.namespace, req.operation,
                                              self._failure(style, "300", BAD_CREDENTIALS)))
        try:
            outcome = handler(req)
        except Refusal as refusal:
            self.ledger.count_event(f"refused_{refusal.code}")
            return Reply(200, render_response(key, info.namespace, req.operation,
                                              self._failure(style, refusal.code, refusal.detail)))
        except Exception as exc:  # a bug here looks to the client like Finkok's own faults
            log.exception("sandbox %s.%s failed", key, req.operation)
            return Reply(500, render_fault(key, info.namespace, f"{type(exc).__name__}: {exc}"))
        reply = Reply(200, render_response(key, info.namespace, req.operation, outcome.result))
        if (key, req.operation) in DROP_OPS:
            drop_once = outcome.new_stamp and bool(
                self._fire_once(record_key, rules, ("drop_once",))
            )
            if drop_once or (applies and cfg.drop_rate and self.rng.random() < cfg.drop_rate):
                self.ledger.count_event("drop")
                reply.drop = True
        return reply

    def _latency(self) -> None:
        cfg = self.config
        if cfg.latency_ms <= 0 and cfg.jitter_ms <= 0:
            return
        delay = cfg.latency_ms + (self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0)
        if delay > 0:
            self.stop_event.wait(delay / 1000.0)

    def _document_rules(self, key: str, req: Request) -> tuple[list[str], str | None]:
        """Rules of the request's document (by receptor RFC), read only when rules exist."""
        if not self.config.rules or (key, req.operation) not in XML_OPS:
            return [], None
        try:
            doc = read(decode_b64(req.text("xml")), retention=key == "retentions")
        except Refusal:
            return [], None
        self.ledger.get_or_create(doc.key, doc.receptor_rfc, doc.emisor_rfc)
        return self.config.rules_for(doc.receptor_rfc, doc.emisor_rfc), doc.key

    def _fire_once(
        self, record_key: str | None, rules: list[str], candidates: tuple[str, ...]
    ) -> set[str]:
        """The *_once rules among ``candidates`` that fire now: once per document."""
        rec = self.ledger.get(record_key) if record_key else None
        if rec is None:
            return set()
        fired = set()
        with self.ledger.key_lock(rec.key):
            for rule in candidates:
                if rule in rules and rule not in rec.fired:
                    rec.fired.add(rule)
                    fired.add(rule)
        return fired

    def _authorized(self, req: Request) -> bool:
        user = req.text("username") if "username" in req.params else req.text("reseller_username")
        pw = req.text("password") if "password" in req.params else req.text("reseller_password")
        return user == self.config.username and pw == self.config.password

    @staticmethod
    def _failure(style: str, code: str, detail: str) -> list[Node]:
        if style == INCIDENCIA:
            return [Node("xml", ""), Node("Incidencias", [incidencia(code, detail)])]
        text = BAD_CREDENTIALS if code == "300" else (detail or code)
        if style == CODESTATUS:
            return [Node("CodEstatus", text if code == "300" else code)]
        if style == REG:
            return [Node("message", text), Node("success", False)]
        if style == LIST:
            return [Node("message", text)]
        if style in (ASSIGN, TOKEN):
            return [Node("success", False), Node("message", text)]
        return [Node("error", text)]

    def stats(self) -> dict[str, object]:
        data = self.ledger.stats()
        data["uptime_s"] = round(time.time() - self.ledger.started, 3)
        return data
