"""Event batches as both backends read them: the frame checked and sorted by time, then turned into
sequence entries and audience changes (pure functions; the backends only store the results)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import column_seconds
from liveshelf.errors import ValidationError, check_param
from liveshelf.schema import EVENT_TYPES

#: Event types kept in user sequences by default (impressions are exposure, not behaviour).
SEQUENCE_TYPES: frozenset[str] = frozenset(t for t in EVENT_TYPES if t != "impression")

SeqEntry = tuple[str | None, str | None, float, str]


@dataclass(frozen=True)
class Batch:
    """One events frame as arrays, sorted by ``ts`` (stable, so ties keep arrival order)."""

    users: np.ndarray  # object str
    items: np.ndarray  # object str | None
    rooms: np.ndarray  # object str | None
    ts: np.ndarray  # float64 epoch seconds
    types: np.ndarray  # object str
    event_ids: np.ndarray  # object str | None

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, mask: np.ndarray) -> Batch:
        return Batch(
            self.users[mask],
            self.items[mask],
            self.rooms[mask],
            self.ts[mask],
            self.types[mask],
            self.event_ids[mask],
        )

    def dedupe_pairs(self) -> list[tuple[int, str, float]]:
        """``(row, event_id, ts)`` of the rows that carry an event id."""
        return [
            (i, e, t)
            for i, (e, t) in enumerate(zip(self.event_ids.tolist(), self.ts.tolist(), strict=True))
            if e is not None
        ]


def id_column(frame: pd.DataFrame, col: str) -> np.ndarray:
    """An id column as an object array of str, None where missing."""
    if col not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    out = frame[col].to_numpy(dtype=object, na_value=None)
    if pd.api.types.infer_dtype(out, skipna=True) not in ("string", "empty"):
        out = np.asarray([None if x is None else str(x) for x in out], dtype=object)
    return out


def prepare_events(events: pd.DataFrame) -> Batch:
    """Check an events frame (schema ``EVENT_COLUMNS``) and return it as a sorted :class:`Batch`."""
    if not isinstance(events, pd.DataFrame):
        raise ValidationError(
            f"apply_events takes a pandas DataFrame with the schema's EVENT_COLUMNS. "
            f"Got {type(events).__name__} instead.",
            field="events",
            value=type(events).__name__,
        )
    missing = [c for c in ("ts", "user", "type") if c not in events.columns]
    if missing:
        raise ValidationError(
            f"The events frame lacks columns {missing}; expected the schema columns "
            "(event_id, ts, user, type, room, item, value, text). Rename the columns.",
            field="events",
            value=list(events.columns),
        )
    for col in ("ts", "user", "type"):
        bad = events[col].isna().to_numpy()
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise ValidationError(
                f"Event row {i} has no '{col}'; every event needs ts, user and type. "
                "Drop or fix the row (the ingest validator does).",
                field=col,
                value=None,
            )
    ts = column_seconds(events["ts"])
    types = events["type"].astype(str).to_numpy(dtype=object)
    unknown = sorted(set(pd.unique(types)) - set(EVENT_TYPES))
    if unknown:
        raise ValidationError(
            f"The 'type' column holds unknown event types {unknown}; expected one of "
            f"{list(EVENT_TYPES)}. Map them before posting.",
            field="type",
            value=unknown[0],
        )
    order = np.argsort(ts, kind="stable")
    return Batch(
        users=id_column(events, "user")[order],
        items=id_column(events, "item")[order],
        rooms=id_column(events, "room")[order],
        ts=ts[order],
        types=types[order],
        event_ids=id_column(events, "event_id")[order],
    )


def intern_id(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def interned(values: np.ndarray) -> list[Any]:
    """``values`` as a list whose strings are interned (one object per distinct id); None / NaN -> None.
    Each distinct value is interned once per call (ids repeat within a batch)."""
    codes, uniq = pd.factorize(values)
    table = np.empty(len(uniq) + 1, dtype=object)
    table[: len(uniq)] = [intern_id(u) for u in uniq.tolist()]
    table[-1] = None  # code -1: a missing value
    return table[codes].tolist()


def sequence_rows(batch: Batch, keep_types: frozenset[str]) -> dict[str, list[SeqEntry]]:
    """Per user, the batch's sequence entries in time order."""
    out: dict[str, list[SeqEntry]] = {}
    codes, uniq = pd.factorize(batch.types)
    keep = np.asarray([u in keep_types for u in uniq], dtype=bool)[codes]
    # ids repeat across events: one shared string object per id (interned) keeps a long state small
    entries = zip(
        interned(batch.items[keep]),
        interned(batch.rooms[keep]),
        batch.ts[keep].tolist(),
        interned(batch.types[keep]),
        strict=True,
    )
    for u, entry in zip(interned(batch.users[keep]), entries, strict=True):
        rows = out.get(u)
        if rows is None:
            out[u] = [entry]
        else:
            rows.append(entry)
    return out


def audience_updates(batch: Batch) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
    """``(room, user, last_seen)`` to upsert (keeping the larger last-seen) and ``(room, user)`` to remove.

    Per (room, user) pair the latest event of the batch decides: ``leave`` removes the viewer,
    an impression changes nothing, any other event marks them present at its time.
    """
    sel = np.not_equal(batch.rooms, None) & (batch.types != "impression")  # type: ignore[call-overload]
    last: dict[tuple[str, str], tuple[float, str]] = {}
    for r, u, t, ty in zip(
        batch.rooms[sel].tolist(),
        batch.users[sel].tolist(),
        batch.ts[sel].tolist(),
        batch.types[sel].tolist(),
        strict=True,
    ):
        last[(r, u)] = (t, ty)  # the batch is time-sorted: the last write is the latest event
    upserts = [(r, u, t) for (r, u), (t, ty) in last.items() if ty != "leave"]
    removes = [(r, u) for (r, u), (_, ty) in last.items() if ty == "leave"]
    return upserts, removes


def check_limit(limit: int | None) -> None:
    check_param(
        "limit",
        limit,
        limit is None or (isinstance(limit, int) and limit >= 1),
        "an int >= 1 or None",
        "user_sequence",
    )
