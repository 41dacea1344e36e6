"""The JSON Schema every SIF body must pass before it is sent (spec, decision 3).

``schema.json`` beside this module is our corrected, valid draft-07 copy of the schema
printed on SIF's page. It is loaded and checked once per process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match

MAX_MESSAGE_CHARS = 240  # a base64 PDF in an error text helps nobody


class SifBodyError(ValueError):
    """A body that SIF must never receive. ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"SIF body invalid: {field}: {message}")


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The schema as a dict (read once from the package)."""
    text = files("worker.sif").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft7Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft7Validator:
    return Draft7Validator(load_schema())


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field_of(error: ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        # "'folio' is a required property": name the missing property itself.
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        return _join(path, missing) if missing else (path or "(body)")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(str(k) for k in error.instance if k not in known)
        if extra:
            return _join(path, extra[0])
    return path or "(body)"


def _message_of(error: ValidationError) -> str:
    if error.validator == "not" and error.validator_value == {}:
        return "must not be present with this status (OK carries xml/pdf/datosFiscales, NOK none)"
    return _short(error.message)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def validate_body(body: Any) -> None:
    """Raise SifBodyError naming the first offending field, or return None if valid."""
    error = best_match(_validator().iter_errors(body))
    if error is not None:
        raise SifBodyError(_field_of(error), _message_of(error))


def body_errors(body: Any) -> list[str]:
    """Every problem with ``body`` as 'field: message' lines (for the sandbox's 400)."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_field_of(e)}: {_message_of(e)}" for e in errors]
