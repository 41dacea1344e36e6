"""docker-compose.yml and the Dockerfile: the services, their order, and no inline secret.

Docker cannot run here; the file is parsed and checked, and `docker compose config -q`
(or docker-compose v1) validates it where the client is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
BILLING_SERVICES = ("migrate", "worker", "beat", "flower", "api", "finkok-sandbox", "sif-sandbox")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|DATABASE_URL", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env_file() -> dict[str, str]:
    values = {}
    for line in (ROOT / "config" / "docker.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` (the compose plugin) nor docker-compose is installed")
    res = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr


def test_every_service_and_its_command(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "rabbitmq", *BILLING_SERVICES}
    commands = {name: services[name]["command"] for name in BILLING_SERVICES}
    assert commands == {
        "migrate": ["billing", "db", "upgrade"],
        "worker": ["billing", "worker"],
        "beat": ["billing", "beat"],
        "flower": ["billing", "flower", "--address", "0.0.0.0", "--port", "5555"],
        "api": ["billing", "api", "--host", "0.0.0.0", "--port", "8000"],
        "finkok-sandbox": ["python", "-m", "worker.sandbox.finkok", "--host", "0.0.0.0",
                           "--port", "8701"],
        "sif-sandbox": ["python", "-m", "worker.sandbox.sif", "--host", "0.0.0.0", "--port", "8702"],
    }
    for name in BILLING_SERVICES:
        assert services[name]["env_file"] == "config/docker.env"
        assert services[name]["build"] == "."
    assert services["finkok-sandbox"]["profiles"] == ["sandbox"]
    assert services["sif-sandbox"]["profiles"] == ["sandbox"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert all("profiles" not in services[n]
               for n in set(services) - {"finkok-sandbox", "sif-sandbox", "rabbitmq"})
    assert services["migrate"]["restart"] == "no"  # one-shot


def test_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "beat", "api"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["flower"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    health = {name: " ".join(services[name]["healthcheck"]["test"])
              for name in ("worker", "beat", "api")}
    assert "billing health --only database,broker,workers" in health["worker"]
    assert "billing health --only database,broker,beat" in health["beat"]
    assert "billing health --only database,broker" in health["api"]
    assert not any(word in text for text in health.values() for word in ("finkok", "sif"))


def test_flower_and_api_only_on_loopback(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_no_secret_value_inline(compose: dict[str, Any]) -> None:
    """Secrets are files (compose `secrets:`), read through BILLING_*_FILE / *_FILE."""
    env = _env_file()
    for key, value in env.items():
        if SECRET_WORDS.search(key):
            assert key.endswith("_FILE") and value.startswith("/run/secrets/"), key
    for key in ("BILLING_DATABASE_URL_FILE", "BILLING_FINKOK_PASSWORD_FILE",
                "BILLING_SIF_SECRET_FILE"):
        assert key in env
    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", (ROOT / "config" / "docker.env").read_text())

    declared = compose["secrets"]
    assert set(declared) == {"postgres_password", "database_url", "finkok_password", "sif_secret",
                             "flower_password", "rabbitmq_password"}
    assert all(set(v) == {"file"} and v["file"].startswith("./secrets/") for v in declared.values())
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
        # every *_FILE the service reads is mounted in it
        wanted = {v.rsplit("/", 1)[1] for k, v in {**env, **environment}.items()
                  if k.endswith("_FILE")} if name not in ("postgres", "redis", "rabbitmq") else set()
        mounted = set(service.get("secrets", []))
        assert wanted <= mounted, (name, wanted - mounted)
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == \
        "/run/secrets/postgres_password"
    assert "flower_password" in compose["services"]["flower"]["secrets"]
    assert "flower_password" not in compose["services"]["worker"]["secrets"]
    # RabbitMQ's password: read from its secret file at start, never in the environment
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["secrets"] == ["rabbitmq_password"]
    assert "cat /run/secrets/rabbitmq_password" in " ".join(rabbitmq["command"])
    assert not any("PASS" in key for key in rabbitmq["environment"])


def test_rabbitmq_profile(compose: dict[str, Any]) -> None:
    """The broker the README's "Which broker" section describes: healthy when it answers,
    its data on a volume, consumer_timeout stated, no port published."""
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:")
    assert rabbitmq["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    assert rabbitmq["volumes"] == ["rabbitmqdata:/var/lib/rabbitmq"]
    assert "consumer_timeout 1800000" in rabbitmq["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert "ports" not in rabbitmq


def test_dockerfile_is_conventional() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "RUN pip install ." in text
    assert re.search(r"^USER billing$", text, re.MULTILINE)
    assert "BILLING_MIGRATIONS_DIR=/app/migrations" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"secrets", ".git", ".venv", "var"} <= set(ignored)
