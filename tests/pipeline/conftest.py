from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.finkok.client import FinkokClient
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings, load_settings


@pytest.fixture(scope="session")
def finkok_sandbox() -> Iterator[FinkokSandbox]:
    with FinkokSandbox() as sandbox:
        yield sandbox


def restore_defaults(sandbox: FinkokSandbox) -> None:
    """Forget every document and put every switch back to its default."""
    from dataclasses import asdict

    from worker.sandbox.finkok.config import SandboxConfig

    defaults = asdict(SandboxConfig())
    defaults.pop("username"), defaults.pop("password")
    sandbox.configure(**defaults)
    sandbox.reset()


@pytest.fixture()
def finkok(finkok_sandbox: FinkokSandbox) -> Iterator[FinkokSandbox]:
    restore_defaults(finkok_sandbox)
    yield finkok_sandbox
    restore_defaults(finkok_sandbox)


@pytest.fixture()
def settings(finkok: FinkokSandbox, db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        finkok_environment=finkok.url,
        finkok_read_timeout_s=1.0,
        stamp_backoff_base_s=0.01,
        stamp_backoff_max_s=0.05,
        stamp_max_attempts=4,
        stamped_lookup_max_attempts=3,
        pending_poll_interval_s=0.01,
    )


@pytest.fixture()
def client(settings: Settings) -> Iterator[FinkokClient]:
    with FinkokClient.from_settings(settings) as c:
        yield c
