"""The SIF sandbox's switches and SIF's exact answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DEFAULT_SECRET = "sandbox-secret"
DEFAULT_BASE_PATH = "/mcs/sif"
MAX_BODY_BYTES = 32 * 1024 * 1024
FAULTS = frozenset({"hang", "drop", "404", "500", "502", "503"})

BODY_401 = {"error": {"code": 401, "message": "Token de autorización inválido."}}
BODY_404 = {"error": {"code": 404, "message": "No se encontro el documento"}}
BODY_409 = {
    "error": {
        "code": 409,
        "message": "El documento ya cuenta con un estatus de facturación correcta",
    }
}


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass
class SandboxConfig:
    """Every switch. Rates are fractions of requests in [0, 1]."""

    secret: str = DEFAULT_SECRET
    known_empresas: set[str] | None = None  # None: every empresaRefId is known
    latency_s: float = 0.0  # before answering, after the status took effect
    error_rate: float = 0.0  # answered error_status, nothing processed
    error_status: int = 503
    error_message: str = "Servicio no disponible"  # the 5xx body's message
    not_found_rate: float = 0.0  # 404 for a known empresa (document not there yet)
    drop_rate: float = 0.0  # commit then drop: status taken, connection closed unanswered
    hang_rate: float = 0.0  # connection held hang_s unanswered, nothing processed
    hang_s: float = 30.0
    faults: list[str] = field(default_factory=list)  # scripted, one per request, in order
    seed: int | None = None

    def __repr__(self) -> str:
        return f"SandboxConfig({self.public()!r})"

    def public(self) -> dict[str, Any]:
        """As JSON-ready values, the secret masked."""
        out = asdict(self)
        out["secret"] = "********"
        out["known_empresas"] = (
            None if self.known_empresas is None else sorted(self.known_empresas)
        )
        return out


def coerce(config: SandboxConfig, changes: dict[str, Any]) -> SandboxConfig:
    names = {f.name for f in fields(SandboxConfig)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"unknown sandbox settings: {sorted(unknown)} (known: {sorted(names)})")
    values = dict(changes)
    if "known_empresas" in values and values["known_empresas"] is not None:
        values["known_empresas"] = {str(e) for e in values["known_empresas"]}
    if "faults" in values:
        faults = [str(f) for f in values["faults"] or []]
        bad = [f for f in faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad} (known: {sorted(FAULTS)})")
        values["faults"] = faults
    for rate in ("error_rate", "not_found_rate", "drop_rate", "hang_rate"):
        if rate in values and not 0.0 <= float(values[rate]) <= 1.0:
            raise ValueError(f"{rate} must be within [0, 1]")
    if "error_status" in values and not 500 <= int(values["error_status"]) <= 599:
        raise ValueError("error_status must be a 5xx code")
    return replace(config, **values)
