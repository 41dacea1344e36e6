"""A real uvicorn serving the API on 127.0.0.1 (port 0) over the test database.

One server per database backend (session scope, SQLite and PostgreSQL through
``db_url``); each test asks for ``sessions`` too, so every table is emptied after it.
Publishing goes to a real filesystem broker in a temp folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.api import create_api
from worker.api.keys import ALL_EMPRESAS, Empresas, create_key
from worker.api.server import BackgroundServer
from worker.settings import Settings, load_settings

MAX_XML = 16 * 1024  # small, so size tests send little


@pytest.fixture(scope="session")
def api_settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        database_url=db_url,
        data_dir=tmp_path_factory.mktemp("api-var"),
        broker_url="filesystem://",
        max_xml_bytes=MAX_XML,
        environment="test",
        api_body_timeout_s=2.0,
    )


@pytest.fixture(scope="session")
def api_server(api_settings: Settings) -> Iterator[str]:
    with BackgroundServer(create_api(api_settings)) as base_url:
        yield base_url


@pytest.fixture()
def client(api_server: str, sessions: sessionmaker[Session]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server, timeout=10) as c:
        yield c


MakeKey = Callable[..., str]


@pytest.fixture()
def make_key(sessions: sessionmaker[Session]) -> MakeKey:
    def make(*empresas: str, name: str = "erp") -> str:
        scope: Empresas = ALL_EMPRESAS if empresas == (ALL_EMPRESAS,) else sorted(empresas)
        return create_key(sessions, name, scope).key

    return make


@pytest.fixture()
def key_e1(make_key: MakeKey) -> str:
    return make_key("E1")


@pytest.fixture()
def queued(api_settings: Settings) -> Callable[[], int]:
    """How many stamp messages sit in the filesystem broker right now."""
    folder: Path = api_settings.data_dir / "broker" / "queue"
    return lambda: len(list(folder.glob("*.msg")))
