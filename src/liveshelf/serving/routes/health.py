"""``/healthz`` (the process answers), ``/readyz`` (state reachable and caught up with the store) and ``/metrics``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the state answers",
    responses={
        503: {"description": "Starting, or the state does not answer or is catching up with the store."}
    },
)
def readyz(request: Request) -> JSONResponse:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        live = len(services.state.live_rooms(time.time()))
    except Exception as exc:  # any backend failure means "not ready", never a 500
        return JSONResponse(
            {"status": "state unavailable", "error": type(exc).__name__},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    sync = services.state_sync.status if services.state_sync is not None else None
    if sync is not None and not services.state_sync.healthy():
        why = "rebuilding the state from the store" if sync.rebuilding else (sync.last_error or "catching up")
        return JSONResponse(
            {"status": "state catching up", "error": why, "lag": sync.lag},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse(
        {
            "status": "ready",
            "state": "memory" if services.settings.state == "memory" else "redis",
            "live_rooms": live,
            "items": len(services.catalogue),
            "model_version": services.model_version(),
            "sync": None
            if sync is None
            else {"seq": sync.state_seq, "lag": sync.lag, "rebuilds": sync.rebuilds},
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={503: {"description": "Starting."}},
)
def metrics(request: Request) -> Response:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return Response("", status_code=503)
    services.model_version()
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
