"""The FastAPI application: ``create_app(settings)`` wires routers, middleware and error handlers.

Routes live in :mod:`liveshelf.serving.routes` (one module per resource); what they need
is built once in the lifespan (:func:`liveshelf.serving.deps.build_services`) and reached
through the named dependencies of :mod:`liveshelf.serving.deps`.

>>> from fastapi.testclient import TestClient                         # doctest: +SKIP
>>> with TestClient(create_app(ServeSettings(home=home))) as client:  # doctest: +SKIP
...     client.get("/v1/users/u1/feed").json()
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from liveshelf.errors import (
    ConfigError,
    DataFormatError,
    LiveshelfError,
    NotFittedError,
    NotFoundError,
    RegistryError,
    ValidationError,
)
from liveshelf.serving.deps import build_services, warm_state
from liveshelf.serving.heap import release_freed_memory
from liveshelf.serving.routes import ROUTERS
from liveshelf.serving.security import BodyLimitMiddleware, LoadShedMiddleware
from liveshelf.serving.settings import ServeSettings
from liveshelf.serving.state import OnlineState
from liveshelf.serving.sync import state_errors

log = logging.getLogger("liveshelf.serving")

#: One HTTP status per error class (the first match in this order wins).
STATUS: tuple[tuple[type[LiveshelfError], int], ...] = (
    (ValidationError, 422),
    (ConfigError, 422),
    (DataFormatError, 422),
    (NotFoundError, 404),
    (RegistryError, 404),
    (NotFittedError, 503),
    (LiveshelfError, 400),
)


def _error_body(exc: LiveshelfError, status: int) -> dict[str, Any]:
    if status == 422:
        fld = getattr(exc, "field", None)
        loc = ["body" if fld and "." in str(fld) else "query", *(str(fld).split(".") if fld else [])]
        return {"detail": [{"loc": loc, "msg": str(exc), "type": type(exc).__name__}]}
    return {"detail": str(exc)}


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LiveshelfError)
    async def liveshelf_error(request: Request, exc: LiveshelfError) -> JSONResponse:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        return JSONResponse(_error_body(exc, status), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc / msg / type only: the offending input is not echoed back (it may be large or personal)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()[:50]
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # a dependency is down (the online state): a clear 503 within the state's timeout, never a 500
        return JSONResponse(
            {
                "detail": "The online state is unavailable right now; retry shortly. Events posted "
                "meanwhile are stored and applied once it answers again."
            },
            status_code=503,
            headers={"Retry-After": "1"},
        )

    for exc_type in state_errors():
        app.add_exception_handler(exc_type, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        route = request.scope.get("route")
        log.exception("unhandled error on %s %s", request.method, getattr(route, "path", "?"))
        return JSONResponse({"detail": "Internal error; it has been logged."}, status_code=500)


class Observe:
    """Pure ASGI middleware of every HTTP request: latency metric per route template, ``X-Worker``
    header (the worker's pid), access log line at info level; an error escaping the app counts as 500.

    (A ``BaseHTTPMiddleware`` would add a task and two memory streams per request.)
    """

    def __init__(self, app: Any, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner
        self.worker = (b"x-worker", str(os.getpid()).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        worker = self.worker

        async def send_observed(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), worker]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", "unmatched")  # template: no raw ids
            services = self.owner.state.services
            if services is not None:
                services.metrics.observe(scope["method"], route, status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %d %.1fms client=%s",
                    scope["method"],
                    route,
                    status,
                    seconds * 1000,
                    (scope.get("state") or {}).get("client", "-"),
                )


def _install_middleware(app: FastAPI, settings: ServeSettings) -> None:
    app.add_middleware(Observe, owner=app)

    def refused() -> None:
        services = getattr(app.state, "services", None)
        if services is not None:
            services.metrics.rejected.labels("body_size").inc()

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, on_refuse=refused)

    def shed() -> None:
        services = getattr(app.state, "services", None)
        if services is not None:
            services.metrics.rejected.labels("overload").inc()

    app.add_middleware(LoadShedMiddleware, limit=settings.max_in_flight, on_refuse=shed)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*", "X-API-Key"],
            allow_credentials=False,
        )


def create_app(settings: ServeSettings | None = None, *, state: OnlineState | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the environment). ``state`` replaces the configured one."""
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # the route handlers are CPU-bound Python under one interpreter lock: more threads than this only add
        # lock hand-offs (measured: 40 threads spent ~3x the CPU per answered request of a few under overload)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        services = build_services(settings, state)
        if settings.warm_start:
            with services.store.open() as store:
                warm_state(services.state, store, settings.warm_window_s, text=services.text)
        assert services.state_sync is not None  # build_services always sets it
        services.state_sync.catch_up()  # without a warm start: adopt the shared state's sync point, or start now
        services.state_sync.start()  # catches up what a failed state write left behind; rebuilds a lost state
        services.model_version()  # load the production model and build the content index before serving
        services.pipeline.content()
        services.pipeline.warm(time.time())  # the live snapshot, so the first request pays no build
        # the start-up build's millions of long-lived objects (state, catalogue, indexes) leave the cyclic
        # collector's generations: a full collection no longer walks them while requests wait
        release_freed_memory()
        gc.freeze()
        app.state.services = services
        try:
            yield
        finally:
            gc.unfreeze()  # what this app built can be collected again once it is gone
            app.state.services = None
            services.close()

    from liveshelf import __version__

    app = FastAPI(
        title="liveshelf",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        description="Real-time recommendation for live-stream commerce: live rooms for a viewer, "
        "a room's shelf ranked for a viewer, the next item for a room's audience.",
    )
    app.state.services = None
    app.state.settings = settings
    _install_handlers(app)
    _install_middleware(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    return app


__all__ = ["STATUS", "create_app"]
