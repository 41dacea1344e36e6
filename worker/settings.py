"""One typed settings object for the whole worker.

Read from environment variables prefixed ``BILLING_`` and, optionally, from an env file
(``BILLING_ENV_FILE``, default ``config/sandbox.env`` when present). Any secret can instead
come from a file named by ``BILLING_<NAME>_FILE`` (Docker/Kubernetes secrets): the file's
content, stripped, is the value.

The defaults are the embedded sandbox: SQLite and a filesystem broker in ``./var``, the
local Finkok and SIF sandboxes, no credentials. Nothing here needs a server.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "BILLING_"

FINKOK_HOSTS = {
    "demo": "https://demo-facturacion.finkok.com",
    "production": "https://facturacion.finkok.com",
}


DEFAULT_FLOWER_PASSWORD = "change-me"  # `billing flower` says so when it is in use


class SettingError(ValueError):
    """A setting that cannot be used; ``setting`` names the variable to check. The message
    names the variable (and a file path), never a value: values may be secrets."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class SecretFilesSource(PydanticBaseSettingsSource):
    """``BILLING_X_FILE=/run/secrets/x`` sets field ``x`` from that file's content."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:  # name the variable and path, never the content
            variable = f"{ENV_PREFIX}{field_name.upper()}_FILE"
            raise SettingError(variable, f"{variable}={path}: cannot read ({exc.strerror})") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _default_env_file() -> str | None:
    explicit = os.environ.get(f"{ENV_PREFIX}ENV_FILE")
    if explicit is not None:
        return explicit or None
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    environment: Literal["sandbox", "docker", "production", "test"] = "sandbox"
    data_dir: Path = Path("var")

    # --- storage and queue ------------------------------------------------------------
    database_url: str = ""  # empty: sqlite:///<data_dir>/billing.db
    database_pool_size: int = 10
    broker_url: str = ""  # empty: filesystem broker under <data_dir>/broker
    # Redis redelivers any message not acked within this many seconds. Every countdown and
    # every task run must stay far below it (long waits live in next_attempt_at instead).
    broker_visibility_timeout_s: int = 2 * 3600
    # Redis: a prefix for every key (several deployments or test runs on one Redis).
    broker_key_prefix: str = ""

    # --- intake -----------------------------------------------------------------------
    # The HTTP API answers 408 when a request body takes longer than this to arrive.
    api_body_timeout_s: float = Field(30.0, gt=0)
    max_xml_bytes: int = Field(2 * 1024 * 1024, gt=0)

    # --- Finkok -----------------------------------------------------------------------
    # "sandbox" (local sandbox at finkok_sandbox_url), "demo", "production", or a base URL.
    finkok_environment: str = "sandbox"
    finkok_sandbox_url: str = "http://127.0.0.1:8701"
    finkok_username: str = "sandbox@example.com"
    finkok_password: SecretStr = SecretStr("sandbox")
    finkok_connect_timeout_s: float = 5.0
    finkok_read_timeout_s: float = 60.0
    # Manifest (contracts) service host; empty: derived from the environment (demo and
    # production use manifiesto.cfdiquadrum.com.mx, the sandbox serves it itself).
    finkok_manifest_url: str = ""

    # --- stamping pipeline ------------------------------------------------------------
    stamp_max_attempts: int = Field(8, ge=1)
    stamp_backoff_base_s: float = Field(2.0, gt=0)
    stamp_backoff_max_s: float = Field(600.0, gt=0)
    stamped_lookup_max_attempts: int = Field(6, ge=1)  # 307 without xml -> `stamped`
    claim_lease_s: int = Field(300, gt=0)
    pending_poll_interval_s: float = Field(60.0, gt=0)
    sweep_interval_s: float = Field(15.0, gt=0)
    # The sweeper does not re-ring a row it rang less than this long ago (its doorbell may
    # still be queued behind a backlog); a lost doorbell is recovered after at most this.
    sweep_rering_after_s: float = Field(60.0, gt=0)
    # "stamp": report OK to SIF as soon as Finkok stamps; "sat": only once query_pending
    # says the CFDI reached SAT (status F).
    sif_ok_at: Literal["stamp", "sat"] = "stamp"

    # --- outages: breakers and SAT's window (worker/db/breakers.py, invoices/holds.py) ---
    # An open breaker is probed with one real call after this long, then on a doubling
    # interval (up to 8 times this).
    breaker_probe_s: float = Field(30.0, gt=0)
    # This many service failures (refused, timeouts, 5xx, 708...) without a success in
    # between, within the window, open the Finkok service breaker (or a SIF target's).
    breaker_service_threshold: int = Field(5, ge=1)
    breaker_service_window_s: float = Field(300.0, gt=0)
    # Held rows released per sweep once their breaker closed (no thundering herd).
    hold_release_per_sweep: int = Field(50, ge=1)
    # An invoice still unstamped this long before SAT's 72-hour window closes fails with a
    # NOK that says so (the ERP re-seals it with a new Fecha).
    sat_window_margin_s: float = Field(3600.0, ge=0)

    # --- SIF --------------------------------------------------------------------------
    sif_base_url: str = "http://127.0.0.1:8702/mcs/sif"
    sif_secret: SecretStr = SecretStr("sandbox-secret")
    sif_generator_id: str = "SIF_SANDBOX"
    sif_type: str = "S"  # the written agreement: always S (see spec, decision 1)
    sif_connect_timeout_s: float = 5.0
    sif_read_timeout_s: float = 30.0
    # Per-empresaRefId overrides: {"<empresaRefId>": {"base_url": ..., "secret": ..., "generator_id": ...}}
    # (repr=False: these hold secrets; `masked()` shows them with the secret masked)
    sif_overrides: dict[str, dict[str, str]] = Field(default_factory=dict, repr=False)
    # The stamping process makes the first SIF delivery attempt itself, in a thread, right
    # after its commit (worker/invoices/first_delivery.py); false: always the notify task.
    sif_first_delivery: bool = True
    notify_max_attempts: int = Field(10, ge=1)
    notify_backoff_base_s: float = Field(5.0, gt=0)
    notify_backoff_max_s: float = Field(900.0, gt=0)
    notify_404_window_s: float = Field(6 * 3600.0, gt=0)
    # A notification fails as exhausted only after notify_max_attempts transient failures
    # AND this long since the first of them: a SIF outage of hours never drops an OK.
    notify_retry_budget_s: float = Field(3 * 86400.0, ge=0)

    # --- monitoring (metrics, alerts, `billing health`) ---------------------------------
    # How often the beat asks Finkok's report_credit for each RFC of credits_rfcs.
    credits_poll_interval_s: float = Field(900.0, gt=0)
    # Emisor RFCs whose credits to poll, comma-separated. Empty: the emisor RFCs of the
    # invoices created in the last 30 days (at most 20).
    credits_rfcs: str = ""
    # `billing health` fails when an RFC's last credit reading is below this.
    credits_min: int = Field(100, ge=0)
    # The beat counts as down after this many sweep intervals without a sweep.
    beat_stale_intervals: float = Field(4.0, gt=1)

    # --- operations -------------------------------------------------------------------
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr(DEFAULT_FLOWER_PASSWORD)
    log_json: bool = False
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFilesSource(settings_cls), dotenv_settings)

    @field_validator("sif_overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'billing.db').as_posix()}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        return self

    # --- derived values ---------------------------------------------------------------
    @property
    def broker_folder(self) -> Path:
        """Where the embedded filesystem broker keeps its messages."""
        return self.data_dir / "broker"

    @property
    def finkok_base_url(self) -> str:
        env = self.finkok_environment
        if env == "sandbox":
            return self.finkok_sandbox_url.rstrip("/")
        if env in FINKOK_HOSTS:
            return FINKOK_HOSTS[env]
        if env.startswith(("http://", "https://")):
            return env.rstrip("/")
        raise SettingError(
            "BILLING_FINKOK_ENVIRONMENT",
            f"BILLING_FINKOK_ENVIRONMENT={env!r}: expected sandbox, demo, production or a URL",
        )

    @property
    def credits_rfc_list(self) -> list[str]:
        """``credits_rfcs`` as upper-case RFCs, in order, without repeats."""
        out: list[str] = []
        for item in self.credits_rfcs.split(","):
            rfc = item.strip().upper()
            if rfc and rfc not in out:
                out.append(rfc)
        return out

    def masked(self) -> dict[str, Any]:
        """Every setting as printable values, secrets replaced by '********'."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name == "sif_overrides":
                value = {
                    k: {kk: ("********" if kk == "secret" else vv) for kk, vv in v.items()}
                    for k, v in value.items()
                }
            elif name in ("database_url", "broker_url"):
                value = mask_url_password(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    # --- printed invoice (PDF) --------------------------------------------------------
    # Per emisor RFC, what the PDF prints besides the CFDI: {"<RFC>": {"logo": "/path/logo.png",
    # "address": "Av. Reforma 1, Col. Centro\nCDMX, CP 06000"}} (BILLING_PDF_EMISORES as JSON;
    # both keys optional). The logo (PNG or JPEG) sits at the top left of page 1, at most
    # 40 x 18 mm; the address goes under the emisor's name ("\n" breaks lines). A logo that
    # cannot be read is left out of the PDF (and logged), never a failed PDF.
    pdf_emisores: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("pdf_emisores", mode="before")
    @classmethod
    def _parse_pdf_emisores(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("pdf_emisores")
    @classmethod
    def _check_pdf_emisores(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for rfc, entry in value.items():
            unknown = set(entry) - {"logo", "address"}
            if unknown:
                raise ValueError(
                    f"pdf_emisores[{rfc!r}]: unknown keys {sorted(unknown)} (expected logo, address)"
                )
        return {rfc.strip().upper(): entry for rfc, entry in value.items()}

    # --- reconciliation against Finkok's ledger (worker.ops.reconcile) ------------------
    # How often the beat runs `billing.reconcile`, and how far back each run looks: a
    # window longer than the interval overlaps the previous run's, so a stamp Finkok
    # reports late (or a run that failed) is still seen by the next one.
    reconcile_interval_s: float = Field(86400.0, gt=0)
    reconcile_window_s: float = Field(2 * 86400.0, gt=0)
    # Emisor RFCs to reconcile, comma-separated. Empty: the emisor RFCs of the invoices
    # created in the last 90 days (Finkok's get_xml reaches three months back).
    reconcile_rfcs: str = ""

    # --- intake pre-flight checks (worker.cfdi.preflight) ------------------------------
    # strict: refuse what Finkok would refuse (seal 302/303, Fecha 401, certificate 305,
    # receptor CFDI40157-40161); lenient: accept and record the finding; off: skip them.
    intake_checks: Literal["strict", "lenient", "off"] = "strict"

    # --- cancellation (worker.cancellations) ---------------------------------------------
    # The CSD that signs each emisor's cancellation requests, per RFC, as JSON:
    # {"<RFC>": {"cer": "/run/secrets/eku.cer", "key": "/run/secrets/eku.key",
    #  "password_file": "/run/secrets/eku.pass"}}: paths only, never the password itself (the
    # files are read when a request is signed; nothing of them reaches the database or a log).
    # "builtin:test-emisor" is the project's own test emisor (AAA010101AAA, the demo's), the
    # default, so cancellation works out of the box against the local Finkok.
    cancel_csds: dict[str, Any] = Field(
        default_factory=lambda: {"AAA010101AAA": "builtin:test-emisor"})
    cancel_max_attempts: int = Field(6, ge=1)  # sends before cancel_failed
    cancel_poll_base_s: float = Field(60.0, gt=0)  # get_sat_status backoff: base ...
    cancel_poll_max_s: float = Field(3600.0, gt=0)  # ... doubling up to this

    @field_validator("cancel_csds", mode="before")
    @classmethod
    def _parse_cancel_csds(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("cancel_csds")
    @classmethod
    def _check_cancel_csds(cls, value: dict[str, Any]) -> dict[str, Any]:
        for rfc, entry in value.items():
            if entry == "builtin:test-emisor":
                continue
            if not isinstance(entry, dict) or set(entry) != {"cer", "key", "password_file"}:
                raise ValueError(f"cancel_csds[{rfc!r}]: expected {{cer, key, password_file}} "
                                 "paths or \"builtin:test-emisor\"")
        return {rfc.strip().upper(): entry for rfc, entry in value.items()}


def mask_url_password(url: str) -> str:
    """postgresql://u:pw@h/db -> postgresql://u:********@h/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}"
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, the optional env file, and overrides."""
    env_file = _default_env_file()
    if env_file and not Path(env_file).is_file():
        raise SettingError(f"{ENV_PREFIX}ENV_FILE", f"BILLING_ENV_FILE={env_file}: no such file")
    return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Tests build their own with load_settings()."""
    return load_settings()
