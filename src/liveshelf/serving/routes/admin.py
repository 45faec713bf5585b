"""Admin routes (an admin or full-access API key): the served models' versions, promotion and rollback."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path

from liveshelf.errors import NotFoundError
from liveshelf.serving.access import AdminAccess
from liveshelf.serving.deps import ModelSlot, Services, ServicesDep
from liveshelf.serving.schemas import BODY, WRITE, PromoteIn, VersionOut, responses

router = APIRouter(prefix="/v1/admin", tags=["admin"])
log = logging.getLogger("liveshelf.serving")

ModelName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _slot(services: Services, name: str) -> ModelSlot:
    for slot in services.models.values():
        if slot.name == name:
            return slot
    served = sorted(s.name for s in services.models.values())
    raise NotFoundError(
        f"Model {name!r} is not served here; served models: {served}. Start the server with --model NAME."
    )


def _out(info) -> VersionOut:
    return VersionOut(
        name=info.name,
        version=info.version,
        model_type=info.model_type,
        created_at=info.created_at,
        production=info.production,
        metrics=info.metrics,
    )


@router.get(
    "/models",
    response_model=list[VersionOut],
    summary="Registered versions of the served models",
    responses=responses(*WRITE),
)
def list_models(services: ServicesDep, _client: AdminAccess) -> list[VersionOut]:
    out = []
    for slot in services.models.values():
        if slot.registry.versions(slot.name):
            out += [_out(i) for i in slot.registry.list(slot.name)]
    return out


@router.post(
    "/models/{name}/promote",
    response_model=VersionOut,
    summary="Serve another version",
    responses=responses(*WRITE, *BODY, 404),
)
def promote(name: ModelName, body: PromoteIn, services: ServicesDep, _client: AdminAccess) -> VersionOut:
    """Hot swap: requests in flight finish on the old model; this worker swaps now, others within a second."""
    slot = _slot(services, name)
    info = slot.registry.promote(name, body.version)
    slot.holder.refresh()
    log.info("promoted %s %s", name, body.version)
    return _out(info)


@router.post(
    "/models/{name}/rollback",
    response_model=VersionOut,
    summary="Serve the previous version",
    responses=responses(*WRITE, 404),
)
def rollback(name: ModelName, services: ServicesDep, _client: AdminAccess) -> VersionOut:
    slot = _slot(services, name)
    info = slot.registry.rollback(name)
    slot.holder.refresh()
    log.info("rolled back %s to %s", name, info.version)
    return _out(info)
