"""`billing health`: one verdict per component, each naming what failed and what to check.

Components, in order (``COMPONENTS``):

* ``database``: answers, and its schema is at the code's Alembic head (worker.db.migrate);
* ``broker``: accepts a connection (BILLING_BROKER_URL);
* ``workers``: at least one Celery worker answers ``ping`` within the timeout;
* ``beat``: the sweeper's heartbeat (table ``heartbeats``) is younger than
  ``beat_stale_intervals`` sweep intervals, so the beat schedules and a worker runs it;
* ``finkok``: an authenticated ``datetime`` call answers without error (reachable, and the
  username and password are accepted);
* ``sif``: every SIF base URL (default and per-empresa overrides) gives an HTTP answer
  below 500 to a GET (no secret is sent: SIF has no cheap authenticated call; a wrong
  secret shows as 401s on deliveries, see the alerts);
* ``credits``: no RFC's last ``report_credit`` reading is below ``credits_min``.

Every check is bounded by a timeout and never raises; the checks run in parallel. Texts
never carry a secret: each is scrubbed of the configured passwords and secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from worker.settings import Settings, mask_url_password

if TYPE_CHECKING:  # imported where used: `billing --help` loads no SQLAlchemy
    from sqlalchemy import Engine

COMPONENTS = ("database", "broker", "workers", "beat", "finkok", "sif", "credits")
DEFAULT_TIMEOUT_S = 3.0
MASK = "********"
# The embedded sandbox defaults of worker.settings: written in the source, not secrets
# (and "sandbox" is part of the default username, which scrubbing would mangle).
PUBLIC_DEFAULTS = frozenset({"sandbox", "sandbox-secret", "change-me"})


@dataclass(frozen=True)
class Check:
    """One component's verdict. ``setting`` names what to look at when it failed."""

    component: str
    ok: bool
    detail: str
    setting: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HealthInputError(ValueError):
    """An unknown component in --only/--skip."""


