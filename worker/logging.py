"""Structured logs: structlog over stdlib logging, JSON or a human console.

Every stdlib call keeps working: ``log.info("...", extra={"invoice_id": id})`` becomes
``{"event": "...", "invoice_id": id, "level": "info", "logger": ..., "timestamp": ...}``.
Values bound with ``structlog.contextvars`` (a Celery task's id and name, its invoice or
notification, the invoice's reference and SAT UUID) are added to every line logged
while they are bound, so every line about an invoice carries them.

Secrets: the Finkok and SIF clients attach redaction filters to the loggers that could
print a credential; those run before any handler, so they stay active. On top of that,
our formatter masks every registered secret in every rendered value (messages, extras,
tracebacks), whichever logger the record came from. Tracebacks are plain text, never
rich's "show locals" rendering (locals may hold settings).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor

from worker.settings import Settings, get_settings

HANDLER_NAME = "billing-structlog"

# The id argument of each task, by task name (tasks take ids only).
TASK_ID_ARGUMENT = {
    "billing.stamp_invoice": "invoice_id",
    "billing.notify_sif": "notification_id",
}


def redact_text(text: str) -> str:
    """Mask every secret this process knows, and Finkok credential elements."""
    from worker.redaction import redact

    return redact(text)


def redact_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every string value (messages, extras, tracebacks)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact_text(value)
        elif value is not None and not isinstance(value, (int, float, bool)):
            text = str(value)
            clean = redact_text(text)
            if clean != text:
                event_dict[key] = clean
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_formatter(*, as_json: bool, colors: bool = False) -> ProcessorFormatter:
    """The formatter for our handler (public so tests and other handlers can use it)."""
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer(default=str, sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return ProcessorFormatter(
        # Records from stdlib loggers: their extras become keys (after the context, so an
        # explicit extra wins over a bound value).
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a CLI test runner or
    a daemonizer may swap it after logging was configured), except a logging proxy.

    A Celery worker (``worker_redirect_stdouts``, on by default) replaces ``sys.stderr``
    with a ``LoggingProxy`` that turns writes into log records. Writing our records there
    sends them back through the root logger, where the proxy's recursion guard drops them:
    ``billing worker`` and ``billing beat`` logged nothing after the banner. A proxy is
    never a terminal, so records go to the process's real stderr instead.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        current = sys.stderr
        if _is_logging_proxy(current) and sys.__stderr__ is not None:
            return sys.__stderr__
        return current


def _is_logging_proxy(stream: object) -> bool:
    """Celery's stdout/stderr proxy (checked by type name: no celery import for the CLI)."""
    return type(stream).__name__ == "LoggingProxy"


def configure_logging(
    settings: Settings | None = None,
    *,
    as_json: bool | None = None,
    level: str | int | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install our handler on the root logger (idempotent: it replaces its previous one).

    Other handlers are left alone (pytest's, a library's). ``as_json``/``level`` default
    to ``settings.log_json``/``settings.log_level``; ``stream`` to the current stderr.
    Returns the handler.
    """
    settings = settings or get_settings()
    as_json = settings.log_json if as_json is None else as_json
    level = level if level is not None else settings.log_level.upper()
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(HANDLER_NAME)
    target = stream if stream is not None else sys.stderr
    colors = not as_json and hasattr(target, "isatty") and target.isatty()
    handler.setFormatter(build_formatter(as_json=as_json, colors=colors))

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    structlog.configure(
        processors=[*_shared_processors(), ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # The zeep/urllib3 filters, even before a Finkok client exists in this process.
    from worker import redaction

    redaction.install()
    return handler


# --- Celery: bind the task and its invoice to every line the task logs ------------------------


def instrument_tasks(app: Any) -> None:
    """Bind task id/name and the task's id argument for every task of ``app``; unbind after.

    The service functions bind the rest (reference, empresa, SAT UUID) from the rows they
    claim, so no task pays an extra database read for its log context. The receivers are
    kept on the app (celery holds signal receivers weakly) and ignore other apps' tasks.
    """
    from celery.signals import task_postrun, task_prerun

    if getattr(app, "_billing_log_receivers", None):  # already instrumented
        return

    def prerun(sender: Any = None, task_id: str | None = None, task: Any = None,
               args: Any = None, kwargs: MutableMapping[str, Any] | None = None, **_: Any) -> None:
        task = task or sender
        if getattr(task, "app", None) is not app:
            return
        clear_contextvars()
        bound: dict[str, Any] = {"task_id": task_id, "task_name": task.name}
        name = TASK_ID_ARGUMENT.get(task.name)
        value = (kwargs or {}).get(name) if name else None
        if name and value is None and args:
            value = args[0]
        if name and isinstance(value, str):
            bound[name] = value
        bind_contextvars(**bound)

    def postrun(sender: Any = None, task: Any = None, **_: Any) -> None:
        if getattr(task or sender, "app", None) is app:
            clear_contextvars()

    task_prerun.connect(prerun)
    task_postrun.connect(postrun)
    app._billing_log_receivers = (prerun, postrun)  # keep them alive as long as the app
