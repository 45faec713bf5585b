"""The online-state contract and the arithmetic both backends share.

Everything that decides an answer (batch preparation, decayed-counter maths, shelf
ordering, audience rules) lives here as plain functions, so the in-memory and the Redis
backend give equal answers; the backends only store and fetch.

Decayed counters are kept in *log space*. An event of weight ``w`` at time ``t`` adds
``w * 2 ** (-(T - t) / half_life)`` to a counter read at time ``T``. A counter is stored
as one float, its log-score ``s = log2(sum_i w_i * 2 ** ((t_i - ANCHOR) / half_life))``;
its value at ``T`` is ``2 ** (s - (T - ANCHOR) / half_life)``. Adding a batch is a
log-add-exp (``hi + log2(1 + 2 ** (lo - hi))``), order-independent, so out-of-order
events are exact too, and ranking counters by value at any ``T`` is ranking by ``s``
(a Redis sorted set answers top-k directly).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import math
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.files import atomic_write_text
from liveshelf.data.timeline import TimeLike, to_seconds, to_seconds_array
from liveshelf.errors import ConfigError, DataFormatError, ValidationError, check_param
from liveshelf.schema import EVENT_TYPES, EVENT_WEIGHTS

#: Counter families: ``top(kind, ...)`` / ``counter(kind, ...)``. ``room_item`` is scoped by room.
COUNTER_KINDS: tuple[str, ...] = ("item", "room", "host", "room_item", "category")

#: Reference time (epoch seconds) of the log-scores; keeps them small so doubles stay precise.
ANCHOR = 1_700_000_000.0

#: Event types kept in user sequences by default (impressions are exposure, not behaviour).
SEQUENCE_TYPES: frozenset[str] = frozenset(t for t in EVENT_TYPES if t != "impression")

SNAPSHOT_FORMAT = "liveshelf-online-state"
SNAPSHOT_VERSION = 1

SeqEntry = tuple[str | None, str | None, float, str]


# ---------------------------------------------------------------------------------- batches
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


def _ids(frame: pd.DataFrame, col: str) -> np.ndarray:
    """An id column as an object array of str, None where missing."""
    if col not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    out = frame[col].to_numpy(dtype=object, na_value=None)
    if pd.api.types.infer_dtype(out, skipna=True) not in ("string", "empty"):
        out = np.asarray([None if x is None else str(x) for x in out], dtype=object)
    return out


def _seconds(values: pd.Series) -> np.ndarray:
    """Float epoch seconds of a datetime, numeric or string column (vectorised for datetimes)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        us = pd.Series(values).dt.as_unit(
            "us"
        )  # microseconds / 1e6: the same doubles as Timestamp.timestamp()
        out = us.array.asi8 / 1e6
        out[us.isna().to_numpy()] = np.nan
        return out
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return to_seconds_array(values.to_numpy())


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
    ts = _seconds(events["ts"])
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
        users=_ids(events, "user")[order],
        items=_ids(events, "item")[order],
        rooms=_ids(events, "room")[order],
        ts=ts[order],
        types=types[order],
        event_ids=_ids(events, "event_id")[order],
    )


