"""Building the client from settings: endpoints, timeouts, manifest host, masking."""

from __future__ import annotations

import pytest

from worker.finkok import FinkokClient, Kind
from worker.finkok.services import SERVICES
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import load_settings

from .conftest import PASSWORD, USERNAME


def test_from_settings_against_the_sandbox(sandbox: FinkokSandbox) -> None:
    settings = load_settings(
        finkok_environment="sandbox", finkok_sandbox_url=sandbox.url, finkok_username=USERNAME,
        finkok_password=PASSWORD, finkok_connect_timeout_s=0.7, finkok_read_timeout_s=3.5,
    )
    client = FinkokClient.from_settings(settings)
    assert (client.base_url, client.manifest_url) == (sandbox.url, sandbox.url)
    assert (client.connect_timeout_s, client.read_timeout_s) == (0.7, 3.5)
    assert client._transport.operation_timeout == (0.7, 3.5)
    assert PASSWORD not in repr(client) and "********" in repr(client)
    assert client.datetime().error is None
    assert client.manifest_get_contracts("S", "EKU9003173C9", "N", "A", "e@x").success is True
    client.close()


@pytest.mark.parametrize(
    "env,base,manifest",
    [
        ("demo", "https://demo-facturacion.finkok.com", "https://manifiesto.cfdiquadrum.com.mx:8008"),
        ("production", "https://facturacion.finkok.com", "https://manifiesto.cfdiquadrum.com.mx"),
    ],
)
def test_real_hosts(env: str, base: str, manifest: str) -> None:
    client = FinkokClient.from_settings(load_settings(finkok_environment=env))
    assert (client.base_url, client.manifest_url) == (base, manifest)
    assert client.address(SERVICES["stamp"]) == f"{base}/servicios/soap/stamp"
    assert client.address(SERVICES["firmar"]) == f"{manifest}/servicios/soap/firmar"
    override = FinkokClient.from_settings(
        load_settings(finkok_environment=env, finkok_manifest_url="https://manifest.example")
    )
    assert override.address(SERVICES["firmar"]) == "https://manifest.example/servicios/soap/firmar"


def test_zeep_clients_are_built_once_per_service(client: FinkokClient) -> None:
    first = client.zeep_client("stamp")
    client.datetime()
    assert client.zeep_client("stamp") is first
    other = FinkokClient("http://127.0.0.1:9", "u", "client-config-pw")
    # a new FinkokClient gets its own zeep client, on the same parsed WSDL document
    assert other.zeep_client("stamp") is not first
    assert other.zeep_client("stamp").wsdl is first.wsdl


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        FinkokClient("ftp://x", "u", "p")


def test_stamped_of_something_that_is_not_a_cfdi_is_705(client: FinkokClient) -> None:
    res = client.stamped(b"<not-a-cfdi/>")
    assert res.codes == ("705",) and res.kind is Kind.PERMANENT
