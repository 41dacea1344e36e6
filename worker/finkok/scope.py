"""Who must act on a Finkok outcome, and what it blocks: the fault scope.

A NOK tells the ERP "fix this document". Only a refusal *of the document* may cause one;
everything that can be fixed without touching the document holds the invoice and raises
an alarm, and the invoice resumes by itself when the cause is gone.

| scope      | who acts                 | what it blocks               | codes / failures               |
|------------|--------------------------|------------------------------|--------------------------------|
| document   | the ERP: fix or re-seal  | this invoice (rejected, NOK) | CFDI40xxx, 301–303, 305, 306,  |
|            |                          |                              | 308, 401–405, 705, 707, 710–712 |
|            |                          |                              | … every other `permanent` code |
| emisor     | us: the RFC's setup at   | that emisor's invoices       | 304, 702, 713, 719, 720, 721   |
|            | Finkok (CSD, account)    |                              |                                |
| account    | us: credentials, credits | all stamping                 | 300, 701, 703, 704, 706, 714,  |
|            | or the Finkok URL        |                              | 718, 740, 604; HTTP 401/404…   |
|            |                          |                              | (a proxy, a wrong URL)         |
| service    | nobody: Finkok or SAT is | back off; a sustained run of | connection refused, timeouts,  |
|            | unavailable              | them opens the breaker       | 5xx, SOAP faults, 708, 709 and |
|            |                          |                              | every other `transient` code   |

304 (the CSD is revoked or expired) is the emisor's: the same document re-sealed with a
valid CSD is the fix, but nothing in the ERP's data was wrong, and every invoice of that
RFC is refused until a person acts. 305 (Fecha outside the CSD's validity) is the
document's. The table is data (``EMISOR_CODES``, ``ACCOUNT_CODES``) over the catalog's
kinds; ``scope_of_code`` and ``scope_of_failure`` read it.
"""

from __future__ import annotations

from enum import StrEnum

from worker.finkok import catalog
from worker.finkok.errors import (
    FinkokBadResponse,
    FinkokError,
    Kind,
    classify,
    normalize_code,
)


class Scope(StrEnum):
    DOCUMENT = "document"
    EMISOR = "emisor"
    ACCOUNT = "account"
    SERVICE = "service"


EMISOR_CODES = frozenset({"304", "702", "713", "719", "720", "721"})
ACCOUNT_CODES = frozenset({"300", "604", "701", "703", "704", "706", "714", "718", "740"})

# What people read in `billing stats`, `invoices show` and the alarms, per cause code.
CAUSES: dict[str, str] = {
    "300": "Finkok refused our username or password",
    "304": "the emisor's CSD is revoked or expired",
    "604": "Finkok could not build the XML (Finkok support)",
    "701": "the Finkok reseller user is suspended",
    "702": "the emisor RFC is not registered in the Finkok account",
    "703": "the Finkok user is suspended",
    "704": "Finkok cannot use the emisor's private key (its password)",
    "706": "Finkok says the business partner is invalid",
    "713": "the emisor RFC does not belong to the Finkok account",
    "714": "the Finkok account reached its monthly limit",
    "718": "the Finkok account is out of credits (timbres agotados)",
    "719": "the emisor RFC does not match its certificate at Finkok",
    "720": "the emisor RFC has no active certificate at Finkok",
    "721": "the emisor RFC does not belong to the Finkok account",
    "740": "Finkok's manifest signature failed",
}


def scope_of_code(code: str | int) -> Scope:
    """The scope of a business answer's code (an Incidencia, a CodEstatus)."""
    code = normalize_code(code)
    if code in EMISOR_CODES:
        return Scope.EMISOR
    if code in ACCOUNT_CODES:
        return Scope.ACCOUNT
    kind = classify(code)
    if kind in (Kind.TRANSIENT, Kind.NOT_STAMPED, Kind.ALREADY_STAMPED, Kind.OK):
        return Scope.SERVICE if kind is Kind.TRANSIENT else Scope.DOCUMENT
    if kind is Kind.ACCOUNT:  # an account-kind code not listed above: hold, never NOK
        return Scope.ACCOUNT
    return Scope.DOCUMENT


def scope_of_failure(exc: FinkokError) -> Scope:
    """A transport failure or an answer that is not Finkok's: refused connections, timeouts,
    5xx and SOAP faults are the service's; a 401/404/3xx (a proxy, a wrong URL) is ours."""
    if isinstance(exc, FinkokBadResponse):
        return Scope.ACCOUNT
    return Scope.SERVICE


def cause_of(code: str, message: str | None = None) -> str:
    """One line for people: what is wrong, by code."""
    code = normalize_code(code)
    text = CAUSES.get(code) or message or catalog.CODES.get(code, ("",))[0] or code
    return f"{code}: {text}" if code and not text.startswith(code) else text