def _intern(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def interned(values: np.ndarray) -> list[Any]:
    """``values`` as a list whose strings are interned (one object per distinct id); None / NaN -> None.
    Each distinct value is interned once per call (ids repeat within a batch)."""
    codes, uniq = pd.factorize(values)
    table = np.empty(len(uniq) + 1, dtype=object)
    table[: len(uniq)] = [_intern(u) for u in uniq.tolist()]
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
    sel = np.not_equal(batch.rooms, None) & (batch.types != "impression")
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


# ---------------------------------------------------------------------------------- counters
def log_add(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``log2(2**a + 2**b)`` as ``hi + log2(1 + 2**(lo - hi))`` (the Redis script does the same).

    ``a`` may be ``-inf`` (a new counter); ``b`` must be finite.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    hi = np.maximum(a, b)  # b is finite, so hi is finite and lo - hi is well defined (a may be -inf)
    lo = np.minimum(a, b)
    return hi + np.log(1.0 + np.exp2(lo - hi)) / math.log(2.0)


def decayed(score: np.ndarray | float, t: float, half_life: float) -> np.ndarray:
    """Counter value at ``t`` from log-scores."""
    return np.exp2(np.asarray(score, dtype=np.float64) - (t - ANCHOR) / half_life)


def _group_log_sum(codes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``codes`` (ascending) and ``log2(sum(2**x))`` per code (max-shifted, no underflow)."""
    uniq, inv = np.unique(codes, return_inverse=True)
    m = np.full(len(uniq), -np.inf)
    np.maximum.at(m, inv, x)
    total = np.bincount(inv, weights=np.exp2(x - m[inv]), minlength=len(uniq))
    return uniq, m + np.log2(total)


@dataclass(frozen=True)
class CounterUpdate:
    """Log-scores to add: ``scopes[i]`` is the room for ``room_item`` (else ``""``)."""

    scopes: np.ndarray
    keys: np.ndarray
    scores: np.ndarray


@functools.lru_cache(maxsize=65_536)
def category_prefixes(path: str) -> tuple[str, ...]:
    """``"a > b > c"`` -> ``("a", "a > b", "a > b > c")`` (every level is counted; memoised: a catalogue has
    few distinct paths)."""
    parts = [p.strip() for p in path.split(">") if p.strip()]
    return tuple(" > ".join(parts[: i + 1]) for i in range(len(parts)))


def counter_updates(
    batch: Batch, half_life: float, host_of: dict[str, str | None], category_of: dict[str, str | None]
) -> dict[str, CounterUpdate]:
    """Aggregated log-score increments per counter kind for one batch."""
    t_codes, t_uniq = pd.factorize(batch.types)
    w = np.asarray([EVENT_WEIGHTS[t] for t in t_uniq], dtype=np.float64)[t_codes]
    pos = w > 0
    if not pos.any():
        return {}
    x_all = np.where(pos, np.log2(np.where(pos, w, 1.0)) + (batch.ts - ANCHOR) / half_life, -np.inf)
    r_codes, r_uniq = pd.factorize(batch.rooms)  # None -> -1
    i_codes, i_uniq = pd.factorize(batch.items)
    r_uniq = np.asarray(r_uniq, dtype=object)
    i_uniq = np.asarray(i_uniq, dtype=object)
    has_item = pos & (i_codes >= 0)
    has_room = pos & (r_codes >= 0)
    out: dict[str, CounterUpdate] = {}

    def add(kind: str, codes: np.ndarray, names: np.ndarray, x: np.ndarray) -> None:
        if not len(codes):
            return
        uniq, s = _group_log_sum(codes, x)
        out[kind] = CounterUpdate(np.full(len(uniq), "", dtype=object), names[uniq], s)

    add("item", i_codes[has_item], i_uniq, x_all[has_item])
    add("room", r_codes[has_room], r_uniq, x_all[has_room])
    host_names = np.asarray([host_of.get(r) for r in r_uniq.tolist()], dtype=object)
    if len(host_names):
        h_codes_of_room, h_uniq = pd.factorize(host_names)
        h_codes = np.where(r_codes >= 0, h_codes_of_room[np.maximum(r_codes, 0)], -1)
        has_host = has_room & (h_codes >= 0)
        add("host", h_codes[has_host], np.asarray(h_uniq, dtype=object), x_all[has_host])
    both = has_item & has_room
    if both.any():
        pair = r_codes[both].astype(np.int64) * len(i_uniq) + i_codes[both]
        uniq, s = _group_log_sum(pair, x_all[both])
        out["room_item"] = CounterUpdate(r_uniq[uniq // len(i_uniq)], i_uniq[uniq % len(i_uniq)], s)
    if category_of:
        levels_of = [category_prefixes(c) if (c := category_of.get(it)) else [] for it in i_uniq.tolist()]
        n_levels = np.asarray([len(v) for v in levels_of], dtype=np.int64)
        rows = np.nonzero(has_item)[0]
        rows = rows[n_levels[i_codes[rows]] > 0]
        if len(rows):
            flat = [lv for v in levels_of for lv in v]
            offsets = np.concatenate([[0], np.cumsum(n_levels)])
            counts = n_levels[i_codes[rows]]
            rep = np.repeat(rows, counts)
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            level_idx = offsets[i_codes[rep]] + within
            c_codes, c_uniq = pd.factorize(np.asarray(flat, dtype=object)[level_idx])
            add("category", c_codes, np.asarray(c_uniq, dtype=object), x_all[rep])
    return out


def check_kind(kind: str, scope: str | None, where: str) -> None:
    check_param("kind", kind, kind in COUNTER_KINDS, f"one of {list(COUNTER_KINDS)}", where)
    if kind == "room_item":
        check_param(
            "scope",
            scope,
            isinstance(scope, str) and bool(scope),
            "a room id (room_item counters are per room)",
            where,
        )
    else:
        check_param(
            "scope", scope, scope is None, f"None for kind {kind!r} (only room_item takes a scope)", where
        )


def check_limit(limit: int | None) -> None:
    check_param(
        "limit",
        limit,
        limit is None or (isinstance(limit, int) and limit >= 1),
        "an int >= 1 or None",
        "user_sequence",
    )


def rank_top(pairs: Iterable[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """Top ``k`` by score; ties by key, descending (the order of Redis ``ZREVRANGE``)."""
    return sorted(pairs, key=lambda p: (p[1], p[0]), reverse=True)[:k]


# ---------------------------------------------------------------------------------- rooms and shelves
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
    ids = _ids(frame, "id")
    hosts = _ids(frame, "host")
    titles = _ids(frame, "title")
    start = _seconds(frame["start"])
    end = _seconds(frame["end"]) if "end" in frame.columns else np.full(len(frame), np.nan)
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
    rooms, items = _ids(frame, "room"), _ids(frame, "item")
    start = _seconds(frame["start"])
    end = _seconds(frame["end"]) if "end" in frame.columns else np.full(len(frame), np.nan)
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


# ---------------------------------------------------------------------------------- snapshots
# ---------------------------------------------------------------------------------- live layout
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


# ---------------------------------------------------------------------------------- the contract
class OnlineState(abc.ABC):
    """Per-user sequences, rooms, shelves, audiences and decayed counters, shared by requests.

    Times are epoch seconds, datetimes, pandas timestamps or ISO strings (``TimeLike``).
    Subclasses implement the storage; answers are decided by this module's functions.
    """

    def __init__(
        self,
        *,
        max_seq: int = 200,
        half_life: float = 3600.0,
        audience_ttl: float = 600.0,
        sequence_types: Iterable[str] | None = None,
        dedupe_window: float = 86_400.0,
    ) -> None:
        where = type(self).__name__
        check_param(
            "dedupe_window",
            dedupe_window,
            isinstance(dedupe_window, (int, float)) and dedupe_window >= 0,
            "a number of seconds >= 0 (0 turns de-duplication off)",
            where,
        )
        check_param("max_seq", max_seq, isinstance(max_seq, int) and max_seq >= 1, "an int >= 1", where)
        check_param(
            "half_life",
            half_life,
            isinstance(half_life, (int, float)) and half_life > 0,
            "a number of seconds > 0",
            where,
        )
        check_param(
            "audience_ttl",
            audience_ttl,
            isinstance(audience_ttl, (int, float)) and audience_ttl > 0,
            "a number of seconds > 0",
            where,
        )
        types = SEQUENCE_TYPES if sequence_types is None else frozenset(sequence_types)
        bad = sorted(types - set(EVENT_TYPES))
        check_param("sequence_types", bad, not bad, f"event types among {list(EVENT_TYPES)}", where)
        self.max_seq = max_seq
        self.half_life = float(half_life)
        self.audience_ttl = float(audience_ttl)
        self.sequence_types = types
        self.dedupe_window = float(dedupe_window)
        self._sync_lock = threading.Lock()

    # ---- events ------------------------------------------------------------------------------
    @abc.abstractmethod
    def apply_events(self, events: pd.DataFrame) -> int:
        """Apply an events frame (schema columns); returns the number of events applied.

        Events whose ``event_id`` was applied before (within ``dedupe_window`` seconds of event
        time before the batch's latest event) are skipped, so a retried post counts once.
        """

    #: Events per step when the state is rebuilt from the store (one state transaction each).
    replay_chunk: int = 1_000

    def replay_events(self, events: pd.DataFrame) -> int:
        """Apply store events while rebuilding from the store: like :meth:`apply_events`, but a backend may skip
        the event-id de-duplication (the store holds each id once). Returns the number applied."""
        return self.apply_events(events)

    # ---- sync with the store ------------------------------------------------------------------
    # The state is a view of the event store that always catches up: it records the store's ingest
    # order (``seq``) it has applied up to, and an ``epoch`` set when it was (re)built from the store.
    # A state that lost its data (a Redis restarted empty) has no epoch, and is rebuilt.
    @abc.abstractmethod
    def sync_point(self) -> tuple[str | None, int | None]:
        """``(epoch, seq)``: the build this state belongs to and the last store seq applied (None: unknown)."""

    @abc.abstractmethod
    def mark_synced(self, epoch: str, seq: int) -> None:
        """Record that the state holds the store's events up to ``seq`` (a (re)build named ``epoch``)."""

    @abc.abstractmethod
    def apply_synced(self, events: pd.DataFrame, seq: int) -> int:
        """Apply store events (their ``seq`` above the state's and at most ``seq``) and move the state's seq to
        ``seq`` in one atomic step, so a crash or a lost connection leaves both or neither. No event-id
        de-duplication: the seq is what makes a retry count once. Returns the events applied."""

    @contextlib.contextmanager
    def sync_lock(self, timeout_s: float = 10.0, ttl_s: float = 30.0) -> Iterator[None]:
        """Held while catching the state up; a shared backend makes it a lock across workers."""
        with self._sync_lock:
            yield

    def keep_sync_lock(self) -> None:  # noqa: B027  (a no-op here: an in-process lock does not expire)
        """Extend the sync lock while a long catch-up or rebuild holds it (a shared backend's lock expires)."""

    @abc.abstractmethod
    def user_sequence(self, user: str, limit: int | None = None) -> list[SeqEntry]:
        """The user's recent ``(item, room, ts, type)`` entries, oldest first (last ``limit`` only)."""

    @abc.abstractmethod
    def delete_user(self, user: str) -> None:
        """Forget the user's sequence and audience membership (counters are anonymous aggregates)."""

    # ---- catalogue ---------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert_items(self, frame: pd.DataFrame) -> int:
        """Record item categories (columns ``id``, ``category``) for the category counters."""

    @abc.abstractmethod
    def upsert_rooms(self, frame: pd.DataFrame) -> int:
        """Insert or replace rooms (``id, host, title, start, end``); returns the number of rows."""

    @abc.abstractmethod
    def end_room(self, room: str, t: TimeLike) -> None:
        """Close ``room`` at ``t``: its open shelf slots close and its audience empties."""

    @abc.abstractmethod
    def room(self, room: str) -> dict[str, Any] | None:
        """``{id, host, title, start, end}`` (epoch seconds, ``end`` None while live) or None."""

    @abc.abstractmethod
    def live_rooms(self, t: TimeLike) -> list[str]:
        """Rooms live at ``t`` (``start <= t < end``), by start time then id."""

    @abc.abstractmethod
    def upsert_shelf(self, frame: pd.DataFrame) -> int:
        """Insert or replace shelf slots (``room, item, start, end, pinned``), keyed by (room, item, start)."""

    @abc.abstractmethod
    def unpin(self, room: str, item: str, t: TimeLike) -> int:
        """``item`` stays on ``room``'s shelf but is not pinned from ``t``; returns slots changed."""

    @abc.abstractmethod
    def end_slot(self, room: str, item: str, t: TimeLike) -> int:
        """Take ``item`` off ``room``'s shelf at ``t``; returns slots closed."""

    @abc.abstractmethod
    def shelf(self, room: str, t: TimeLike) -> list[str]:
        """Items on the shelf at ``t`` (empty unless the room is live), pinned first."""

    @abc.abstractmethod
    def audience(self, room: str, t: TimeLike) -> list[str]:
        """Viewers in ``room`` at ``t``: entered, not left, seen within ``audience_ttl``; latest first."""

    def audience_sizes(self, rooms: Sequence[str], t: TimeLike) -> np.ndarray:
        """How many viewers each of ``rooms`` has at ``t`` (``len(audience(room, t))``, in one call)."""
        return np.asarray([len(self.audience(r, t)) for r in rooms], dtype=np.float64)

    @abc.abstractmethod
    def prune(self, t: TimeLike) -> int:
        """Drop audience entries older than ``t - audience_ttl``; returns how many."""

    # ---- counters ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _top_scores(self, kind: str, k: int, scope: str | None) -> list[tuple[str, float]]:
        """Top ``k`` (key, log-score) in :func:`rank_top` order."""

    @abc.abstractmethod
    def _score(self, kind: str, key: str, scope: str | None) -> float | None:
        """The log-score of one counter, or None."""

    def top(self, kind: str, k: int, t: TimeLike, scope: str | None = None) -> list[tuple[str, float]]:
        """The ``k`` largest decayed counters of ``kind`` at ``t`` as ``(key, value)``.

        ``kind`` is one of :data:`COUNTER_KINDS`; ``room_item`` needs ``scope=room`` and
        returns item ids.
        """
        check_kind(kind, scope, "top")
        check_param("k", k, isinstance(k, int) and k >= 1, "an int >= 1", "top")
        t = to_seconds(t)
        pairs = self._top_scores(kind, k, scope)
        return [(key, float(decayed(s, t, self.half_life))) for key, s in pairs]

    def counter(self, kind: str, key: str | tuple[str, str], t: TimeLike) -> float:
        """One decayed counter at ``t`` (0.0 when never counted); ``room_item`` keys are ``(room, item)``."""
        scope = None
        if kind == "room_item":
            check_param(
                "key", key, isinstance(key, tuple) and len(key) == 2, "a (room, item) tuple", "counter"
            )
            scope, key = key
        check_kind(kind, scope, "counter")
        s = self._score(kind, str(key), scope)
        return 0.0 if s is None else float(decayed(s, to_seconds(t), self.half_life))

    def counters(self, kind: str, keys: Sequence[str], t: TimeLike) -> np.ndarray:
        """:meth:`counter` of many keys at once (not ``room_item``); backends read them in one go."""
        return np.asarray([self.counter(kind, k, t) for k in keys], dtype=np.float64)

    # ---- batch reads -------------------------------------------------------------------------
    def rooms(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """:meth:`room` of many rooms at once."""
        return [self.room(r) for r in ids]

    def live_version(self) -> int | None:
        """A number every room / shelf write changes (None: this backend keeps none).

        With :meth:`live_layout` it lets a reader cache the live layout safely.
        """
        return None

    def live_layout(self, t: TimeLike) -> LiveLayout:
        """Live rooms at ``t`` with their rows and shelves, and the interval over which that holds."""
        t = to_seconds(t)
        rooms = self.live_rooms(t)
        info = self.rooms(rooms)
        keep = [j for j, row in enumerate(info) if row is not None and is_live(row, t)]
        return LiveLayout(
            [rooms[j] for j in keep],
            [info[j] for j in keep],  # type: ignore[misc]
            [self.shelf(rooms[j], t) for j in keep],
            t,
            float(np.nextafter(t, math.inf)),
        )

    # ---- whole state -------------------------------------------------------------------------
    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything."""

    @abc.abstractmethod
    def export(self) -> dict[str, Any]:
        """The whole state as a JSON-able dict (the snapshot format)."""

    @abc.abstractmethod
    def _import(self, data: dict[str, Any]) -> None:
        """Replace the state by an :meth:`export` dict (already checked)."""

    def _header(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "anchor": ANCHOR,
            "half_life": self.half_life,
            "max_seq": self.max_seq,
        }

    def load(self, data: dict[str, Any]) -> None:
        """Replace the state by an :meth:`export` dict (from either backend)."""
        if data.get("format") != SNAPSHOT_FORMAT or data.get("version") != SNAPSHOT_VERSION:
            raise DataFormatError(
                f"Not an online-state snapshot of version {SNAPSHOT_VERSION}: format="
                f"{data.get('format')!r}, version={data.get('version')!r}. Take a new snapshot."
            )
        if data.get("anchor") != ANCHOR or float(data.get("half_life", -1)) != self.half_life:
            raise ConfigError(
                f"The snapshot was taken with half_life={data.get('half_life')} s; this state uses "
                f"half_life={self.half_life} s. Create the state with the snapshot's half_life."
            )
        self._import(data)

    def snapshot(self, path: Path | str) -> Path:
        """Write the state to ``path`` (JSON, atomically: temp file + ``os.replace``)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.export(), ensure_ascii=False, separators=(",", ":")))
        return path

    def restore(self, path: Path | str) -> None:
        """Replace the state by the snapshot at ``path``."""
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"No online-state snapshot at '{path}'. Take one with snapshot() first.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"The snapshot '{path}' is not valid JSON ({exc}); it may be truncated. "
                "Delete it or restore another one."
            ) from exc
        self.load(data)

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections (the memory backend has none)."""