def select_components(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[str]:
    """The components to check, in ``COMPONENTS`` order; unknown names are refused."""
    only, skip = [c for c in only if c], [c for c in skip if c]
    unknown = sorted((set(only) | set(skip)) - set(COMPONENTS))
    if unknown:
        raise HealthInputError(f"unknown component(s) {', '.join(unknown)}: expected some of "
                               f"{', '.join(COMPONENTS)}")
    return [c for c in COMPONENTS if (not only or c in only) and c not in skip]


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value, to scrub from texts."""
    values = [settings.finkok_password.get_secret_value(), settings.sif_secret.get_secret_value(),
              settings.flower_password.get_secret_value()]
    values += [v["secret"] for v in settings.sif_overrides.values() if "secret" in v]
    for url in (settings.database_url, settings.broker_url):
        password = urlsplit(url).password if "://" in url else None
        if password:
            values.append(password)
    return [v for v in values if v and len(v) >= 3 and v not in PUBLIC_DEFAULTS]


def scrub(message: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, MASK)
    return message


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0]}" if text_ else type(exc).__name__


# --- the checks ----------------------------------------------------------------------------


def check_database(settings: Settings, engine: Engine) -> Check:
    from alembic.migration import MigrationContext
    from sqlalchemy import text

    from worker.db.migrate import current_head

    where = mask_url_password(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revision = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        return Check("database", False, f"{where} not reachable ({_first_line(exc)})",
                     "BILLING_DATABASE_URL")
    head = current_head()
    if revision != head:
        return Check("database", False, f"{where} is at revision {revision or '(empty)'}, the "
                     f"code's head is {head}: run `billing db upgrade`", "BILLING_DATABASE_URL")
    return Check("database", True, f"{where} at revision {revision} (head)")


def check_broker(settings: Settings, celery: Any, timeout_s: float) -> Check:
    from worker.celery_app import connect_once

    where = mask_url_password(settings.broker_url)
    try:
        connect_once(celery, timeout_s)
    except Exception as exc:
        return Check("broker", False, f"{where} not reachable ({_first_line(exc)})",
                     "BILLING_BROKER_URL")
    return Check("broker", True, f"{where} accepts connections")


def check_workers(settings: Settings, celery: Any, timeout_s: float) -> Check:
    where = mask_url_password(settings.broker_url)
    try:
        replies = celery.control.ping(timeout=timeout_s) or []
    except Exception as exc:
        return Check("workers", False, f"ping through {where} failed ({_first_line(exc)})",
                     "BILLING_BROKER_URL")
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return Check("workers", False, f"no worker answered a ping within {timeout_s:g} s on "
                     f"{where}: is `billing worker` running on this broker?", "BILLING_BROKER_URL")
    return Check("workers", True, f"{len(names)} answered ping: {', '.join(names)}")


def check_beat(settings: Settings, engine: Engine, now: datetime) -> Check:
    from sqlalchemy.orm import Session

    from worker.ops.heartbeats import SWEEP, last_beats

    hint = "is `billing beat` running, with a worker on the maintenance queue?"
    setting = "BILLING_SWEEP_INTERVAL_S"
    try:
        with Session(engine) as session:
            row = last_beats(session).get(SWEEP)
    except Exception as exc:
        return Check("beat", False, f"heartbeats not readable ({_first_line(exc)})",
                     "BILLING_DATABASE_URL")
    if row is None:
        return Check("beat", False, f"no sweep recorded yet: {hint}", setting)
    interval = row.interval_s or settings.sweep_interval_s
    age = max(0.0, (now - row.at).total_seconds())
    limit = settings.beat_stale_intervals * interval
    if age > limit:
        return Check("beat", False, f"last sweep {age:.0f} s ago, more than "
                     f"{settings.beat_stale_intervals:g} intervals of {interval:g} s: {hint}",
                     setting)
    return Check("beat", True, f"last sweep {age:.0f} s ago (every {interval:g} s)")


def check_finkok(settings: Settings, timeout_s: float) -> Check:
    from worker.finkok.client import FinkokClient
    from worker.finkok.errors import FinkokError

    try:
        base = settings.finkok_base_url
    except ValueError as exc:
        return Check("finkok", False, str(exc), "BILLING_FINKOK_ENVIRONMENT")
    account = f"Finkok at {base} as {settings.finkok_username}"
    try:
        with FinkokClient(base, settings.finkok_username, settings.finkok_password,
                          connect_timeout_s=min(settings.finkok_connect_timeout_s, timeout_s),
                          read_timeout_s=min(settings.finkok_read_timeout_s, timeout_s),
                          manifest_url=settings.finkok_manifest_url or None) as client:
            result = client.datetime()
    except FinkokError as exc:
        return Check("finkok", False, f"{account}: no answer ({_first_line(exc)})",
                     "BILLING_FINKOK_ENVIRONMENT")
    except Exception as exc:  # a broken WSDL/endpoint answer is still a Finkok problem
        return Check("finkok", False, f"{account}: {_first_line(exc)}",
                     "BILLING_FINKOK_ENVIRONMENT")
    if result.error:
        return Check("finkok", False, f"{account}: refused ({result.error})",
                     "BILLING_FINKOK_USERNAME, BILLING_FINKOK_PASSWORD")
    return Check("finkok", True, f"{account}: credentials accepted (server time {result.datetime})")


def sif_base_urls(settings: Settings) -> list[tuple[str, str]]:
    """(base URL, the setting that names it): the default and each distinct override."""
    out = [(settings.sif_base_url.rstrip("/"), "BILLING_SIF_BASE_URL")]
    for empresa, values in sorted(settings.sif_overrides.items()):
        url = values.get("base_url", "").rstrip("/")
        if url and url not in [u for u, _ in out]:
            out.append((url, f"BILLING_SIF_OVERRIDES[{empresa}].base_url"))
    return out


def check_sif(settings: Settings, timeout_s: float) -> Check:
    import httpx

    from worker.sif.client import tls_context

    answers: list[str] = []
    with httpx.Client(verify=tls_context(), timeout=timeout_s, follow_redirects=False) as http:
        for url, setting in sif_base_urls(settings):
            try:
                status = http.get(url).status_code
            except httpx.HTTPError as exc:
                return Check("sif", False, f"SIF at {url} not reachable ({_first_line(exc)})",
                             setting)
            if status >= 500:
                return Check("sif", False, f"SIF at {url} answered HTTP {status}", setting)
            answers.append(f"{url} (HTTP {status})")
    return Check("sif", True, "answers: " + ", ".join(answers))


def check_credits(settings: Settings, engine: Engine, now: datetime) -> Check:
    from sqlalchemy.orm import Session

    from worker.ops.credits import last_readings

    try:
        with Session(engine) as session:
            readings = last_readings(session)
    except Exception as exc:
        return Check("credits", False, f"credit readings not readable ({_first_line(exc)})",
                     "BILLING_DATABASE_URL")
    low = [r for r in readings if r.credits is not None and r.credits < settings.credits_min]
    if low:
        listed = ", ".join(f"{r.taxpayer_id} has {r.credits}" for r in low)
        return Check("credits", False, f"{listed} (below {settings.credits_min}): buy stamps",
                     "BILLING_CREDITS_MIN")
    counted = [f"{r.taxpayer_id} {r.credits}" for r in readings if r.credits is not None]
    notes = [f"last poll failed for {r.taxpayer_id}" for r in readings if r.error]
    stale = 3 * settings.credits_poll_interval_s
    notes += [f"{r.taxpayer_id} last polled {(now - r.polled_at).total_seconds():.0f} s ago"
              for r in readings if (now - r.polled_at).total_seconds() > stale]
    if not readings:
        return Check("credits", True, "no reading yet (the beat's poll_credits stores them)")
    detail = ", ".join(counted) if counted else "no prepaid RFC (on-demand accounts)"
    return Check("credits", True, "; ".join([detail, *notes]))


# --- running them --------------------------------------------------------------------------


def run_checks(settings: Settings, components: Iterable[str], *,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """Run the named checks in parallel; results in ``COMPONENTS`` order, secrets scrubbed."""
    import worker.finkok.client  # noqa: F401 - imported here, not by two threads at once
    import worker.ops.credits  # noqa: F401
    import worker.sif.client  # noqa: F401
    from worker.db.models import utcnow
    from worker.db.session import create_db_engine

    wanted = [c for c in COMPONENTS if c in set(components)]
    now = utcnow()
    engine: Engine | None = None
    celery: Any = None
    if {"database", "beat", "credits"} & set(wanted):
        engine = create_db_engine(settings.database_url, pool_size=2)
        if engine.dialect.name == "postgresql":
            engine.dispose()
            engine = create_db_engine(_with_connect_timeout(settings.database_url, timeout_s),
                                      pool_size=2)
    if {"broker", "workers"} & set(wanted):
        from worker.celery_app import create_app

        celery = create_app(settings)
    jobs: dict[str, Callable[[], Check]] = {
        "database": lambda: check_database(settings, engine),  # type: ignore[arg-type]
        "broker": lambda: check_broker(settings, celery, timeout_s),
        "workers": lambda: check_workers(settings, celery, timeout_s),
        "beat": lambda: check_beat(settings, engine, now),  # type: ignore[arg-type]
        "finkok": lambda: check_finkok(settings, timeout_s),
        "sif": lambda: check_sif(settings, timeout_s),
        "credits": lambda: check_credits(settings, engine, now),  # type: ignore[arg-type]
    }
    secrets = secrets_of(settings)
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
            futures = {c: pool.submit(_guarded, c, jobs[c]) for c in wanted}
            results = [futures[c].result() for c in wanted]
    finally:
        if engine is not None:
            engine.dispose()
    return [Check(r.component, r.ok, scrub(r.detail, secrets), r.setting) for r in results]


def _guarded(component: str, job: Callable[[], Check]) -> Check:
    try:
        return job()
    except Exception as exc:  # a check never takes the command down
        return Check(component, False, f"check failed: {_first_line(exc)}")


def _with_connect_timeout(url: str, timeout_s: float) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.update_query_dict({"connect_timeout": str(max(1, int(timeout_s)))}) \
        .render_as_string(hide_password=False)
