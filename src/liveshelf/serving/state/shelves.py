"""Rooms, shelves and audiences as both backends decide them: frames checked into rows, which slots
are active, the shelf order, the slot rows a change writes, who is in the audience, and how long a
live layout holds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import column_seconds
from liveshelf.errors import ValidationError
from liveshelf.serving.state.batch import id_column


def room_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validated room records ``{id, host, title, start, end}`` (epoch seconds, end None = live)."""
    missing = [c for c in ("id", "host", "start") if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"The rooms frame lacks columns {missing}; expected (id, host, title, start, end). "
            "Rename the columns.",
            field="rooms",
            value=list(frame.columns),
        )
    ids = id_column(frame, "id")
    hosts = id_column(frame, "host")
    titles = id_column(frame, "title")
    start = column_seconds(frame["start"])
    end = column_seconds(frame["end"]) if "end" in frame.columns else np.full(len(frame), np.nan)
    rows = []
    for i in range(len(frame)):
        if ids[i] is None or math.isnan(start[i]):
            raise ValidationError(
                f"Room row {i} needs an id and a start; got id={ids[i]!r}, "
                f"start={frame['start'].iloc[i]!r}. Fix the row.",
                field="rooms.start",
                value=frame["start"].iloc[i],
            )
        e = None if math.isnan(end[i]) or math.isinf(end[i]) else float(end[i])
        if e is not None and e < start[i]:
            raise ValidationError(
                f"The 'end' of room {ids[i]!r} must not be before its start {start[i]}. Got {e} instead.",
                field="rooms.end",
                value=e,
            )
        rows.append(
            {"id": ids[i], "host": hosts[i], "title": titles[i] or "", "start": float(start[i]), "end": e}
        )
    return rows


def slot_rows(frame: pd.DataFrame) -> list[tuple[str, str, float, float | None, bool]]:
    """Validated shelf slots ``(room, item, start, end, pinned)``."""
    missing = [c for c in ("room", "item", "start") if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"The shelf frame lacks columns {missing}; expected (room, item, start, end, "
            "pinned). Rename the columns.",
            field="shelf",
            value=list(frame.columns),
        )
    rooms, items = id_column(frame, "room"), id_column(frame, "item")
    start = column_seconds(frame["start"])
    end = column_seconds(frame["end"]) if "end" in frame.columns else np.full(len(frame), np.nan)
    pinned = (
        frame["pinned"].astype(object).fillna(False).astype(bool).to_numpy()
        if "pinned" in frame.columns
        else np.zeros(len(frame), bool)
    )
    out = []
    for i in range(len(frame)):
        if rooms[i] is None or items[i] is None or math.isnan(start[i]):
            raise ValidationError(
                f"Shelf row {i} needs a room, an item and a start; got room={rooms[i]!r}, "
                f"item={items[i]!r}. Fix the row.",
                field="shelf",
                value=i,
            )
        e = None if math.isnan(end[i]) or math.isinf(end[i]) else float(end[i])
        if e is not None and e < start[i]:
            raise ValidationError(
                f"The 'end' of the slot of {items[i]!r} in {rooms[i]!r} must not be before "
                f"its start {start[i]}. Got {e} instead.",
                field="shelf.end",
                value=e,
            )
        out.append((rooms[i], items[i], float(start[i]), e, bool(pinned[i])))
    return out


def is_live(room: dict[str, Any] | None, t: float) -> bool:
    """``start <= t < end`` (open end = live), the Timeline's semantics."""
    if room is None:
        return False
    end = room["end"]
    return room["start"] <= t and (end is None or t < end)


def order_shelf(slots: Iterable[tuple[str, float, float | None, bool]], t: float) -> list[str]:
    """Items of the slots active at ``t``: pinned first, then by first slot start, then id."""
    best: dict[str, tuple[bool, float]] = {}
    for item, start, end, pinned in slots:
        if start <= t and (end is None or t < end):
            p, s = best.get(item, (False, math.inf))
            best[item] = (p or pinned, min(s, start))
    return sorted(best, key=lambda it: (not best[it][0], best[it][1], it))


def end_room_slots(
    slots: Iterable[tuple[str, float, float | None, bool]], t: float
) -> list[tuple[str, float, float | None, bool]]:
    """Slots whose end changes when their room ends at ``t`` (new end ``max(t, start)``)."""
    return [
        (item, start, max(t, start), pinned) for item, start, end, pinned in slots if end is None or end > t
    ]


def unpin_slots(
    slots: Iterable[tuple[str, float, float | None, bool]], item: str, t: float
) -> list[tuple[str, float, float | None, bool]]:
    """Slot rows to write so ``item`` stays on the shelf but is no longer pinned from ``t`` on.

    An active pinned slot ``[s, e)`` becomes ``[s, t)`` pinned plus ``[t, e)`` not pinned
    (just "not pinned" when it starts at ``t``), so the past stays as it was.
    """
    out = []
    for it, start, end, pinned in slots:
        if it == item and pinned and start <= t and (end is None or t < end):
            if start == t:
                out.append((it, start, end, False))
            else:
                out += [(it, start, t, True), (it, t, end, False)]
    return out


def end_item_slots(
    slots: Iterable[tuple[str, float, float | None, bool]], item: str, t: float
) -> list[tuple[str, float, float | None, bool]]:
    """Slot rows to write so ``item`` leaves the shelf at ``t``."""
    return [
        (it, start, t, pinned)
        for it, start, end, pinned in slots
        if it == item and start <= t and (end is None or t < end)
    ]


def check_end_time(room_id: str, room: dict[str, Any], t: float) -> None:
    end = math.inf if room["end"] is None else room["end"]
    if not room["start"] <= t <= end:
        raise ValidationError(
            f"The end time of room {room_id!r} must lie in [{room['start']}, {end}] (its start "
            f"and current end). Got {t} instead.",
            field="t",
            value=t,
        )


def audience_order(members: Iterable[tuple[str, float]], t: float, ttl: float) -> list[str]:
    """Viewers seen within ``ttl`` seconds before ``t``, most recent first (ties: id descending)."""
    alive = [(u, s) for u, s in members if s > t - ttl]
    return [u for u, _ in sorted(alive, key=lambda p: (p[1], p[0]), reverse=True)]


@dataclass(frozen=True)
class LiveLayout:
    """The live rooms at one time, their rows and ordered shelves, and how long that holds.

    ``valid_from <= t < valid_until`` bounds the times at which :meth:`OnlineState.live_rooms`
    and :meth:`OnlineState.shelf` give the same answers (no room or slot starts or ends in
    between), as long as no write happens (see :meth:`OnlineState.live_version`).
    """

    rooms: list[str]
    info: list[dict[str, Any]]
    shelves: list[list[str]]
    valid_from: float
    valid_until: float


def validity(bounds: Iterable[float], t: float) -> tuple[float, float]:
    """``[max bound <= t, min bound > t)`` over the finite ``bounds`` (``-inf`` / ``inf`` when none)."""
    b = np.asarray([x for x in bounds if x is not None], dtype=np.float64)
    b = b[np.isfinite(b)]
    lo, hi = b[b <= t], b[b > t]
    return (float(lo.max()) if len(lo) else -math.inf, float(hi.min()) if len(hi) else math.inf)
