"""In-memory online state: one process, one lock, numpy where a batch allows it.

The default backend. Several threads of one process share it safely (every public
method holds one re-entrant lock). Across restarts it lives on through
:meth:`~liveshelf.serving.state.base.OnlineState.snapshot` / ``restore`` (JSON file,
written atomically), by default ``<home>/state/online_state.json``.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import TimeLike, to_seconds
from liveshelf.errors import NotFoundError, ValidationError
from liveshelf.serving.state.base import OnlineState
from liveshelf.serving.state.batch import (
    Batch,
    SeqEntry,
    audience_updates,
    check_limit,
    intern_id,
    prepare_events,
    sequence_rows,
)
from liveshelf.serving.state.counters import (
    COUNTER_KINDS,
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

Slot = tuple[str, float, float | None, bool]
SEP = "\x1f"


class _Counters:
    """Log-scores of one counter family in a growable array, with a key -> row dict."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.scores = np.empty(64, np.float64)

    def __len__(self) -> int:
        return len(self.keys)

    def merge(self, keys: list[str], add: np.ndarray) -> np.ndarray:
        """Add log-scores ``add[j]`` to counter ``keys[j]`` (keys unique within a call); returns the rows."""
        n0 = len(self.keys)
        index = self.index
        rows = np.empty(len(keys), np.int64)
        for j, k in enumerate(keys):
            r = index.get(k)
            if r is None:
                r = len(self.keys)
                index[k] = r
                self.keys.append(k)
            rows[j] = r
        n = len(self.keys)
        if n > len(self.scores):
            grown = np.empty(max(n, 2 * len(self.scores)), np.float64)
            grown[:n0] = self.scores[:n0]
            self.scores = grown
        self.scores[n0:n] = -np.inf
        self.scores[rows] = log_add(self.scores[rows], add)
        return rows

    def score(self, key: str) -> float | None:
        r = self.index.get(key)
        return None if r is None else float(self.scores[r])

    def top(self, k: int, rows: np.ndarray | None = None, strip: int = 0) -> list[tuple[str, float]]:
        """Top ``k`` (key, score), among ``rows`` when given; ``strip`` drops a key prefix of that length."""
        n = len(self.keys)
        rows = np.arange(n) if rows is None else rows
        s = self.scores[rows]
        m = len(rows)
        if k < m:
            kth = np.partition(s, m - k)[m - k]
            pick = np.nonzero(s >= kth)[0]  # every tie of the k-th score, ranked below
        else:
            pick = np.arange(m)
        keys = self.keys
        return rank_top(
            ((keys[r][strip:], float(v)) for r, v in zip(rows[pick].tolist(), s[pick].tolist(), strict=True)),
            k,
        )

    def items(self) -> dict[str, float]:
        return dict(zip(self.keys, self.scores[: len(self.keys)].tolist(), strict=True))

    @classmethod
    def from_items(cls, data: dict[str, float]) -> _Counters:
        c = cls()
        c.keys = [str(k) for k in data]
        c.index = {k: i for i, k in enumerate(c.keys)}
        c.scores = np.empty(max(64, len(c.keys)), np.float64)
        c.scores[: len(c.keys)] = np.asarray(list(data.values()), dtype=np.float64)
        return c


