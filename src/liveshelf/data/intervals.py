"""Interval storage behind :class:`~liveshelf.data.timeline.Timeline`: a static segment tree over
half-open intervals, growable arrays and a store that keeps the tree usable while intervals are added
or shortened.

The index is a static segment tree over the sorted distinct interval endpoints: an interval is stored
at the O(log n) canonical nodes that cover it, node lists are kept as one CSR array, and a point query
walks leaf -> root and concatenates the non-empty node lists, so it costs O(log n + answer). Building
is vectorised level by level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LiveSets:
    """Answers of a batch query in CSR layout: query ``i`` owns ``ids[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # (Q+1,) int64
    ids: np.ndarray  # (total,) room or item ids (str) or internal indices (int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def query_index(self) -> np.ndarray:
        """For every answer row, the query it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts())


class IntervalIndex:
    """Static segment tree over intervals ``[starts[i], ends[i])``; answers hold indices ``i``."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        starts = np.asarray(starts, dtype=np.float64)
        ends = np.asarray(ends, dtype=np.float64)
        self.n = len(starts)
        finite_ends = ends[np.isfinite(ends)]
        coords = np.unique(np.concatenate([starts, finite_ends]))
        self.coords = coords  # leaf j covers [coords[j], coords[j+1])
        m = max(len(coords), 1)
        self.size = 1 << max(math.ceil(math.log2(m)), 0)
        lo = np.searchsorted(coords, starts, side="left")
        hi = np.where(np.isfinite(ends), np.searchsorted(coords, ends, side="left"), len(coords))
        keep = hi > lo
        ids = np.nonzero(keep)[0]
        l_ = lo[keep].astype(np.int64) + self.size
        r_ = hi[keep].astype(np.int64) + self.size
        nodes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        while len(ids):  # canonical cover, all intervals one level at a time
            take = (l_ & 1).astype(bool)
            nodes.append(l_[take])
            owners.append(ids[take])
            l_ += take
            take = (r_ & 1).astype(bool) & (l_ < r_)
            r_ -= take
            nodes.append(r_[take])
            owners.append(ids[take])
            l_ >>= 1
            r_ >>= 1
            alive = l_ < r_
            if not alive.all():
                ids, l_, r_ = ids[alive], l_[alive], r_[alive]
        node = np.concatenate(nodes) if nodes else np.zeros(0, np.int64)
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        order = np.argsort(node, kind="stable")  # owners stay ascending within a node
        self.members = owner[order].astype(np.int64)
        self.ptr = np.zeros(2 * self.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(node, minlength=2 * self.size), out=self.ptr[1:])
        self.depth = int(self.size).bit_length()  # levels leaf..root
        self._shifts = np.arange(self.depth, dtype=np.int64)

    def query(self, t: float, values: np.ndarray | None = None) -> np.ndarray:
        """Indices of the intervals that contain ``t`` (unsorted).

        ``values`` (aligned with :attr:`members`, e.g. ``ids[members]``) returns those instead:
        the answer is then cut from contiguous blocks, with no gather.
        """
        m = self.members if values is None else values
        leaf = int(np.searchsorted(self.coords, t, side="right")) - 1
        if leaf < 0:
            return m[:0]
        nodes = (leaf + self.size) >> self._shifts  # leaf -> root
        lo = self.ptr[nodes]
        hi = self.ptr[nodes + 1]
        parts = [m[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
        if not parts:
            return m[:0]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def query_batch(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(query_of_row, index)`` pairs for every interval containing each ``ts[q]``."""
        ts = np.asarray(ts, dtype=np.float64)
        leaf = np.searchsorted(self.coords, ts, side="right") - 1
        ok = leaf >= 0
        qs = np.nonzero(ok)[0]
        node = leaf[ok].astype(np.int64) + self.size
        q_parts, i_parts = [], []
        while len(node):
            a = self.ptr[node]
            cnt = self.ptr[node + 1] - a
            has = cnt > 0
            if has.any():
                a, cnt, q = a[has], cnt[has], qs[has]
                total = int(cnt.sum())
                starts_rep = np.repeat(a - np.cumsum(cnt) + cnt, cnt)
                pos = np.arange(total, dtype=np.int64) + starts_rep
                q_parts.append(np.repeat(q, cnt))
                i_parts.append(self.members[pos])
            node = node >> 1
            keep = node >= 1
            node, qs = node[keep], qs[keep]
        if not q_parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(q_parts), np.concatenate(i_parts)


class GrowArray:
    """A numpy array that grows by doubling; ``view`` is the filled part."""

    def __init__(self, values: np.ndarray) -> None:
        self.arr = np.asarray(values).copy()
        if not len(self.arr):
            self.arr = np.zeros(16, dtype=self.arr.dtype)
        self.n = len(values)

    def append(self, v: Any) -> None:
        if self.n == len(self.arr):
            self.arr = np.resize(self.arr, 2 * len(self.arr))
        self.arr[self.n] = v
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self.arr[: self.n]


class IdArray:
    """Growable fixed-width unicode id array: gathers are memcpy and create no GC-tracked objects."""

    def __init__(self, ids: Any) -> None:
        arr = np.asarray(list(ids), dtype=str)
        self.n = len(arr)
        self.arr = arr if len(arr) else np.zeros(16, dtype="<U16")

    def append(self, value: str) -> None:
        width = self.arr.dtype.itemsize // 4
        if self.n == len(self.arr) or len(value) > width:
            cap = 2 * len(self.arr) if self.n == len(self.arr) else len(self.arr)
            grown = np.zeros(cap, dtype=f"<U{max(width, len(value))}")
            grown[: self.n] = self.arr[: self.n]
            self.arr = grown
        self.arr[self.n] = value
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self.arr[: self.n]


class IntervalStore:
    """Growable intervals with an index, a pending tail and lazy rebuilds.

    With ``lazy=True`` the index is built on the first query only (shelf slots are reached
    through their room, so the timeline uses their store as growable arrays and never pays
    for a slot index).
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray, rebuild_every: int, lazy: bool = False) -> None:
        n = len(starts)
        cap = max(16, n)
        self.starts = np.empty(cap, np.float64)
        self.ends = np.empty(cap, np.float64)
        self.starts[:n] = starts
        self.ends[:n] = ends
        self.n = n
        self.rebuild_every = rebuild_every
        self.index: IntervalIndex | None = None
        self.n_indexed = 0
        self.n_shrunk = 0
        if not lazy:
            self._rebuild()

    def _rebuild(self) -> IntervalIndex:
        self.index = IntervalIndex(self.starts[: self.n], self.ends[: self.n])
        self.n_indexed = self.n
        self.n_shrunk = 0
        return self.index

    def _maybe_rebuild(self) -> None:
        limit = max(self.rebuild_every, self.n // 20)
        if self.index is not None and (self.n - self.n_indexed) + self.n_shrunk > limit:
            self._rebuild()

    def append(self, start: float, end: float) -> int:
        if self.n == len(self.starts):
            cap = 2 * len(self.starts)
            self.starts = np.resize(self.starts, cap)
            self.ends = np.resize(self.ends, cap)
        i = self.n
        self.starts[i] = start
        self.ends[i] = end
        self.n += 1
        self._maybe_rebuild()
        return i

    def shrink(self, i: int, end: float) -> None:
        self.ends[i] = end
        self.n_shrunk += 1
        self._maybe_rebuild()

    def at(self, t: float) -> np.ndarray:
        index = self.index if self.index is not None else self._rebuild()
        cand = index.query(t)
        if self.n > self.n_indexed:
            cand = np.concatenate([cand, np.arange(self.n_indexed, self.n)])
            return cand[(self.starts[cand] <= t) & (self.ends[cand] > t)]
        if self.n_shrunk:
            return cand[self.ends[cand] > t]
        return cand

    def at_batch(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if index is None or self.n > self.n_indexed or self.n_shrunk:
            index = self._rebuild()  # batch work (evaluation) pays one rebuild, then runs exact
        return index.query_batch(ts)


def csr(q: np.ndarray, values: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, values)`` grouped by query ``q`` (stable), as :class:`LiveSets` holds them."""
    order = np.argsort(q, kind="stable")
    offsets = np.zeros(n_queries + 1, np.int64)
    np.cumsum(np.bincount(q, minlength=n_queries), out=offsets[1:])
    return offsets, values[order]


__all__ = ["GrowArray", "IdArray", "IntervalIndex", "IntervalStore", "LiveSets", "csr"]
