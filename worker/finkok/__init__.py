"""Finkok (PAC) SOAP client, typed results, error catalog and our own WSDL files."""

from worker.finkok.client import CancelFolio, FinkokClient
from worker.finkok.errors import (
    FinkokAmbiguous,
    FinkokBadResponse,
    FinkokError,
    FinkokFault,
    FinkokNotSent,
    FinkokTransportError,
    Kind,
    classify,
)
from worker.finkok.results import (
    Incidencia,
    QueryPendingResult,
    StampResult,
    stamp_result_kind,
)

__all__ = [
    "CancelFolio",
    "FinkokAmbiguous",
    "FinkokBadResponse",
    "FinkokClient",
    "FinkokError",
    "FinkokFault",
    "FinkokNotSent",
    "FinkokTransportError",
    "Incidencia",
    "Kind",
    "QueryPendingResult",
    "StampResult",
    "classify",
    "stamp_result_kind",
]
