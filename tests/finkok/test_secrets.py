"""The Finkok password never shows: not in DEBUG logs (zeep logs whole envelopes there),
not in exception texts or tracebacks, not in reprs."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import pytest

from worker.finkok import FinkokClient, FinkokError
from worker.redaction import MASK, redact
from worker.sandbox.finkok import FinkokSandbox

from .conftest import PASSWORD, USERNAME

Invoice = Callable[..., bytes]


def test_password_absent_from_debug_logs_errors_and_reprs(
    sandbox: FinkokSandbox, invoice: Invoice, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("zeep", "zeep.transports", "urllib3", "requests", "worker"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = FinkokClient(sandbox.url, USERNAME, PASSWORD, connect_timeout_s=0.5, read_timeout_s=0.3)
    wrong = FinkokClient(sandbox.url, USERNAME, PASSWORD + "-wrong", read_timeout_s=0.3)
    texts: list[str] = [repr(client), str(client), repr(wrong)]

    xml = invoice()
    client.stamp(xml)
    client.stamp(xml)  # 307 with the previous XML
    wrong.stamp(invoice())
    client.registration_add("EKU9003173C9", cer=b"CER", key=PASSWORD.encode(), passphrase=PASSWORD)
    errors: list[FinkokError] = []
    for switches in ({"fault_rate": 1.0}, {"drop_rate": 1.0}, {"hang_rate": 1.0, "hang_s": 2.0}):
        sandbox.configure(fault_rate=0.0, drop_rate=0.0, hang_rate=0.0)
        sandbox.configure(**switches)
        with pytest.raises(FinkokError) as info:
            client.stamp(invoice())
        errors.append(info.value)
    for exc in errors:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc))]

    envelope_logs = [rec.getMessage() for rec in caplog.records if rec.name == "zeep.transports"]
    assert any("HTTP Post to" in m and "<ns0:password>" in m for m in envelope_logs), (
        "zeep logged no request envelope: the test would prove nothing")
    assert any(f"<ns0:password>{MASK}</ns0:password>" in m for m in envelope_logs)
    assert any(f"<ns0:reseller_password>{MASK}</ns0:reseller_password>" in m for m in envelope_logs)
    texts += [rec.getMessage() for rec in caplog.records] + [caplog.text]
    for text in texts:
        assert PASSWORD not in text
    assert "<ns0:username>" in caplog.text  # the redaction is targeted, not a blanket wipe
    client.close()
    wrong.close()


def test_redact_masks_credential_elements_and_registered_secrets() -> None:
    FinkokClient("http://127.0.0.1:9", "u", "another-Secret-123")
    text = ('<ns0:password>p1</ns0:password><password>p2</password>'
            '<ns1:passphrase>p3</ns1:passphrase><ns0:key>PRIVATEKEY</ns0:key> another-Secret-123')
    clean = redact(text)
    for secret in ("p1<", "p2<", "p3<", "PRIVATEKEY", "another-Secret-123"):
        assert secret not in clean
    assert clean.count(MASK) >= 5  # other tests' registered secrets may add more


def test_a_secret_inside_a_longer_one_never_leaves_the_longer_ones_tail() -> None:
    """Secrets are masked longest first, whatever order they were registered in; a text
    with no ``<`` and no secret comes back as it was."""
    from worker.redaction import register_secret

    register_secret("shared-prefix-9f3")
    register_secret("shared-prefix-9f3-and-more-7c1")
    clean = redact("sent shared-prefix-9f3-and-more-7c1 then shared-prefix-9f3.")
    assert clean == f"sent {MASK} then {MASK}."
    plain = "invoice 5B13C295 -> stamped (a > b)"
    assert redact(plain) == plain
