"""HTTP intake API for ERPs: the same intake service as the CLI, over HTTP (FastAPI)."""

from worker.api.app import create_api

__all__ = ["create_api"]
