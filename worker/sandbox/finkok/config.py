"""The local Finkok's switches: credentials, failure rates, per-receptor rules.

Every field can be set from Python (``FinkokSandbox.configure(...)``) or over HTTP
(``POST /_sandbox/config`` with a JSON object of the fields to change).

Rules are keyed by receptor or emisor RFC; a value is a rule or a list of rules (or a
comma-separated string):

* ``reject:<code>``  answer that incidencia (e.g. ``reject:CFDI40143``), no stamp
* ``account:<code>`` the same for account problems (e.g. ``account:702``), checked first
* ``307_no_xml``     a repeated ``stamp`` answers 307 without the previous XML/UUID
* ``fault_once``     the first call for each document gets an HTTP 500 SOAP fault
* ``drop_once``      the first stamp of each document is made, then the connection dropped
* ``hang_once``      the first call for each document sleeps ``hang_s`` before answering
* ``pending``        stamps stay undelivered to SAT (query_pending S) for a while
* ``603_once``       ``stamped`` answers 603 once right after a stamp (Finkok's 2019 lag)
* ``cancel_accept``  a cancellation of the receptor's CFDI is accepted by the receptor
                     (SAT: "Cancelado con aceptación") after ``cancel_process_polls``
* ``cancel_reject``  ... rejected by the receptor (SAT: "Solicitud rechazada", still Vigente)

``outage`` makes the whole service misbehave until it is set back to null: ``"drop"``
(every SOAP request's connection is closed unanswered), ``"http503"`` / ``"http404"``
(a proxy answers instead of Finkok), or a code such as ``"708"``, ``"718"`` or ``"300"``
(every ``stamp`` answers that incidencia and every cancellation request that
``CodEstatus``; lookups such as ``stamped``, ``get_receipt`` and ``get_sat_status`` still
work).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

OUTAGE_RE = re.compile(r"^(drop|http503|http404|\d{3})$")
RULE_RE = re.compile(
    r"^(reject:[A-Z0-9]+|account:\d{3}|307_no_xml|fault_once|drop_once|hang_once|pending|603_once|cancel_accept|cancel_reject)$"
)


class ConfigError(ValueError):
    """A configuration change that names an unknown field or has a bad value."""


def parse_rules(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        raise ConfigError(f"a rule must be a string or a list of strings, not {value!r}")
    for item in items:
        if not RULE_RE.match(item):
            raise ConfigError(f"unknown rule {item!r}")
    return items


@dataclass
class SandboxConfig:
    username: str = "sandbox@example.com"
    password: str = "sandbox"
    # Repeat-stamp protection. False: a forgetful PAC that stamps every call anew.
    guard_307: bool = True
    # A repeated `stamp` returns the previous XML/UUID with the 307 (Finkok: "usually").
    stamp_307_with_xml: bool = True
    max_age_h: float = 72.0  # older Fecha -> 401
    # Latency added to every SOAP call, uniformly jittered by +/- jitter_ms.
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # Probabilities per SOAP call (0..1). A fault answers HTTP 500 without processing. A
    # hang sleeps hang_s (default: past the worker's 60 s read timeout) and then processes
    # and answers as usual: a slow Finkok that stamps after the client gave up. A drop
    # processes, then closes the connection unanswered (stamp, quick_stamp, retentions stamp).
    hang_rate: float = 0.0
    hang_s: float = 90.0
    fault_rate: float = 0.0
    drop_rate: float = 0.0
    # Operations the rates apply to (None: all SOAP operations).
    fault_ops: list[str] | None = None
    # Share of stamps left pending delivery to SAT, and how long they stay pending:
    # query_pending answers S until both pending_polls polls and pending_s seconds passed.
    pending_rate: float = 0.0
    pending_polls: int = 1
    pending_s: float = 0.0
    quick_stamp_pending: bool = True  # quick_stamp queues delivery to SAT
    # `stamped` answers 603 this many times right after each new stamp (0: never).
    stamped_603_calls: int = 0
    # Cancellation model: "sin_aceptacion" (cancelled at once) or "con_aceptacion"
    # (the receptor must accept: get_pending lists it, accept_reject settles it).
    cancel_mode: str = "sin_aceptacion"
    # get_sat_status answers "En proceso" this many times after a request before SAT
    # settles it (0 with sin_aceptacion and no rule: cancelled at once, as before).
    cancel_process_polls: int = 0
    rules: dict[str, list[str]] = field(default_factory=dict)
    seed: int | None = None
    outage: str | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial change, validating everything before touching any field."""
        known = {f.name: f for f in fields(self)}
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            staged[name] = self._coerce(name, value)
        for name, value in staged.items():
            setattr(self, name, value)

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "rules":
            if not isinstance(value, dict):
                raise ConfigError("rules must be an object {RFC: rule(s)}")
            return {str(rfc).upper(): parse_rules(v) for rfc, v in value.items()}
        if name == "fault_ops":
            if value is None:
                return None
            if not isinstance(value, (list, tuple)):
                raise ConfigError("fault_ops must be a list of operation names or null")
            return [str(v) for v in value]
        if name in ("username", "password"):
            return str(value)
        if name == "outage":
            if value is not None and not OUTAGE_RE.match(str(value)):
                raise ConfigError("outage must be null, drop, http503, http404 or a code like 708")
            return None if value is None else str(value)
        if name == "cancel_mode":
            if value not in ("sin_aceptacion", "con_aceptacion"):
                raise ConfigError("cancel_mode must be sin_aceptacion or con_aceptacion")
            return value
        if name in ("guard_307", "stamp_307_with_xml", "quick_stamp_pending"):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false")
            return value
        if name in ("pending_polls", "stamped_603_calls", "cancel_process_polls"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer")
            return value
        if name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError("seed must be an integer or null")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{name} must be a non-negative number")
        if name.endswith("_rate") and value > 1:
            raise ConfigError(f"{name} is a probability (0..1)")
        return float(value)

    def rules_for(self, *rfcs: str | None) -> list[str]:
        """The rules of a document: its receptor's, then its emisor's."""
        return [rule for rfc in rfcs for rule in self.rules.get((rfc or "").upper(), [])]

    def public(self) -> dict[str, Any]:
        """Every setting, the password masked (for GET /_sandbox/config and logs)."""
        data = asdict(self)
        data["password"] = "********"
        return data
