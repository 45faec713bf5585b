"""Availability timeline: which rooms are live, and what is on their shelves, at time t.

Intervals are half open, ``start <= t < end``; an open end (``None`` / ``NaT``) means
"still live" and is stored as ``+inf``. Times are float epoch seconds inside; every
public method also accepts datetimes, pandas timestamps and ISO strings.

The index is a static segment tree (:mod:`liveshelf.data.intervals`): a point query costs
O(log n + answer). Time conversion is :mod:`liveshelf.core.timeutil` (``to_seconds``,
``to_seconds_array`` and ``seconds_to_ts`` stay importable from here).

Serving changes availability while the index is in use. New rooms / slots go to a
small pending tail scanned linearly; ending an interval only shrinks it, so the index
keeps returning a superset that is filtered against the current ``end`` array. The
index is rebuilt once the pending tail or the number of shrunk intervals grows past
``rebuild_every`` (amortised cost of a rebuild per change stays small).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import TimeLike, to_epoch_seconds, to_seconds, to_seconds_array
from liveshelf.core.timeutil import from_epoch_seconds as seconds_to_ts
from liveshelf.data.intervals import GrowArray, IdArray, IntervalIndex, IntervalStore, LiveSets, csr
from liveshelf.errors import NotFoundError, ValidationError

_NO_IDS = np.zeros(0, dtype=str)
_NO_IDS.flags.writeable = False


def _end_seconds(values: pd.Series) -> np.ndarray:
    out = np.array(to_epoch_seconds(values), dtype=np.float64)
    out[np.isnan(out)] = np.inf
    return out


class Timeline:
    """Room and shelf availability over time, with point, batch and incremental operations.

    >>> tl = Timeline(rooms_frame, shelf_frame)             # doctest: +SKIP
    >>> tl.live_rooms(t); tl.shelf_at("r1", t); tl.on_shelf("r1", "i9", t)  # doctest: +SKIP
    """

    def __init__(
        self,
        rooms: pd.DataFrame | None = None,
        shelf: pd.DataFrame | None = None,
        *,
        rebuild_every: int = 512,
    ) -> None:
        rooms = rooms if rooms is not None else pd.DataFrame({c: [] for c in ("id", "host", "start", "end")})
        shelf = (
            shelf
            if shelf is not None
            else pd.DataFrame({c: [] for c in ("room", "item", "start", "end", "pinned")})
        )
        for name, frame, cols in (
            ("rooms", rooms, ("id", "start", "end")),
            ("shelf", shelf, ("room", "item", "start", "end")),
        ):
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise ValidationError(
                    f"The {name} frame given to Timeline lacks columns {missing}; "
                    f"expected the schema columns {list(cols)}. Rename the columns.",
                    field=name,
                    value=list(frame.columns),
                )
        room_ids = rooms["id"].astype(str).to_numpy(dtype=object)
        if len(set(room_ids)) != len(room_ids):
            dup = pd.Series(room_ids)[pd.Series(room_ids).duplicated()].iloc[0]
            raise ValidationError(
                f"Room ids must be unique; {dup!r} appears twice. Deduplicate the rooms frame.",
                field="rooms.id",
                value=dup,
            )
        self._room_ids = IdArray(room_ids)
        self._room_idx: dict[str, int] = {r: i for i, r in enumerate(room_ids)}
        hosts = rooms["host"].astype(str).tolist() if "host" in rooms.columns else [""] * len(rooms)
        self._room_host: list[str] = hosts
        r_start = to_epoch_seconds(rooms["start"]) if len(rooms) else np.zeros(0)
        r_end = _end_seconds(rooms["end"]) if len(rooms) else np.zeros(0)
        bad = np.isnan(r_start) | (r_end < r_start)
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise ValidationError(
                f"Room {room_ids[i]!r} has start {rooms['start'].iloc[i]!r} and end {rooms['end'].iloc[i]!r}; "
                "a room needs a start and an end that is not before it (or no end while live).",
                field="rooms.start",
                value=rooms["start"].iloc[i],
            )
        self._rooms = IntervalStore(r_start, r_end, rebuild_every)
        self._member_ids: np.ndarray = _NO_IDS
        self._member_ids_of: IntervalIndex | None = None

        # shelf slots, grouped by room (CSR) plus per-room pending lists for serving updates
        s_room = shelf["room"].astype(str).to_numpy(dtype=object)
        s_room_idx = pd.Index(room_ids).get_indexer(s_room).astype(np.int64)
        if (s_room_idx < 0).any():
            bad_room = s_room[int(np.argmin(s_room_idx))]
            raise ValidationError(
                f"Shelf slots refer to rooms absent from the rooms frame, e.g. {bad_room!r}; "
                "add those rooms or drop their slots.",
                field="shelf.room",
                value=bad_room,
            )
        items = shelf["item"].astype(str).to_numpy(dtype=object)
        s_item_idx, uniq = pd.factorize(items)  # hashing: fast on millions of strings
        self._item_ids = IdArray(uniq)
        self._item_idx: dict[str, int] = {it: i for i, it in enumerate(uniq)}
        s_start = to_epoch_seconds(shelf["start"]) if len(shelf) else np.zeros(0)
        s_end = _end_seconds(shelf["end"]) if len(shelf) else np.zeros(0)
        if np.isnan(s_start).any():
            i = int(np.nonzero(np.isnan(s_start))[0][0])
            raise ValidationError(
                f"Shelf slot {i} (room {s_room[i]!r}, item {items[i]!r}) has no start; "
                "every slot needs a start time.",
                field="shelf.start",
                value=None,
            )
        pinned = (
            shelf["pinned"].fillna(False).astype(bool).to_numpy()
            if "pinned" in shelf.columns
            else np.zeros(len(shelf), bool)
        )
        self._slots = IntervalStore(s_start, s_end, rebuild_every, lazy=True)
        self._slot_room = GrowArray(np.asarray(s_room_idx, np.int64))
        self._slot_item = GrowArray(np.asarray(s_item_idx, np.int64))
        self._slot_pinned = GrowArray(np.asarray(pinned, bool))
        self._rebuild_every = rebuild_every
        self._build_room_slots()

    def _build_room_slots(self) -> None:
        """Slots grouped by room (CSR); slots added later wait in ``_pending_slots`` until the next build."""
        n_rooms = self._rooms.n
        s_room = self._slot_room.view
        self._room_slots = np.argsort(s_room, kind="stable").astype(np.int64)
        self._room_slot_ptr = np.zeros(n_rooms + 1, np.int64)
        np.cumsum(np.bincount(s_room, minlength=n_rooms), out=self._room_slot_ptr[1:])
        self._room_slot_ptr_list = self._room_slot_ptr.tolist()
        self._pending_slots: dict[int, list[int]] = {}
        self._n_pending_slots = 0
        self._n_rooms_csr = n_rooms

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_dataset(cls, ds: Any, **kw: Any) -> Timeline:
        """A timeline from a :class:`~liveshelf.data.dataset.Dataset` with ``rooms`` (and ``shelf``)."""
        if ds.rooms is None:
            raise ValidationError(
                f"Dataset {ds.name!r} has no rooms frame; a timeline needs rooms. "
                "Use a source with rooms (e.g. the simulator).",
                field="rooms",
                value=None,
            )
        return cls(ds.rooms, ds.shelf, **kw)

    @property
    def n_rooms(self) -> int:
        return self._rooms.n

    @property
    def n_slots(self) -> int:
        return self._slots.n

    @property
    def room_ids(self) -> np.ndarray:
        """Room ids in index order (``live_room_indices`` positions point into it)."""
        return self._room_ids.view

    def _slots_of(self, r: int) -> np.ndarray:
        if r < self._n_rooms_csr:
            p = self._room_slot_ptr_list
            base = self._room_slots[p[r] : p[r + 1]]
        else:
            base = np.zeros(0, np.int64)
        extra = self._pending_slots.get(r)
        if extra:
            return np.concatenate([base, np.asarray(extra, np.int64)])
        return base

    # ------------------------------------------------------------------ point queries
    def is_live(self, room: str, t: TimeLike) -> bool:
        """True when ``room`` is live at ``t`` (unknown rooms are never live)."""
        r = self._room_idx.get(room)
        if r is None:
            return False
        t = to_seconds(t)
        return bool(self._rooms.starts[r] <= t < self._rooms.ends[r])

    def live_room_indices(self, t: TimeLike) -> np.ndarray:
        """Positions in :attr:`room_ids` of the rooms live at ``t`` (no id strings materialised)."""
        return self._rooms.at(to_seconds(t))

    def live_rooms(self, t: TimeLike) -> np.ndarray:
        """Ids of the rooms live at ``t`` (str array, unordered)."""
        st = self._rooms
        if st.index is not None and st.n == st.n_indexed and not st.n_shrunk:
            # clean index: cut the answer from ids laid out in the index's member order
            if self._member_ids_of is not st.index:
                self._member_ids = self._room_ids.arr[st.index.members]
                self._member_ids.flags.writeable = False
                self._member_ids_of = st.index
            return st.index.query(to_seconds(t), self._member_ids)
        return self._rooms_arr()[st.at(to_seconds(t))]

    def _rooms_arr(self) -> np.ndarray:
        return self._room_ids.arr

    def room_span(self, room: str) -> tuple[float, float]:
        """``(start, end)`` of ``room`` in epoch seconds (end ``inf`` while live)."""
        r = self._require_room(room)
        return float(self._rooms.starts[r]), float(self._rooms.ends[r])

    def host_of(self, room: str) -> str:
        return self._room_host[self._require_room(room)]

    def _active_slots(self, r: int, t: float) -> np.ndarray:
        sl = self._slots_of(r)
        if not len(sl):
            return sl
        st = self._slots
        return sl[(st.starts[sl] <= t) & (st.ends[sl] > t)]

    def shelf_at(self, room: str, t: TimeLike) -> np.ndarray:
        """Item ids on ``room``'s shelf at ``t`` (empty when the room is not live)."""
        r = self._room_idx.get(room)
        if r is None:
            return _NO_IDS
        t = to_seconds(t)
        if not (self._rooms.starts[r] <= t < self._rooms.ends[r]):
            return _NO_IDS
        sl = self._active_slots(r, t)
        return self._items_arr()[self._slot_item.arr[sl]]

    def _items_arr(self) -> np.ndarray:
        return self._item_ids.arr

    def pinned_at(self, room: str, t: TimeLike) -> np.ndarray:
        """Item ids pinned in ``room`` at ``t``."""
        r = self._room_idx.get(room)
        if r is None or not self.is_live(room, t):
            return _NO_IDS
        sl = self._active_slots(r, to_seconds(t))
        sl = sl[self._slot_pinned.arr[sl]]
        return self._items_arr()[self._slot_item.arr[sl]]

    def on_shelf(self, room: str, item: str, t: TimeLike) -> bool:
        """True when ``item`` can be bought in ``room`` at ``t`` (room live and item on its shelf)."""
        r = self._room_idx.get(room)
        it = self._item_idx.get(item)
        if r is None or it is None:
            return False
        t = to_seconds(t)
        if not (self._rooms.starts[r] <= t < self._rooms.ends[r]):
            return False
        sl = self._slots_of(r)
        st = self._slots
        sl = sl[self._slot_item.arr[sl] == it]
        return bool(((st.starts[sl] <= t) & (st.ends[sl] > t)).any())

    def available_items_at(self, t: TimeLike) -> np.ndarray:
        """Ids of items on the shelf of at least one live room at ``t`` (unique).

        Cost: the live-room query plus the slots of the live rooms (their shelves).
        """
        t = to_seconds(t)
        rooms = self._rooms.at(t)
        rooms = rooms[rooms < self._n_rooms_csr]
        ptr = self._room_slot_ptr
        lo, cnt = ptr[rooms], ptr[rooms + 1] - ptr[rooms]
        pos = np.arange(int(cnt.sum()), dtype=np.int64) + np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
        sl = self._room_slots[pos]
        if self._n_pending_slots:
            extra = np.asarray([k for v in self._pending_slots.values() for k in v], np.int64)
            er = self._slot_room.arr[extra]
            sl = np.concatenate([sl, extra[(self._rooms.starts[er] <= t) & (self._rooms.ends[er] > t)]])
        sl = sl[(self._slots.starts[sl] <= t) & (self._slots.ends[sl] > t)]
        return self._items_arr()[np.unique(self._slot_item.arr[sl])]

    # ------------------------------------------------------------------ batch queries
    def live_rooms_at(self, ts: Any, *, as_ids: bool = True) -> LiveSets:
        """The live rooms at every time in ``ts``, as CSR :class:`LiveSets` (ids or indices)."""
        ts = to_seconds_array(ts)
        q, i = self._rooms.at_batch(ts)
        offsets, vals = csr(q, i, len(ts))
        if as_ids:
            vals = self._rooms_arr()[vals]
        return LiveSets(offsets, vals)

    def _room_positions(self, rooms: Any) -> np.ndarray:
        """Index of each room id (-1 when unknown), by hashing the whole array at once."""
        return pd.Index(self._room_ids.view).get_indexer(np.asarray(rooms, dtype=object)).astype(np.int64)

    def is_live_batch(self, rooms: Any, ts: Any) -> np.ndarray:
        """Elementwise ``is_live(rooms[k], ts[k])`` as a bool array."""
        ts = to_seconds_array(ts)
        idx = self._room_positions(rooms)
        ok = idx >= 0
        j = np.where(ok, idx, 0)
        return ok & (self._rooms.starts[: self.n_rooms][j] <= ts) & (self._rooms.ends[: self.n_rooms][j] > ts)

    def on_shelf_batch(self, rooms: Any, items: Any, ts: Any) -> np.ndarray:
        """Elementwise ``on_shelf(rooms[k], items[k], ts[k])`` as a bool array (vectorised)."""
        ts = to_seconds_array(ts)
        n = len(ts)
        live = self.is_live_batch(rooms, ts)
        r_idx = self._room_positions(rooms)
        i_idx = pd.Index(self._item_ids.view).get_indexer(np.asarray(items, dtype=object)).astype(np.int64)
        ns = self._slots.n
        # all slots keyed by (room, item); each query checks the slots of its own pair
        n_items = self._item_ids.n + 1
        key = self._slot_room.view * n_items + self._slot_item.view
        order = np.argsort(key, kind="stable")
        skey = key[order]
        qkey = r_idx * n_items + i_idx
        lo = np.searchsorted(skey, qkey, side="left")
        hi = np.searchsorted(skey, qkey, side="right")
        cnt = np.where(live & (i_idx >= 0), hi - lo, 0)
        qrep = np.repeat(np.arange(n), cnt)
        pos = np.arange(int(cnt.sum())) + np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
        s = order[pos] if ns else pos
        hit = (self._slots.starts[s] <= ts[qrep]) & (self._slots.ends[s] > ts[qrep])
        out = np.zeros(n, bool)
        out[qrep[hit]] = True
        return out

    # ------------------------------------------------------------------ incremental updates
    def _require_room(self, room: str) -> int:
        r = self._room_idx.get(room)
        if r is None:
            raise NotFoundError(f"Room {room!r} is not in the timeline; add it with add_room first.")
        return r

    def add_room(self, room: str, host: str, start: TimeLike, end: TimeLike | None = None) -> None:
        """Register a new room (``end=None`` while it is live)."""
        if room in self._room_idx:
            raise ValidationError(
                f"Room {room!r} is already in the timeline; room ids must be unique. "
                "Use end_room to close it.",
                field="room",
                value=room,
            )
        s = to_seconds(start)
        e = math.inf if end is None else to_seconds(end)
        if e < s:
            raise ValidationError(
                f"The 'end' of room {room!r} must not be before its start {s}. Got {e} instead.",
                field="end",
                value=e,
            )
        self._room_idx[room] = self._rooms.append(s, e)
        self._room_ids.append(room)
        self._room_host.append(host)

    def end_room(self, room: str, t: TimeLike) -> None:
        """Close ``room`` at ``t``; its open shelf slots close at ``t`` too."""
        r = self._require_room(room)
        t = to_seconds(t)
        s, e = self._rooms.starts[r], self._rooms.ends[r]
        if not (s <= t <= e):
            raise ValidationError(
                f"The end time of room {room!r} must lie in [{s}, {e}] (its start and current end). "
                f"Got {t} instead.",
                field="t",
                value=t,
            )
        self._rooms.shrink(r, t)
        for sl in self._slots_of(r).tolist():
            if self._slots.ends[sl] > t:
                self._slots.shrink(sl, max(t, float(self._slots.starts[sl])))

    def add_slot(
        self, room: str, item: str, start: TimeLike, end: TimeLike | None = None, pinned: bool = False
    ) -> None:
        """Put ``item`` on ``room``'s shelf from ``start`` (until ``end``, or open)."""
        r = self._require_room(room)
        s = to_seconds(start)
        e = math.inf if end is None else to_seconds(end)
        if e < s:
            raise ValidationError(
                f"The 'end' of the slot of {item!r} in {room!r} must not be before its start "
                f"{s}. Got {e} instead.",
                field="end",
                value=e,
            )
        it = self._item_idx.get(item)
        if it is None:
            it = self._item_ids.n
            self._item_idx[item] = it
            self._item_ids.append(item)
        k = self._slots.append(s, e)
        self._slot_room.append(r)
        self._slot_item.append(it)
        self._slot_pinned.append(bool(pinned))
        self._pending_slots.setdefault(r, []).append(k)
        self._n_pending_slots += 1
        if self._n_pending_slots > max(self._rebuild_every, self._slots.n // 20):
            self._build_room_slots()

    def end_slot(self, room: str, item: str, t: TimeLike) -> None:
        """Take ``item`` off ``room``'s shelf at ``t`` (closes every slot of it open at ``t``)."""
        r = self._require_room(room)
        t = to_seconds(t)
        it = self._item_idx.get(item)
        sl = self._slots_of(r)
        st = self._slots
        hits = (
            []
            if it is None
            else sl[(self._slot_item.arr[sl] == it) & (st.starts[sl] <= t) & (st.ends[sl] > t)].tolist()
        )
        if not hits:
            raise NotFoundError(f"Item {item!r} is not on the shelf of room {room!r} at {t}; nothing to end.")
        for s in hits:
            self._slots.shrink(s, t)


__all__ = [
    "IntervalIndex",
    "LiveSets",
    "TimeLike",
    "Timeline",
    "seconds_to_ts",
    "to_seconds",
    "to_seconds_array",
]