class MemoryState(OnlineState):
    """The in-process backend (see :class:`~liveshelf.serving.state.base.OnlineState`).

    >>> state = MemoryState(max_seq=200, half_life=3600, audience_ttl=600)
    >>> state.user_sequence("u1")
    []
    """

    def __init__(
        self,
        *,
        max_seq: int = 200,
        half_life: float = 3600.0,
        audience_ttl: float = 600.0,
        sequence_types: Any = None,
        dedupe_window: float = 86_400.0,
    ) -> None:
        super().__init__(
            max_seq=max_seq,
            half_life=half_life,
            audience_ttl=audience_ttl,
            sequence_types=sequence_types,
            dedupe_window=dedupe_window,
        )
        self._lock = threading.RLock()
        self._live_version = 0
        self._reset()

    def _reset(self) -> None:
        self._live_version += 1
        self._rows_of: dict[str, tuple[Sequence[str], _Counters, int, np.ndarray]] = {}  # see _counter_rows
        self._seq: dict[str, list[SeqEntry]] = {}  # lists: a deque holds a 64-slot block even for one event
        self._aud: dict[str, dict[str, float]] = {}
        self._user_rooms: dict[str, set[str]] = {}
        self._rooms: dict[str, dict[str, Any]] = {}
        self._room_ids: list[str] = []
        self._room_pos: dict[str, int] = {}
        self._starts = np.empty(64, np.float64)
        self._ends = np.empty(64, np.float64)
        self._shelf: dict[str, dict[tuple[str, float], tuple[float | None, bool]]] = {}
        self._cat: dict[str, str] = {}
        self._counters: dict[str, _Counters] = {k: _Counters() for k in COUNTER_KINDS if k != "room_item"}
        self._pairs = _Counters()  # room_item counters keyed "room\x1fitem"
        self._pair_rows: dict[str, list[int]] = {}  # room -> its rows in _pairs
        self._seen: dict[str, float] = {}  # event id -> ts, within dedupe_window
        self._seen_heap: list[tuple[float, str]] = []
        self._epoch: str | None = None  # sync with the store: see OnlineState.sync_point
        self._synced_seq: int | None = None

    def __repr__(self) -> str:
        return (
            f"MemoryState(users={len(self._seq)}, rooms={len(self._rooms)}, "
            f"items={len(self._counters['item'])})"
        )

    # ---- sync with the store ------------------------------------------------------------------
    def sync_point(self) -> tuple[str | None, int | None]:
        with self._lock:
            return self._epoch, self._synced_seq

    def mark_synced(self, epoch: str, seq: int) -> None:
        with self._lock:
            self._epoch, self._synced_seq = str(epoch), int(seq)

    def apply_synced(self, events: pd.DataFrame, seq: int) -> int:
        with self._lock:  # re-entrant: the whole apply and the seq move are one step for readers
            if self._synced_seq is not None and int(seq) <= self._synced_seq:
                return 0
            n = self._apply(prepare_events(events), dedupe=False)
            self._synced_seq = int(seq)
            return n

    # ---- events ------------------------------------------------------------------------------
    #: One in-process apply has no socket timeout to stay under: rebuild in large steps.
    replay_chunk = 100_000

    def apply_events(self, events: pd.DataFrame) -> int:
        return self._apply(prepare_events(events), dedupe=True)

    def replay_events(self, events: pd.DataFrame) -> int:
        return self._apply(prepare_events(events), dedupe=False)

    def _apply(self, batch: Batch, dedupe: bool) -> int:
        if not len(batch):
            return 0
        with self._lock:
            if dedupe and self.dedupe_window > 0:
                batch = self._dedupe(batch)
                if not len(batch):
                    return 0
            for user, rows in sequence_rows(batch, self.sequence_types).items():
                seq = self._seq.get(user)
                if seq is None:
                    self._seq[user] = rows[-self.max_seq :]
                else:
                    seq.extend(rows)
                    if len(seq) > self.max_seq:
                        del seq[: len(seq) - self.max_seq]
            upserts, removes = audience_updates(batch)
            aud, user_rooms = self._aud, self._user_rooms
            for room, user, ts in upserts:
                user = intern_id(user)  # the same string object as the user's sequence key
                members = aud.get(room)
                if members is None:
                    members = aud[room] = {}
                old = members.get(user)
                if old is None or ts > old:
                    members[user] = ts
                rooms = user_rooms.get(user)
                if rooms is None:
                    user_rooms[user] = {room}
                else:
                    rooms.add(room)
            for room, user in removes:
                members = self._aud.get(room)
                if members is not None:
                    members.pop(user, None)
            hosts = {r: self._rooms[r]["host"] for r in set(batch.rooms.tolist()) if r in self._rooms}
            updates = counter_updates(batch, self.half_life, hosts, self._cat)
            for kind, up in updates.items():
                if kind != "room_item":
                    self._counters[kind].merge(up.keys.tolist(), up.scores)
                    continue
                n0 = len(self._pairs)
                scopes = up.scopes.tolist()
                pair_rows = self._pairs.merge(
                    [f"{r}{SEP}{i}" for r, i in zip(scopes, up.keys.tolist(), strict=True)], up.scores
                )
                for j in np.nonzero(pair_rows >= n0)[0].tolist():
                    self._pair_rows.setdefault(scopes[j], []).append(int(pair_rows[j]))
        return len(batch)

    def _dedupe(self, batch: Batch) -> Batch:
        """Drop events whose id was seen; remember the new ids; forget ids older than the window."""
        pairs = batch.dedupe_pairs()
        if not pairs:
            return batch
        keep = np.ones(len(batch), dtype=bool)
        seen, heap = self._seen, self._seen_heap
        for i, e, t in pairs:
            if e in seen:
                keep[i] = False
            else:
                seen[e] = t
                heapq.heappush(heap, (t, e))
        cutoff = float(batch.ts.max()) - self.dedupe_window
        while heap and heap[0][0] < cutoff:
            t, e = heapq.heappop(heap)
            if seen.get(e) == t:
                del seen[e]
        return batch if keep.all() else batch.take(keep)

    def user_sequence(self, user: str, limit: int | None = None) -> list[SeqEntry]:
        check_limit(limit)
        with self._lock:
            dq = self._seq.get(user)
            if not dq:
                return []
            rows = list(dq)
        return rows if limit is None else rows[-limit:]

    def delete_user(self, user: str) -> None:
        with self._lock:
            self._seq.pop(user, None)
            for room in self._user_rooms.pop(user, set()):
                members = self._aud.get(room)
                if members is not None:
                    members.pop(user, None)

    # ---- catalogue ---------------------------------------------------------------------------
    def upsert_items(self, frame: pd.DataFrame) -> int:
        if "id" not in frame.columns or "category" not in frame.columns:
            raise ValidationError(
                "The items frame given to upsert_items needs columns 'id' and 'category'; got "
                f"{list(frame.columns)}. Rename the columns.",
                field="items",
                value=list(frame.columns),
            )
        sub = frame[frame["id"].notna()]
        with self._lock:
            for item, cat in zip(sub["id"].astype(str).tolist(), sub["category"].tolist(), strict=True):
                if isinstance(cat, str) and cat.strip():
                    self._cat[item] = cat
                else:
                    self._cat.pop(item, None)
        return len(sub)

    def _set_room(self, row: dict[str, Any]) -> None:
        rid = row["id"]
        self._rooms[rid] = row
        pos = self._room_pos.get(rid)
        if pos is None:
            pos = len(self._room_ids)
            if pos == len(self._starts):
                self._starts = np.resize(self._starts, 2 * pos)
                self._ends = np.resize(self._ends, 2 * pos)
            self._room_ids.append(rid)
            self._room_pos[rid] = pos
        self._starts[pos] = row["start"]
        self._ends[pos] = math.inf if row["end"] is None else row["end"]

    def upsert_rooms(self, frame: pd.DataFrame) -> int:
        rows = room_rows(frame)
        with self._lock:
            for row in rows:
                self._set_room(row)
            self._live_version += 1
        return len(rows)

    def _require_room(self, room: str) -> dict[str, Any]:
        row = self._rooms.get(room)
        if row is None:
            raise NotFoundError(f"Room {room!r} is not in the online state; add it with upsert_rooms first.")
        return row

    def end_room(self, room: str, t: TimeLike) -> None:
        t = to_seconds(t)
        with self._lock:
            row = self._require_room(room)
            check_end_time(room, row, t)
            self._set_room({**row, "end": t})
            slots = self._shelf.get(room, {})
            for item, start, end, pinned in end_room_slots(self._slot_list(room), t):
                slots[(item, start)] = (end, pinned)
            self._aud.pop(room, None)
            self._live_version += 1

    def room(self, room: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._rooms.get(room)
            return None if row is None else dict(row)

    def rooms(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        with self._lock:
            rows = [self._rooms.get(r) for r in ids]
        return [None if row is None else dict(row) for row in rows]

    def live_version(self) -> int | None:
        return self._live_version

    def live_layout(self, t: TimeLike) -> LiveLayout:
        t = to_seconds(t)
        with self._lock:
            n = len(self._room_ids)
            starts, ends = self._starts[:n], self._ends[:n]
            rooms = self.live_rooms(t)
            bounds = [starts, ends]
            info, shelves = [], []
            for r in rooms:
                slots = self._slot_list(r)
                bounds.append(
                    np.asarray(
                        [s for _, s, _, _ in slots] + [e for _, _, e, _ in slots if e is not None],
                        dtype=np.float64,
                    )
                )
                info.append(dict(self._rooms[r]))
                shelves.append(order_shelf(slots, t))
        lo, hi = validity(np.concatenate(bounds).tolist() if bounds else [], t)
        return LiveLayout(rooms, info, shelves, lo, hi)

    def live_rooms(self, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        with self._lock:
            n = len(self._room_ids)
            starts, ends = self._starts[:n], self._ends[:n]
            hit = np.nonzero((starts <= t) & (t < ends))[0]
            ids = [self._room_ids[i] for i in hit.tolist()]
            st = starts[hit].tolist()
        return [r for _, r in sorted(zip(st, ids, strict=True))]

    def _slot_list(self, room: str) -> list[Slot]:
        return [
            (item, start, end, pinned) for (item, start), (end, pinned) in self._shelf.get(room, {}).items()
        ]

    def upsert_shelf(self, frame: pd.DataFrame) -> int:
        rows = slot_rows(frame)
        with self._lock:
            unknown = sorted({r for r, *_ in rows if r not in self._rooms})
            if unknown:
                raise ValidationError(
                    f"Shelf slots refer to rooms the online state does not know, e.g. "
                    f"{unknown[0]!r}; upsert those rooms first.",
                    field="shelf.room",
                    value=unknown[0],
                )
            for room, item, start, end, pinned in rows:
                self._shelf.setdefault(room, {})[(item, start)] = (end, pinned)
            self._live_version += 1
        return len(rows)

    def _rewrite_slots(self, room: str, rows: list[Slot]) -> int:
        slots = self._shelf.setdefault(room, {})
        for item, start, end, pinned in rows:
            slots[(item, start)] = (end, pinned)
        self._live_version += 1
        return len(rows)

    def unpin(self, room: str, item: str, t: TimeLike) -> int:
        t = to_seconds(t)
        with self._lock:
            self._require_room(room)
            return self._rewrite_slots(room, unpin_slots(self._slot_list(room), item, t))

    def end_slot(self, room: str, item: str, t: TimeLike) -> int:
        t = to_seconds(t)
        with self._lock:
            self._require_room(room)
            return self._rewrite_slots(room, end_item_slots(self._slot_list(room), item, t))

    def shelf(self, room: str, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        with self._lock:
            if not is_live(self._rooms.get(room), t):
                return []
            return order_shelf(self._slot_list(room), t)

    def audience(self, room: str, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        with self._lock:
            row = self._rooms.get(room)
            if row is not None and not is_live(row, t):
                return []
            return audience_order(self._aud.get(room, {}).items(), t, self.audience_ttl)

    def audience_sizes(self, rooms: Sequence[str], t: TimeLike) -> np.ndarray:
        t = to_seconds(t)
        cutoff = t - self.audience_ttl
        out = np.zeros(len(rooms))
        with self._lock:
            aud, info = self._aud, self._rooms
            for j, r in enumerate(rooms):
                members = aud.get(r)
                if members and is_live(info.get(r), t):
                    out[j] = sum(1 for s in members.values() if s > cutoff)
        return out

    def prune(self, t: TimeLike) -> int:
        cutoff = to_seconds(t) - self.audience_ttl
        removed = 0
        with self._lock:
            for room, members in list(self._aud.items()):
                old = [u for u, s in members.items() if s <= cutoff]
                for u in old:
                    del members[u]
                    rooms = self._user_rooms.get(u)
                    if rooms is not None:
                        rooms.discard(room)
                        if not rooms:
                            del self._user_rooms[u]
                removed += len(old)
                if not members:
                    del self._aud[room]
        return removed

    # ---- counters ----------------------------------------------------------------------------
    def _top_scores(self, kind: str, k: int, scope: str | None) -> list[tuple[str, float]]:
        with self._lock:
            if kind != "room_item":
                return self._counters[kind].top(k)
            rows = self._pair_rows.get(scope or "")
            if not rows:
                return []
            return self._pairs.top(k, np.asarray(rows, dtype=np.int64), strip=len(scope or "") + 1)

    def _counter_rows(self, kind: str, c: _Counters, keys: Sequence[str]) -> np.ndarray:
        """Rows of ``keys`` in the counter family (-1: no counter yet). The feed asks for the same key list (its live
        snapshot's rooms and hosts) on every request: the rows of the last list asked are kept per family, valid
        while it is the same object and the family has no new key."""
        got = self._rows_of.get(kind)
        if got is not None and got[0] is keys and got[1] is c and got[2] == len(c):
            return got[3]
        rows = np.asarray([c.index.get(str(k), -1) for k in keys], dtype=np.int64)
        if len(keys) >= 256:  # worth keeping: the key list of a live snapshot, not a shelf's few items
            self._rows_of[kind] = (keys, c, len(c), rows)
        return rows

    def counters(self, kind: str, keys: Sequence[str], t: TimeLike) -> np.ndarray:
        if kind == "room_item":
            return super().counters(kind, keys, t)
        check_kind(kind, None, "counters")
        t = to_seconds(t)
        with self._lock:
            c = self._counters[kind]
            rows = self._counter_rows(kind, c, keys)
            s = np.where(rows >= 0, c.scores[np.maximum(rows, 0)] if len(c.scores) else -np.inf, -np.inf)
        out = np.zeros(len(keys))
        hit = np.isfinite(s)
        out[hit] = decayed(s[hit], t, self.half_life)
        return out

    def _score(self, kind: str, key: str, scope: str | None) -> float | None:
        with self._lock:
            if kind == "room_item":
                return self._pairs.score(f"{scope}{SEP}{key}")
            return self._counters[kind].score(key)

    # ---- whole state -------------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release; the state stays usable."""

    def clear(self) -> None:
        with self._lock:
            self._reset()

    def export(self) -> dict[str, Any]:
        with self._lock:
            counters: dict[str, Any] = {k: c.items() for k, c in self._counters.items()}
            pairs = self._pairs
            counters["room_item"] = {
                r: {pairs.keys[i][len(r) + 1 :]: float(pairs.scores[i]) for i in rows}
                for r, rows in self._pair_rows.items()
            }
            return {
                **self._header(),
                "sequences": {u: [list(e) for e in dq] for u, dq in self._seq.items() if dq},
                "audience": {r: dict(m) for r, m in self._aud.items() if m},
                "rooms": {r: {k: v for k, v in row.items() if k != "id"} for r, row in self._rooms.items()},
                "shelf": {
                    r: [[i, s, e, p] for (i, s), (e, p) in sorted(slots.items())]
                    for r, slots in self._shelf.items()
                    if slots
                },
                "items": dict(self._cat),
                "counters": counters,
                "seen": dict(self._seen),
            }

    def _import(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._reset()
            for user, rows in data.get("sequences", {}).items():
                self._seq[user] = [tuple(r) for r in rows][-self.max_seq :]
            for room, members in data.get("audience", {}).items():
                self._aud[room] = {u: float(s) for u, s in members.items()}
                for u in members:
                    self._user_rooms.setdefault(u, set()).add(room)
            for rid, row in data.get("rooms", {}).items():
                self._set_room(
                    {
                        "id": rid,
                        "host": row.get("host"),
                        "title": row.get("title", ""),
                        "start": float(row["start"]),
                        "end": None if row.get("end") is None else float(row["end"]),
                    }
                )
            for room, slots in data.get("shelf", {}).items():
                self._shelf[room] = {
                    (i, float(s)): (None if e is None else float(e), bool(p)) for i, s, e, p in slots
                }
            self._cat = {str(k): str(v) for k, v in data.get("items", {}).items()}
            self._seen = {str(k): float(v) for k, v in data.get("seen", {}).items()}
            self._seen_heap = [(t, e) for e, t in self._seen.items()]
            heapq.heapify(self._seen_heap)
            counters = data.get("counters", {})
            for kind in self._counters:
                self._counters[kind] = _Counters.from_items(counters.get(kind, {}))
            flat = {f"{r}{SEP}{i}": v for r, c in counters.get("room_item", {}).items() for i, v in c.items()}
            self._pairs = _Counters.from_items(flat)
            for r, c in counters.get("room_item", {}).items():
                self._pair_rows[r] = [self._pairs.index[f"{r}{SEP}{i}"] for i in c]
