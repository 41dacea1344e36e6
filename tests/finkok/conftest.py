"""Fixtures for the Finkok client and sandbox tests: a real sandbox on 127.0.0.1:0,
a client with short timeouts, and freshly sealed invoices from the project's factory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from worker.cfdi.factory import build_invoice
from worker.finkok.client import FinkokClient
from worker.sandbox.finkok import FinkokSandbox

USERNAME = "sandbox@example.com"
PASSWORD = "s3cret-Finkok-pw!"

_folios = itertools.count(1)


@pytest.fixture
def sandbox() -> Iterator[FinkokSandbox]:
    with FinkokSandbox(username=USERNAME, password=PASSWORD, seed=7) as sb:
        yield sb


@pytest.fixture
def client(sandbox: FinkokSandbox) -> Iterator[FinkokClient]:
    with FinkokClient(
        sandbox.url, USERNAME, PASSWORD, connect_timeout_s=0.5, read_timeout_s=2.0
    ) as c:
        yield c


@pytest.fixture
def invoice() -> Callable[..., bytes]:
    """A new sealed CFDI per call (distinct Folio, hence distinct Sello)."""

    def make(**kwargs: object) -> bytes:
        kwargs.setdefault("folio", f"T{next(_folios)}")
        return build_invoice(**kwargs)  # type: ignore[arg-type]

    return make
