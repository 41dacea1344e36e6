"""The OpenAPI document, as committed in ``worker/api/openapi.json``.

Regenerate it after changing the API:

    .venv/bin/python -m worker.api.contract > worker/api/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COMMITTED = Path(__file__).with_name("openapi.json")


def openapi_document() -> dict[str, Any]:
    from worker.api.app import create_api
    from worker.settings import load_settings

    return create_api(load_settings()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(openapi_document()), end="")
