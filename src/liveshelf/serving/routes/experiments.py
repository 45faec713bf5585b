"""Read-only A/B experiment resources: ``GET /v1/experiments``, ``/{name}`` and ``/{name}/assignment``.

Experiments are created, stopped and reported with ``liveshelf ab``; the server only reads them.
Names are checked with :func:`liveshelf.names.safe_name` before they become a folder, and no
answer shows a server path (the store's summaries name their folder and report files: dropped).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from liveshelf.errors import NotFoundError
from liveshelf.names import MAX_NAME_LEN
from liveshelf.serving.abtest import Experiment, ExperimentStore
from liveshelf.serving.access import ReadAccess
from liveshelf.serving.deps import ServicesDep
from liveshelf.serving.schemas import ID_DOC, READ, Printable, SafeName, responses

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_LEN,
        description="The experiment's name (a plain name: it names a folder).",
    ),
    SafeName,
]
#: Summary fields that hold server paths.
PATH_FIELDS = ("folder", "reports")


def _store(services: ServicesDep) -> ExperimentStore:
    return ExperimentStore(services.settings.home)


def _get(services: ServicesDep, name: str) -> Experiment:
    store = _store(services)
    if not store.exists(name):  # a safe name: checked by the path parameter
        raise NotFoundError(
            f"No experiment {name!r} (experiments: {store.names() or 'none'}). "
            "Create it with 'liveshelf ab create'; GET /v1/experiments lists them."
        )
    return store.get(name)


@router.get("", summary="Every experiment with its status, arms and shares", responses=responses(*READ))
@router.get("/", include_in_schema=False)
def list_experiments(services: ServicesDep, _client: ReadAccess) -> dict[str, Any]:
    """The experiment summaries of ``<home>/experiments`` and which ones this worker is serving."""
    active = services.experiments.active if services.experiments is not None else []
    summaries = [{k: v for k, v in e.items() if k not in PATH_FIELDS} for e in _store(services).list()]
    return {"experiments": summaries, "serving": active}


@router.get("/{name}", summary="One experiment's definition", responses=responses(*READ, 404))
def get_experiment(name: Name, services: ServicesDep, _client: ReadAccess) -> dict[str, Any]:
    """The stored definition (arms, shares, surfaces, primary metric, guardrails, status)."""
    d = _get(services, name).to_dict()
    d.pop("salt", None)  # with the salt anyone could pick user ids to land in an arm
    return d


@router.get("/{name}/assignment", summary="The arm a viewer is assigned to", responses=responses(*READ, 404))
def assignment(
    name: Name,
    services: ServicesDep,
    _client: ReadAccess,
    user: Annotated[str, Query(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable],
) -> dict[str, Any]:
    """The deterministic arm of ``user`` (``arm: null`` when the user is outside the experiment's traffic)."""
    exp = _get(services, name)
    arm = exp.assign(services.user_key(user))
    return {
        "experiment": exp.name,
        "user": user,
        "arm": None if arm is None else arm.name,
        "status": exp.status,
    }
