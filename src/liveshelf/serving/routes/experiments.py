"""Read-only A/B experiment resources: ``GET /v1/experiments``, ``/{name}`` and ``/{name}/assignment``.

Experiments are created, stopped and reported with ``liveshelf ab``; the server only reads them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from liveshelf.experiment.abtest import ExperimentStore
from liveshelf.serving.deps import ReadAccess, ServicesDep

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, description="The experiment's name.")]


def _store(services: ServicesDep) -> ExperimentStore:
    return ExperimentStore(services.settings.home)


@router.get("", summary="Every experiment with its status, arms and shares")
@router.get("/", include_in_schema=False)
def list_experiments(services: ServicesDep, _client: ReadAccess) -> dict[str, Any]:
    """The experiment summaries of ``<home>/experiments`` and which ones this worker is serving."""
    active = services.experiments.active if services.experiments is not None else []
    return {"experiments": _store(services).list(), "serving": active}


@router.get("/{name}", summary="One experiment's definition")
def get_experiment(name: Name, services: ServicesDep, _client: ReadAccess) -> dict[str, Any]:
    """The stored definition (arms, shares, surfaces, primary metric, guardrails, status)."""
    exp = _store(services).get(name)
    d = exp.to_dict()
    d.pop("salt", None)  # with the salt anyone could pick user ids to land in an arm
    return d


@router.get("/{name}/assignment", summary="The arm a viewer is assigned to")
def assignment(name: Name, services: ServicesDep, _client: ReadAccess,
               user: Annotated[str, Query(min_length=1, max_length=256)]) -> dict[str, Any]:
    """The deterministic arm of ``user`` (``arm: null`` when the user is outside the experiment's traffic)."""
    exp = _store(services).get(name)
    arm = exp.assign(services.user_key(user))
    return {"experiment": exp.name, "user": user, "arm": None if arm is None else arm.name,
            "status": exp.status}
