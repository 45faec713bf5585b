"""Room resources: the shelf ranked for a viewer, the next item for the audience, and room/shelf changes."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, HTTPException, Path, Query

from liveshelf.data.validate import Rules, table_to_frame, validate
from liveshelf.errors import NotFoundError, ValidationError
from liveshelf.serving.access import IngestAccess, ReadAccess
from liveshelf.serving.deps import (
    AtDep,
    K,
    PipelineDep,
    Services,
    ServicesDep,
    parse_time,
)
from liveshelf.serving.experiments import ShelfOutAB
from liveshelf.serving.schemas import (
    BODY,
    ID_DOC,
    READ,
    WRITE,
    AskIn,
    AskOut,
    CommentsOut,
    FastJSON,
    NextItemOut,
    Printable,
    RoomsIn,
    RoomsOut,
    UpsertOut,
    responses,
)
from liveshelf.serving.services.rooms import is_live, item_records, next_item_body, require_room
from liveshelf.serving.state.base import end_item_slots, unpin_slots

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])
log = logging.getLogger("liveshelf.serving")

RoomId = Annotated[str, Path(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable]


@router.get(
    "/{room}/shelf",
    response_model=ShelfOutAB,
    response_model_exclude_none=True,
    summary="The room's shelf ranked for a viewer",
    responses=responses(*READ, 404),
)
def shelf(
    room: RoomId,
    pipeline: PipelineDep,
    services: ServicesDep,
    _client: ReadAccess,
    at: AtDep,
    user: Annotated[
        str | None, Query(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable
    ] = None,
    k: K = 20,
    explain: Annotated[
        bool,
        Query(
            description="Attach a generated, fact-checked pitch (reason, talking "
            "points, push line) to the first 10 items."
        ),
    ] = False,
    lang: Annotated[Literal["zh", "en"] | None, Query()] = None,
) -> FastJSON:
    """Only items on the shelf at the request time; empty (``live: false``) once the room has ended.
    A viewer in a running A/B experiment is served by the arm's pipeline (``experiment`` names it)."""
    info = require_room(services, room)
    key = None if user is None else services.user_key(user)
    ab = services.experiments.assign("shelf", key) if services.experiments is not None else None
    ranked = (ab.pipeline if ab is not None else pipeline).rank_shelf(key, room, at, k)
    items = item_records(services, ranked.recs)
    if services.text is not None:
        items = services.text.demote_by_comments(room, items)
    if explain and services.text is not None:
        for rec in items[:10]:
            rec.pitch = services.text.pitch(rec.item, key, room, at, lang=lang)
    if ab is not None and services.experiments is not None and key is not None:
        services.experiments.expose(ab, key, at, "shelf", room, [r.item for r in items])
    services.log_exposure("shelf", key, room, at, ranked, ab)
    # ShelfOutAB as plain dicts (its schema documents the answer; see schemas.FastJSON)
    body: dict[str, Any] = {
        "room": room,
        "user": user,
        "at": at,
        "live": is_live(info, at),
        "model_version": ab.model_version() if ab is not None else services.model_version(),
    }
    if ranked.ranked_by is not None:
        body["ranked_by"] = ranked.ranked_by
    body["items"] = [r.body() for r in items]
    if ab is not None:
        body["experiment"] = ab.tag().model_dump()  # ExperimentTag's fields
    return FastJSON(body)


# name: the operation id stays ``next_item_...`` (the function is named next_item_route)
@router.get(
    "/{room}/next-item",
    response_model=NextItemOut,
    response_model_exclude_none=True,
    name="next_item",
    summary="What the host should present next",
    responses=responses(*READ, 404),
)
def next_item_route(
    room: RoomId,
    pipeline: PipelineDep,
    services: ServicesDep,
    _client: ReadAccess,
    at: AtDep,
    k: K = 5,
    lang: Annotated[Literal["zh", "en"] | None, Query()] = None,
) -> FastJSON:
    """The shelf ranked for the viewers in the room now (their mean blended score); trending when empty."""
    return FastJSON(next_item_body(room, pipeline, services, at, k, lang))


