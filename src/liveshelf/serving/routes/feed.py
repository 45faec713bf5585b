"""User resources: ``GET /v1/users/{user}/feed``, ``/profile`` and ``DELETE /v1/users/{user}``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path

from liveshelf.serving.access import DeleteAccess, ReadAccess
from liveshelf.serving.deletion import record_deletion
from liveshelf.serving.deps import AtDep, K, PipelineDep, ServicesDep
from liveshelf.serving.experiments import FeedOutAB
from liveshelf.serving.schemas import (
    ID_DOC,
    READ,
    WRITE,
    DeleteOut,
    FastJSON,
    Printable,
    ProfileOut,
    reason_dicts,
    responses,
)

router = APIRouter(prefix="/v1/users", tags=["users"])
log = logging.getLogger("liveshelf.serving")

UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        json_schema_extra=ID_DOC,
        description="The viewer's id (as posted in events).",
    ),
    Printable,
]


@router.get(
    "/{user}/feed",
    response_model=FeedOutAB,
    response_model_exclude_none=True,
    summary="Live rooms to show this viewer now",
    responses=responses(*READ),
)
def feed(
    user: UserId, pipeline: PipelineDep, services: ServicesDep, _client: ReadAccess, at: AtDep, k: K = 10
) -> FastJSON:
    """Only rooms live at the request time. An unknown viewer gets the trending rooms (``fallback``).
    A viewer in a running A/B experiment is served by the arm's pipeline (``experiment`` names it)."""
    key = services.user_key(user)
    ab = services.experiments.assign("feed", key) if services.experiments is not None else None
    ranked = (ab.pipeline if ab is not None else pipeline).rank_feed(key, at, k)
    recs, known = ranked.recs, ranked.known
    log.debug("feed user=%s rooms=%d known=%s", services.log_id(user), len(recs), known)
    if ab is not None and services.experiments is not None:
        services.experiments.expose(ab, key, at, "feed", None, [r.key for r in recs])
    services.log_exposure("feed", key, None, at, ranked, ab)
    # FeedOutAB as plain dicts (its schema documents the answer; see schemas.FastJSON)
    body: dict[str, Any] = {
        "user": user,
        "at": at,
        "model_version": ab.model_version() if ab is not None else services.model_version(),
        "fallback": not known,
    }
    if ranked.ranked_by is not None:
        body["ranked_by"] = ranked.ranked_by
    body["rooms"] = [
        {
            "room": r.key,
            "host": r.extra.get("host"),
            "title": r.extra.get("title", ""),
            "shelf_size": int(r.extra.get("shelf_size", 0)),
            "score": float(r.score),
            "reasons": reason_dicts(r.reasons),
        }
        for r in recs
    ]
    if ab is not None:
        body["experiment"] = ab.tag().model_dump()  # ExperimentTag's fields
    return FastJSON(body)


@router.get(
    "/{user}/profile",
    response_model=ProfileOut,
    summary="The viewer's recent behaviour and interests",
    responses=responses(*READ),
)
def profile(
    user: UserId, pipeline: PipelineDep, services: ServicesDep, _client: ReadAccess, at: AtDep
) -> ProfileOut:
    """Sequence summary and top categories / brands / hosts with decayed weights (unknown: empty profile)."""
    key = services.user_key(user)
    interests = services.text.profile(key, at) if services.text is not None else None
    return ProfileOut(user=user, at=at, interests=interests, **pipeline.profile(key, at))


@router.delete(
    "/{user}", response_model=DeleteOut, summary="Forget a user everywhere", responses=responses(*WRITE)
)
def delete_user(user: UserId, services: ServicesDep, _client: DeleteAccess) -> DeleteOut:
    """Purge the user's events and profile row from the store and their sequence and presence from the state."""
    key = services.user_key(user)
    with services.store.open() as store:
        counts = store.delete_user(key)
        services.state.delete_user(key)
        if services.text is not None:
            services.text.delete_user(key)
    # models trained on the user are marked stale: the loop's next cycle retrains without them
    record_deletion(services.store.home, key, counts, state=True)
    log.info("deleted user=%s events=%d", services.log_id(user), counts["events"])
    return DeleteOut(user=user, events=counts["events"], users=counts["users"], state=True)
