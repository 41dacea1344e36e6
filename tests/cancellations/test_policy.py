"""The cancellation's decision tables (worker/cancellations/policy.py), row by row: which
fault each Finkok answer or failure is, and the move each verdict makes. Pure: no I/O."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from worker.cancellations.policy import (
    Accepted,
    Again,
    Found,
    Hold,
    Refused,
    Verdict,
    decide,
    judge_cancel,
    judge_failure,
    judge_lookup_error,
)
from worker.db.breakers import ACCOUNT_KEY, SERVICE_KEY, emisor_key
from worker.db.models import utcnow
from worker.finkok.errors import FinkokAmbiguous, FinkokBadResponse, FinkokFault, FinkokNotSent
from worker.finkok.results import CancelResult, Folio, SatStatusResult
from worker.settings import load_settings

UUID = "0D3C1E2A-1111-4222-8333-444455556666"
RFC = "AAA010101AAA"
MAX = 3


def _folio(code: str, text: str = "") -> CancelResult:
    return CancelResult((Folio(UUID, code, text),), None, None, RFC, None)


def _status(text: str) -> CancelResult:
    return CancelResult((), None, None, RFC, text)


# answer -> verdict type, fault detail (Again: outage?; Hold: the breaker), error code
ANSWERS: list[tuple[str, CancelResult, type, object, str | None]] = [
    ("201 with the acuse", CancelResult((Folio(UUID, "201", "ok"),), "<Acuse/>", "F", RFC, None),
     Accepted, None, None),
    ("202 requested before", _folio("202", "En proceso"), Accepted, None, None),
    ("205 SAT lag (folio)", _folio("205", "UUID No encontrado"), Again, False, "205"),
    ("UUID No Encontrado (status)", _status(f"UUID: {UUID} No Encontrado"), Again, False, "205"),
    ("1308 demo certificate", _folio("1308", "Certificado revocado"), Again, False, "1308"),
    ("not cancelable", _folio("no_cancelable", "El UUID contiene CFDI relacionados"), Refused,
     None, "NO_CANCELABLE"),
    ("203 not the emisor's", _folio("203", "No corresponde el RFC del Emisor"), Refused, None, "203"),
    ("302 bad seal", _status("302"), Refused, None, "302"),
    ("304 our cancel CSD expired", _status("304"), Refused, None, "304"),
    ("798 a previous request", _status("798"), Refused, None, "798"),
    ("an unknown text", _status("Motivo cancelación es 01, FolioSustitucion requerido."), Refused,
     None, "MOTIVO"),
    ("708 SAT unreachable", _status("708"), Again, True, "708"),
    ("708 per folio", _folio("708", "No se pudo conectar al SAT"), Again, True, "708"),
    ("300 SAT authentication", _status("300"), Again, True, "300"),
    ("718 out of credits", _status("718"), Hold, ACCOUNT_KEY, "718"),
    ("bad credentials (text)", _status("Invalid Username or Password"), Hold, ACCOUNT_KEY, "300"),
    ("702 RFC not in the account", _status("702"), Hold, emisor_key(RFC), "702"),
    ("no active certificate (text)",
     _status(f"Error: Emisor {RFC} no tiene certificado 3000 activo asignado"), Hold,
     emisor_key(RFC), "720"),
]


@pytest.mark.parametrize(("result", "verdict_type", "detail", "code"),
                         [row[1:] for row in ANSWERS], ids=[row[0] for row in ANSWERS])
def test_answers_are_sorted_by_fault_scope(result: CancelResult, verdict_type: type,
                                           detail: object, code: str | None) -> None:
    verdict = judge_cancel(result, UUID, RFC)
    assert type(verdict) is verdict_type, verdict
    if isinstance(verdict, Again):
        assert verdict.outage is detail and not verdict.ambiguous
    if isinstance(verdict, Hold):
        assert verdict.key == detail and verdict.opens and verdict.cause
    if code is not None:
        assert not isinstance(verdict, Accepted) and verdict.errors[0]["code"] == code


# failure -> verdict type, ambiguous, breaker (Hold)
FAILURES = [
    ("connection refused", FinkokNotSent("refused"), Again, False, None),
    ("read timeout", FinkokAmbiguous("timed out"), Again, True, None),
    ("dropped connection", FinkokAmbiguous("reset"), Again, True, None),
    ("HTTP 503", FinkokAmbiguous("503", status=503), Again, True, None),
    ("SOAP fault", FinkokFault("fault", code="senv:Server"), Again, True, None),
    ("a proxy's 404", FinkokBadResponse("404", status=404), Hold, False, ACCOUNT_KEY),
]


@pytest.mark.parametrize(("exc", "verdict_type", "ambiguous", "key"),
                         [row[1:] for row in FAILURES], ids=[row[0] for row in FAILURES])
def test_failures_are_outages_never_refusals(exc: Exception, verdict_type: type, ambiguous: bool,
                                             key: str | None) -> None:
    verdict = judge_failure(exc)  # type: ignore[arg-type]
    assert type(verdict) is verdict_type and verdict.ambiguous is ambiguous
    if isinstance(verdict, Again):
        assert verdict.outage
    else:
        assert verdict.key == key and verdict.opens and "HTTP 404" in verdict.cause
    # a failed lookup teaches nothing: the row stays exactly as unsure as it was
    assert judge_failure(exc, ambiguous=True).ambiguous is True  # type: ignore[arg-type]


def test_lookup_errors_hold_only_for_account_or_emisor() -> None:
    held = judge_lookup_error("Invalid username or password", RFC)
    assert held is not None and held.key == ACCOUNT_KEY
    assert judge_lookup_error("There is not a Cancellation receipt with that info", RFC) is None
    assert judge_lookup_error(None, RFC) is None


ERR = [{"code": "x", "message": "m", "kind": "k"}]
ACUSE = Found("in_process", b"<Acuse/>", "F", SatStatusResult(None, "Vigente", None, "En proceso",
                                                              None, None, None))
HOLD_718 = Hold(ACCOUNT_KEY, "718", "out of credits", ERR, opens=True)
HOLD_AT_CLAIM = Hold(SERVICE_KEY, "708", "SAT unavailable", ERR, opens=False)
LAG, LAG_AMBIGUOUS = Again(False, ERR), Again(True, ERR)
OUTAGE, OUTAGE_AMBIGUOUS = Again(False, ERR, outage=True), Again(True, ERR, outage=True)

# verdict, attempts, row's must_check, open breaker -> edge, attempts written, must_check
DECISIONS: list[tuple[str, Verdict | Found, int, bool, str | None, str, int | None, bool]] = [
    ("found cancelled", Found("cancelled", None, None, None), 2, True, None, "settled", None, False),
    ("found in process", ACUSE, 2, True, None, "sent", None, False),
    ("accepted", Accepted("201", b"<Acuse/>", "F"), 1, False, None, "sent", None, False),
    ("refused", Refused(ERR), 1, True, None, "refused", None, False),
    ("account answer", HOLD_718, 2, False, ACCOUNT_KEY, "hold", 1, False),
    ("open at the claim, no call", HOLD_AT_CLAIM, 1, True, SERVICE_KEY, "hold", 0, True),
    ("outage, breaker open", OUTAGE, 2, False, SERVICE_KEY, "hold", 1, False),
    ("outage unanswered, breaker open", OUTAGE_AMBIGUOUS, 2, False, SERVICE_KEY, "hold", 1, True),
    ("outage, breaker closed", OUTAGE, 1, False, None, "retry", 0, False),
    ("outage unanswered, breaker closed", OUTAGE_AMBIGUOUS, 1, False, None, "retry", 0, True),
    ("outage past the budget: still no refusal", OUTAGE_AMBIGUOUS, MAX + 5, False, None, "retry",
     MAX + 4, True),
    ("lag, attempts left", LAG, 1, False, None, "retry", None, False),
    ("lag unanswered, attempts left", LAG_AMBIGUOUS, 2, False, None, "retry", None, True),
    ("lag, after an unanswered one", LAG, 2, True, None, "retry", None, True),
    ("lag, attempts exhausted", LAG, MAX, False, None, "refused", None, False),
    ("lag unanswered, exhausted", LAG_AMBIGUOUS, MAX, False, None, "refused", None, True),
]


@pytest.mark.parametrize(("verdict", "attempts", "must_check", "open_key", "edge", "written",
                          "check"), [row[1:] for row in DECISIONS], ids=[row[0] for row in DECISIONS])
def test_decision_table(verdict: Verdict | Found, attempts: int, must_check: bool,
                        open_key: str | None, edge: str, written: int | None, check: bool) -> None:
    settings = load_settings(cancel_max_attempts=MAX, finkok_read_timeout_s=30,
                             stamp_backoff_base_s=1, stamp_backoff_max_s=8, cancel_poll_base_s=60)
    now = utcnow()
    d = decide(verdict, attempts=attempts, must_check=must_check, open_key=open_key,
               settings=settings, now=now, rng=random.Random(1))
    assert d.edge.name == edge
    assert d.values.get("attempts") == written  # None: the claim's count stands
    assert d.values["must_check"] is check
    if edge == "hold":
        assert d.values["hold_key"] == open_key and d.values["next_attempt_at"] is None
    else:
        assert d.values["hold_key"] is None
    if edge == "retry":
        assert d.retry_in_s is not None
        assert d.values["next_attempt_at"] == now + timedelta(seconds=d.retry_in_s)
        # an unanswered call may still land at Finkok: wait at least one read timeout
        assert (d.retry_in_s >= 30) is verdict.ambiguous  # type: ignore[union-attr]
    else:
        assert d.retry_in_s is None
    if edge == "settled":
        assert d.values["cancelled_at"] == now and d.values["next_attempt_at"] is None