@router.get(
    "/{room}/comments",
    response_model=CommentsOut,
    summary="Live-comment sentiment and alerts",
    responses=responses(*READ, 404),
)
def comments(
    room: RoomId,
    services: ServicesDep,
    _client: ReadAccess,
    at: AtDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> CommentsOut:
    """Rolling negative share, keywords of negative comments, per-item demotion signal and the recent
    spike alerts of the room (needs a sentiment model: ``liveshelf sentiment train``)."""
    require_room(services, room)
    snap = services.text.comments(room, at, limit) if services.text is not None else None
    if snap is None:
        raise HTTPException(
            503,
            "Comment monitoring is off: no sentiment model. Train one with "
            "'liveshelf sentiment train --out <home>/sentiment' and restart the server.",
        )
    return CommentsOut(**snap)


@router.post(
    "/{room}/ask",
    response_model=AskOut,
    summary="Answer a viewer's question about the room's shelf",
    responses=responses(*READ, *BODY, 404),
)
def ask(room: RoomId, body: AskIn, services: ServicesDep, _client: ReadAccess, at: AtDep) -> AskOut:
    """Answers from the facts of the items on the shelf now (price, size, material, shipping ...);
    ``known: false`` with a "don't know" answer rather than an invented fact."""
    require_room(services, room)
    if services.text is None:
        raise HTTPException(503, "Shelf Q&A is switched off on this server (LIVESHELF_TEXT=false).")
    shelf = services.state.shelf(room, at)
    if body.item is not None and body.item not in shelf:
        raise NotFoundError(
            f"Item {body.item!r} is not on room {room!r}'s shelf now. "
            "Ask about an item of GET /v1/rooms/{room}/shelf."
        )
    return AskOut(room=room, **services.text.ask(body.question, shelf, body.item, body.lang))


# ------------------------------------------------------------------------------------ writes
def _times(rows: list[dict[str, Any]], fields: tuple[str, ...], default: float) -> list[dict[str, Any]]:
    """Times as text for the validator (ISO kept, numbers as epoch seconds); missing start = request time."""
    out = []
    for r in rows:
        r = dict(r)
        if r.get("start") is None:
            r["start"] = default
        for f in fields:
            v = r.get(f)
            if v is not None and not isinstance(v, str):
                r[f] = repr(float(v))
        out.append(r)
    return out


def _checked(kind: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    checked = validate(kind, table, Rules())
    if checked.n_rejected:
        first = checked.rejects.iloc[0]
        raise ValidationError(
            f"{kind} row {int(first['row'])}: field '{first['field']}': {first['reason']} "
            f"({checked.n_rejected} bad row(s)). Nothing was written.",
            field=f"{kind}.{first['field']}",
            value=first["value"],
        )
    return table_to_frame(kind, checked.table)


@router.put(
    "",
    response_model=RoomsOut,
    summary="Create, update or end rooms and change shelves",
    responses=responses(*WRITE, *BODY, 404),
)
@router.put("/", response_model=RoomsOut, include_in_schema=False)
def put_rooms(body: RoomsIn, services: ServicesDep, _client: IngestAccess, at: AtDep) -> RoomsOut:
    """``rooms`` and ``shelf`` rows are upserted (a slot's ``end`` takes the item off the shelf then);
    ``actions`` end a room, remove an item or unpin it at ``at``. Changes take effect at once."""
    fields = ("start", "end")
    rooms = (
        _checked("rooms", _times([r.model_dump() for r in body.rooms], fields, at)) if body.rooms else None
    )
    slots = (
        _checked("shelf", _times([s.model_dump() for s in body.shelf], fields, at)) if body.shelf else None
    )
    new_rooms = set() if rooms is None else set(rooms["id"])
    actions = []
    for i, a in enumerate(body.actions):
        t = parse_time(a.at, f"actions.{i}.at") if a.at is not None else at
        if a.op != "end_room" and a.item is None:
            raise ValidationError(
                f"actions.{i}: op {a.op!r} needs an 'item'. Add the item id.",
                field=f"actions.{i}.item",
                value=None,
            )
        if a.room not in new_rooms:
            require_room(services, a.room)
        actions.append((a.op, a.room, a.item, t))
    out = RoomsOut(rooms=UpsertOut(), shelf=UpsertOut(), actions=0)
    with services.store.open() as store:
        if rooms is not None:
            out.rooms = UpsertOut(
                **dict(
                    zip(
                        ("inserted", "updated", "unchanged"),
                        store.upsert("rooms", rooms, source="api"),
                        strict=True,
                    )
                )
            )
            services.state.upsert_rooms(rooms)
            if services.text is not None:
                services.text.add_rooms(rooms)
        if slots is not None:
            out.shelf = UpsertOut(
                **dict(
                    zip(
                        ("inserted", "updated", "unchanged"),
                        store.upsert("shelf", slots, source="api"),
                        strict=True,
                    )
                )
            )
            services.state.upsert_shelf(slots)
        for op, room, item, t in actions:
            _apply(services, store, op, room, item, t)
            out.actions += 1
    log.info("rooms put rooms=%d slots=%d actions=%d", len(body.rooms), len(body.shelf), out.actions)
    return out


def _apply(services: Services, store: Any, op: str, room: str, item: str | None, t: float) -> None:
    """One action on the state, mirrored into the store so a restart serves the same answers."""
    if op == "end_room":
        info = services.state.room(room)
        if info is None:
            raise HTTPException(404, f"Unknown room {room!r}.")
        services.state.end_room(room, t)
        row = {
            "id": room,
            "host": info["host"],
            "title": info.get("title") or "",
            "start": info["start"],
            "end": max(t, info["start"]),
        }
        store.upsert("rooms", _checked("rooms", _times([row], ("start", "end"), t)), source="api")
        return
    assert item is not None
    shelf = store.frame("shelf")
    mine = shelf[(shelf["room"] == room) & (shelf["item"] == item)]
    from liveshelf.core.timeutil import to_seconds_array

    starts = to_seconds_array(mine["start"].to_numpy())
    ends = to_seconds_array(mine["end"].to_numpy())
    slots = [
        (item, float(s), None if pd.isna(e) else float(e), bool(p))
        for s, e, p in zip(starts, ends, mine["pinned"].fillna(False), strict=True)
    ]
    if op == "remove_item":
        services.state.end_slot(room, item, t)
        rows = end_item_slots(slots, item, t)
    else:
        services.state.unpin(room, item, t)
        rows = unpin_slots(slots, item, t)
    if rows:
        records = [{"room": room, "item": it, "start": s, "end": e, "pinned": p} for it, s, e, p in rows]
        store.upsert("shelf", _checked("shelf", _times(records, ("start", "end"), t)), source="api")
