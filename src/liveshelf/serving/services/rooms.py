"""Room reads shared by the routes: the room's record, whether it is live, and the next item for the audience.

:func:`next_item_body` is what ``GET /v1/rooms/{room}/next-item`` answers; the console's room view calls
:func:`next_item` (the same answer as a :class:`~liveshelf.serving.schemas.NextItemOut`).
"""

from __future__ import annotations

from typing import Any

from liveshelf.errors import NotFoundError
from liveshelf.serving.deps import Services
from liveshelf.serving.schemas import ItemRecord, NextItemOut, reason_dicts


def require_room(services: Services, room: str) -> dict[str, Any]:
    """The room's record; a 404 naming the fix for a room never put."""
    info = services.state.room(room)
    if info is None:
        raise NotFoundError(
            f"Unknown room {room!r}: no room with this id was ever put. Create it with "
            "PUT /v1/rooms, or ask GET /v1/users/{user}/feed for live rooms."
        )
    return info


def is_live(info: dict[str, Any], t: float) -> bool:
    return info["start"] <= t and (info["end"] is None or t < info["end"])


def item_records(services: Services, recs: list) -> list[ItemRecord]:
    get = services.catalogue.get
    out = []
    for r in recs:
        info = get(r.key)
        out.append(ItemRecord(r.key, None if info is None else info.title, r.score, reason_dicts(r.reasons)))
    return out


def next_item_body(
    room: str, pipeline: Any, services: Services, at: float, k: int, lang: str | None = None
) -> dict[str, Any]:
    """The answer of ``GET /v1/rooms/{room}/next-item`` as plain dicts (:class:`NextItemOut`'s fields)."""
    info = require_room(services, room)
    ranked = pipeline.rank_next_item(room, at, k)
    items = item_records(services, ranked.recs)
    services.log_exposure("next-item", None, room, at, ranked)
    if services.text is not None:
        items = services.text.demote_by_comments(room, items)
    pitch = None
    if items and services.text is not None:
        pitch = services.text.pitch(items[0].item, None, room, at, lang=lang)
    body: dict[str, Any] = {
        "room": room,
        "at": at,
        "live": is_live(info, at),
        "audience": int(ranked.audience),
        "model_version": services.model_version(),
    }
    if ranked.ranked_by is not None:
        body["ranked_by"] = ranked.ranked_by
    bodies = [r.body() for r in items]
    body["item"] = bodies[0] if bodies else None
    body["items"] = bodies
    if pitch is not None:
        body["pitch"] = pitch
    return body


def next_item(
    room: str, pipeline: Any, services: Services, at: float, k: int = 5, lang: str | None = None
) -> NextItemOut:
    """:func:`next_item_body` as a :class:`NextItemOut` (for callers in process: the console's room view)."""
    return NextItemOut.model_validate(next_item_body(room, pipeline, services, at, k, lang))


__all__ = ["is_live", "item_records", "next_item", "next_item_body", "require_room"]
