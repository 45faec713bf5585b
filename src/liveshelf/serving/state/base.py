"""The online-state contract: :class:`OnlineState`, the interface both backends implement.

Everything that decides an answer lives in plain functions, so the in-memory and the Redis
backend give equal answers; the backends only store and fetch:

- :mod:`~liveshelf.serving.state.batch` — event batches, sequence entries, audience changes;
- :mod:`~liveshelf.serving.state.counters` — decayed counters in log space (``ANCHOR``, top-k order);
- :mod:`~liveshelf.serving.state.shelves` — room and slot rows, shelf order, audiences, live layouts.

Their names stay importable from here.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from liveshelf.core.catalog import category_prefixes
from liveshelf.core.files import atomic_write_text
from liveshelf.core.timeutil import TimeLike, to_seconds
from liveshelf.errors import ConfigError, DataFormatError, check_param
from liveshelf.schema import EVENT_TYPES
from liveshelf.serving.state.batch import (
    SEQUENCE_TYPES,
    Batch,
    SeqEntry,
    audience_updates,
    check_limit,
    interned,
    prepare_events,
    sequence_rows,
)
from liveshelf.serving.state.counters import (
    ANCHOR,
    COUNTER_KINDS,
    CounterUpdate,
    check_kind,
    counter_updates,
    decayed,
    log_add,
    rank_top,
)
from liveshelf.serving.state.shelves import (
    LiveLayout,
    audience_order,
    check_end_time,
    end_item_slots,
    end_room_slots,
    is_live,
    order_shelf,
    room_rows,
    slot_rows,
    unpin_slots,
    validity,
)

SNAPSHOT_FORMAT = "liveshelf-online-state"
SNAPSHOT_VERSION = 1


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
            scope, key = cast("tuple[str, str]", key)
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


__all__ = [
    "ANCHOR",
    "COUNTER_KINDS",
    "SEQUENCE_TYPES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "Batch",
    "CounterUpdate",
    "LiveLayout",
    "OnlineState",
    "SeqEntry",
    "audience_order",
    "audience_updates",
    "category_prefixes",
    "check_end_time",
    "check_kind",
    "check_limit",
    "counter_updates",
    "decayed",
    "end_item_slots",
    "end_room_slots",
    "interned",
    "is_live",
    "log_add",
    "order_shelf",
    "prepare_events",
    "rank_top",
    "room_rows",
    "sequence_rows",
    "slot_rows",
    "unpin_slots",
    "validity",
]
