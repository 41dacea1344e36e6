"""Liveness and readiness, for load balancers and orchestrators (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.api.schemas import Health, Readiness
from worker.api.services import services_of

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database answers SELECT 1 and the broker accepts a connection",
    responses={503: {"model": Readiness, "description": "Names what is down."}},
)
async def readyz(request: Request) -> JSONResponse:
    checks = await services_of(request).readiness()
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
