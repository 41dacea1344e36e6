"""Infrastructure faults as one line for the operator: what failed, which setting to check.

The contract: :func:`describe` turns an exception that is an infrastructure fault (a
database down or unreachable, a database URL that is not one, a broker down, a port in
use, an unreadable secret file, invalid settings) into one line that names the setting to
check; any other exception (a bug) gets ``None`` and keeps its traceback. The line never
holds a secret: settings validation errors are rendered without their input values, URLs
with their passwords masked, and every secret the process knows is masked on top.

:class:`BillingGroup` is the `billing` command's click group: it prints that line and
exits 2 instead of a traceback, unless ``--debug`` (or ``BILLING_DEBUG=1``) asks for the
traceback. Only this module knows the exception types; commands just let them rise.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol

import typer
from typer.core import TyperGroup

EXIT_INFRA = 2
DEBUG_ENV = "BILLING_DEBUG"


class Fault(Exception):
    """An infrastructure fault already phrased for the operator (``setting``: what to check)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting

    def line(self) -> str:
        return f"{self} (check {self.setting})"


class _ContextChain(Protocol):
    """A typer Context and its parents (typed as click's base Context, vendored by typer)."""

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def parent(self) -> _ContextChain | None: ...


def debug_requested(ctx: _ContextChain | None = None) -> bool:
    """``--debug`` on the command line, or BILLING_DEBUG set to something true."""
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def describe(exc: BaseException) -> str | None:
    """One line for an infrastructure fault, or None when ``exc`` is not one."""
    for render in (_fault, _setting_error, _validation_error, _settings_source_error,
                   _database_url_error, _database_error, _broker_error, _port_in_use):
        line = render(exc)
        if line is not None:
            return _scrub(line)
    return None


class BillingGroup(TyperGroup):
    """The top-level group: infrastructure faults end as one line and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _is_cli_control(exc):  # an exit, abort or usage error: the CLI's own flow
                raise
            line = None if debug_requested(ctx) else describe(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(EXIT_INFRA) from None


def _is_cli_control(exc: BaseException) -> bool:
    """typer.Exit, typer.Abort and (vendored) click's exceptions: not faults to map."""
    return isinstance(exc, (typer.Exit, typer.Abort)) or \
        type(exc).__module__.split(".")[0] in ("typer", "click")


# --- renderers: each answers for one family, or None ------------------------------------------


def _fault(exc: BaseException) -> str | None:
    return exc.line() if isinstance(exc, Fault) else None


def _setting_error(exc: BaseException) -> str | None:
    from worker.settings import SettingError

    if isinstance(exc, SettingError):
        return f"invalid settings: {exc} (check {exc.setting})"
    return None


def _validation_error(exc: BaseException) -> str | None:
    """pydantic's errors by variable and message, never the input value (it may be a secret)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    problems, variables = [], []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [str(part) for part in error.get("loc", ())]
        variable = f"BILLING_{loc[0].upper()}" if loc else "BILLING_*"
        where = f"{variable}[{'.'.join(loc[1:])}]" if len(loc) > 1 else variable
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
        if variable not in variables:
            variables.append(variable)
    return f"invalid settings: {'; '.join(problems)} (check {', '.join(variables)})"


def _settings_source_error(exc: BaseException) -> str | None:
    """pydantic-settings could not parse a variable (e.g. JSON that is not JSON)."""
    try:
        from pydantic_settings import SettingsError
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, SettingsError):
        return None
    message = str(exc).splitlines()[0]
    field = message.split('field "', 1)[1].split('"', 1)[0] if 'field "' in message else ""
    setting = f"BILLING_{field.upper()}" if field else "the BILLING_* variables"
    return f"invalid settings: {message} (check {setting})"


def _database_url_error(exc: BaseException) -> str | None:
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if isinstance(exc, NoSuchModuleError) or (
        isinstance(exc, ArgumentError) and "URL" in str(exc)
    ):
        return (f"BILLING_DATABASE_URL={_database_url()} is not a usable database URL "
                f"({_first_line(exc)}) (check BILLING_DATABASE_URL)")
    return None


def _database_error(exc: BaseException) -> str | None:
    from sqlalchemy.exc import InterfaceError, OperationalError

    if not isinstance(exc, (OperationalError, InterfaceError)):
        return None
    cause = getattr(exc, "orig", None) or exc
    return (f"the database at {_database_url()} failed: {_first_line(cause)} "
            "(check BILLING_DATABASE_URL, and that the server is up)")


def _broker_error(exc: BaseException) -> str | None:
    from kombu.exceptions import OperationalError

    faults: tuple[type[BaseException], ...] = (OperationalError,)
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # pragma: no cover
        pass
    else:
        faults += (RedisConnectionError,)
    try:  # RabbitMQ closing the connection at login: a wrong password, a vhost not allowed
        from amqp.exceptions import AccessRefused
        from amqp.exceptions import ConnectionError as AmqpConnectionError
        refused: tuple[type[BaseException], ...] = (AccessRefused, AmqpConnectionError)
    except ImportError:  # pragma: no cover
        refused = ()
    if isinstance(exc, refused) and not isinstance(exc, OperationalError):
        return (f"the broker at {_broker_url()} refused the connection: {_first_line(exc)} "
                "(check the user, password and vhost in BILLING_BROKER_URL)")
    if not isinstance(exc, faults):
        return None
    return (f"the broker at {_broker_url()} cannot be reached: {_first_line(exc)} "
            "(check BILLING_BROKER_URL, and that the broker is up)")


def _port_in_use(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"address already in use: {_first_line(exc)} (check --port, or stop what holds it)"
    return None


# --- helpers ----------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or type(exc).__name__


def _settings() -> Any:
    try:
        from worker.settings import get_settings

        return get_settings()
    except Exception:  # the settings themselves are broken: say less, never crash here
        return None


def _database_url() -> str:
    from worker.settings import mask_url_password

    settings = _settings()
    return mask_url_password(settings.database_url) if settings else "(BILLING_DATABASE_URL)"


def _broker_url() -> str:
    from worker.settings import mask_url_password

    settings = _settings()
    return mask_url_password(settings.broker_url) if settings else "(BILLING_BROKER_URL)"


def _scrub(line: str) -> str:
    """Mask every secret this process knows: the settings' secrets and registered ones."""
    from worker.redaction import MASK, redact

    settings = _settings()
    secrets: list[str] = []
    if settings is not None:
        for name in ("finkok_password", "sif_secret", "flower_password"):
            secrets.append(getattr(settings, name).get_secret_value())
        for override in settings.sif_overrides.values():
            secrets.append(str(override.get("secret", "")))
        for url in (settings.database_url, settings.broker_url):
            secrets.append(_url_password(url))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if len(secret) >= 4:
            line = line.replace(secret, MASK)
    return redact(line).replace("\n", " ")


def _url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds = rest.rpartition("@")[0] if sep else ""
    return creds.split(":", 1)[1] if ":" in creds else ""
