"""The local Finkok answers report_uuid, report_total and get_xml from its own ledger, in
the asked window of FechaTimbrado, and a stamp whose answer was dropped is in that ledger
like any other (the orphan only a reconciliation finds)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from worker.finkok import FinkokClient
from worker.finkok.errors import FinkokAmbiguous
from worker.sandbox.finkok import FinkokSandbox

EMISOR = "AAA010101AAA"
FMT = "%Y-%m-%dT%H:%M:%S"


def _around(fecha: str, before_s: int, after_s: int) -> tuple[str, str]:
    t = dt.datetime.fromisoformat(fecha)
    return ((t + dt.timedelta(seconds=before_s)).strftime(FMT),
            (t + dt.timedelta(seconds=after_s)).strftime(FMT))


def test_reports_honour_the_window_and_the_type(client: FinkokClient,
                                                invoice: Callable[..., bytes]) -> None:
    first = client.stamp(invoice())
    assert first.fecha
    inside = _around(first.fecha, -60, 60)
    before = _around(first.fecha, -7200, -3600)
    assert [e.uuid for e in client.report_uuid(EMISOR, *inside).invoices] == [first.uuid]
    assert client.report_uuid(EMISOR, *before).invoices == ()
    assert client.report_uuid(EMISOR, *inside, invoice_type="R").invoices == ()
    # both ends included, to the second
    assert len(client.report_uuid(EMISOR, first.fecha, first.fecha).invoices) == 1
    assert client.report_total(EMISOR, *inside).entries[0].total == 1
    assert client.report_total(EMISOR, *before).entries[0].total == 0
    assert client.report_uuid("EKU9003173C9", *inside).invoices == ()
    assert "date_from" in (client.report_uuid(EMISOR, "yesterday", inside[1]).error or "")


def test_a_dropped_stamp_is_in_the_ledger(sandbox: FinkokSandbox, client: FinkokClient,
                                          invoice: Callable[..., bytes]) -> None:
    sandbox.configure(drop_rate=1.0)  # stamps, then closes the connection unanswered
    xml = invoice()
    with pytest.raises(FinkokAmbiguous):
        client.stamp(xml)
    sandbox.configure(drop_rate=0.0)
    [entry] = client.report_uuid(EMISOR, "2020-01-01T00:00:00", "2099-01-01T00:00:00").invoices
    got = client.get_xml(entry.uuid or "", EMISOR)
    assert got.error is None and got.xml and entry.uuid in got.xml
    assert client.stamped(xml).uuid == entry.uuid
    assert sandbox.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]
