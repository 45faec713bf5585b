"""``/healthz`` (the process answers), ``/readyz`` (state reachable, catalogue loaded) and ``/metrics``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the state answers")
def readyz(request: Request) -> JSONResponse:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        live = len(services.state.live_rooms(time.time()))
    except Exception as exc:  # any backend failure means "not ready", never a 500
        return JSONResponse({"status": "state unavailable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "state": "memory" if services.settings.state == "memory" else "redis",
                         "live_rooms": live, "items": len(services.catalogue),
                         "model_version": services.model_version()})


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return Response("", status_code=503)
    services.model_version()
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
