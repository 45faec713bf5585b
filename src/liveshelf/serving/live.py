"""The live layout at one time with the arrays the feed scores with (cached while it provably holds)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from liveshelf.profile.viewer import Viewer, category_levels, level_shares
from liveshelf.serving.catalogue import Catalogue
from liveshelf.serving.content import ContentIndex
from liveshelf.serving.viewer import ModelView

#: Shelves whose mean content vector the feed keeps (all dropped when full).
SHELF_VECTOR_CACHE = 50_000


class Lazy:
    """A read-only sequence whose item ``j`` is ``fn(j)``, computed when read (causes of the few shown)."""

    def __init__(self, n: int, fn: Callable[[int], dict[str, Any]]) -> None:
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> dict[str, Any]:
        return self.fn(j)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.fn(j) for j in range(self.n))


def room_cause(
    cause: Callable[[int], dict[str, Any]], col: np.ndarray, items: list[str]
) -> Callable[[int], dict[str, Any]]:
    def at(j: int) -> dict[str, Any]:
        c = int(col[j])
        return {} if c < 0 else {**cause(c), "shelf_item": items[c]}

    return at


class ItemTable:
    """Per catalogue version and content index: each item's category-level ids and brand id, and
    each shelf's mean unit content vector, kept across live snapshots (a shelf write then
    rebuilds only what changed)."""

    def __init__(self, key: tuple, catalogue: Catalogue, content: ContentIndex) -> None:
        self.key, self.catalogue, self.content = key, catalogue, content
        self.levels: dict[str, int] = {}
        self.brands: dict[str, int] = {}
        self._items: dict[str, tuple[int, int]] = {}
        self.paths: dict[tuple[int, ...], int] = {}  # category-level ids of a path -> path id
        self._shelves: dict[tuple[str, ...], np.ndarray] = {}
        self._lock = threading.Lock()

    def item(self, it: str) -> tuple[int, int]:
        """(category path id, brand id or -1) of one item; :attr:`paths` maps level ids to path ids."""
        got = self._items.get(it)
        if got is None:
            info = self.catalogue.get(it)
            with self._lock:
                levels = category_levels(info.category) if info is not None else ()
                lv = tuple(self.levels.setdefault(x, len(self.levels)) for x in levels)
                path = self.paths.setdefault(lv, len(self.paths))
                got = (
                    path,
                    self.brands.setdefault(info.brand, len(self.brands))
                    if info is not None and info.brand
                    else -1,
                )
                self._items[it] = got
        return got

    def shelf_vector(self, shelf: list[str]) -> np.ndarray:
        """The mean unit content vector of a shelf (zeros when empty)."""
        key = tuple(shelf)
        v = self._shelves.get(key)
        if v is None:
            v = mean_unit(self.content.matrix(shelf), self.content.dim)
            with self._lock:
                if len(self._shelves) >= SHELF_VECTOR_CACHE:
                    self._shelves.clear()
                self._shelves[key] = v
        return v


class LiveSnapshot:
    """A :class:`LiveLayout` plus the arrays the feed scores with.

    ``items`` are the distinct shelf items (sorted by id), ``grid`` the (rooms x longest
    shelf) matrix of their positions (``len(items)`` pads), ``vectors`` each room's mean
    unit content vector; per item its category-level and brand ids for the profile source.
    """

    def __init__(self, key: tuple, layout: Any, table: ItemTable) -> None:
        self.key, self.layout, self.content = key, layout, table.content
        shelves = layout.shelves
        self.hosts: list[str | None] = [row.get("host") for row in layout.info]
        self.items: list[str] = sorted({it for sh in shelves for it in sh})
        self.col = {it: j for j, it in enumerate(self.items)}
        n = len(self.items)
        width = max((len(sh) for sh in shelves), default=0)
        self.grid = np.full((len(shelves), max(width, 1)), n, dtype=np.int64)
        for j, sh in enumerate(shelves):
            self.grid[j, : len(sh)] = [self.col[it] for it in sh]
        dim = self.content.dim
        self.vectors = (
            np.stack([table.shelf_vector(sh) for sh in shelves])
            if shelves
            else np.zeros((0, dim), dtype=np.float32)
        )
        # profile: item -> category path id and brand id (-1: none); a path's level ids padded with -1.
        # Items share few paths: the profile source is computed per path, then gathered per item.
        rows = [table.item(it) for it in self.items]
        self.path_of = np.asarray([pth for pth, _ in rows], dtype=np.int64).reshape(n)
        self.brand_ids = np.asarray([b for _, b in rows], dtype=np.int64).reshape(n)
        with table._lock:  # the table's vocabularies grow; this snapshot keeps its own copy
            self._levels, self._brands = dict(table.levels), dict(table.brands)
            paths = list(table.paths)
        depth = max((len(lv) for lv in paths), default=0)
        self.paths = np.full((len(paths), max(depth, 1)), -1, dtype=np.int64)
        for j, lv in enumerate(paths):
            self.paths[j, : len(lv)] = lv
        self.level_names = list(self._levels)
        self.brand_names = list(self._brands)
        # per room, what the room features read without the viewer (feed: no Python loop over rooms)
        self.host_names: list[str] = sorted({h for h in self.hosts if h})
        self.host_pos = {h: i for i, h in enumerate(self.host_names)}
        self.host_index = np.asarray([self.host_pos[h] if h else -1 for h in self.hosts], dtype=np.int64)
        self.starts = np.asarray(
            [np.nan if row.get("start") is None else float(row["start"]) for row in layout.info],
            dtype=np.float64,
        )
        self.shelf_sizes = np.asarray([len(sh) for sh in shelves], dtype=np.float64)
        self._audience: tuple[float, np.ndarray] | None = None
        # each room's largest item position (-1: empty shelf)
        self.room_last = (
            np.where(self.grid < n, self.grid, -1).max(axis=1) if len(shelves) else np.zeros(0, np.int64)
        )
        self._columns: dict[int, tuple[Any, tuple[np.ndarray, np.ndarray]]] = {}
        self._sim_rows: dict[int, np.ndarray] = {}

    def sim_row(self, i: int) -> np.ndarray:
        """``vectors @ vectors[i]`` (room i's content similarity to every room), computed once per snapshot."""
        row = self._sim_rows.get(i)
        if row is None:
            # einsum: no BLAS threads, which cost far more than this small product on a busy server
            row = self._sim_rows[i] = np.einsum("ij,j->i", self.vectors, self.vectors[i])
        return row

    def host_values(self, weights: dict[str, float]) -> np.ndarray:
        """``weights`` (host -> value, e.g. a viewer's host weights) over :attr:`host_names`, 0 where absent."""
        out = np.zeros(len(self.host_names))
        for h, w in weights.items():
            i = self.host_pos.get(h)
            if i is not None:
                out[i] = w
        return out

    def audience_sizes(self, state: Any, t: float, ttl_s: float) -> np.ndarray:
        """Each live room's audience size at ``t`` (``state.audience_sizes``), reused for ``ttl_s`` seconds.

        The size changes with every enter / leave and as viewers time out; a feed may see it up to
        ``ttl_s`` old (0: read every time). A request for an earlier time than the cached one reads again.
        """
        got = self._audience
        if got is not None and got[0] <= t < got[0] + ttl_s:
            return got[1]
        sizes = state.audience_sizes(self.layout.rooms, t)
        self._audience = (t, sizes)
        return sizes

    def columns(self, view: ModelView) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ModelView.columns` of the snapshot's items, kept per model view."""
        got = self._columns.get(id(view))
        if got is None or got[0] is not view:
            got = (view, view.columns(self.items))
            self._columns[id(view)] = got
        return got[1]

    def best_per_room(self, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per room: the best finite value over its shelf (NaN: none) and the item position holding it.

        Ties go to the larger item id, as ``max`` over ``(value, item)`` pairs does.
        """
        ext = np.append(np.where(np.isfinite(vals), vals, -np.inf), -np.inf)  # -inf: no value (and padding)
        m = ext[self.grid]
        best = m.max(axis=1) if m.shape[1] else np.full(len(m), -np.inf)
        has = best > -np.inf
        at = np.where(m == best[:, None], self.grid, -1).max(axis=1) if m.shape[1] else np.full(len(m), -1)
        return np.where(has, best, np.nan), np.where(has, at, -1)

    def best_per_room_sparse(self, vals: np.ndarray, nz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`best_per_room` of ``vals`` that are finite everywhere and 0 outside the positions ``nz``.

        Only the rooms holding one of ``nz`` are scanned; every other room's best is 0, held (ties go
        to the larger item id) by its largest item position, as the dense scan would find.
        """
        best = np.where(self.room_last >= 0, 0.0, np.nan)
        at = self.room_last.copy()
        if len(nz):
            mark = np.zeros(len(self.items) + 1, dtype=bool)  # the last slot: padding
            mark[nz] = True
            rooms = np.flatnonzero(mark[self.grid].any(axis=1))
            if len(rooms):
                ext = np.append(vals, -np.inf)  # padding
                m = ext[self.grid[rooms]]
                sub = m.max(axis=1)
                best[rooms] = sub
                at[rooms] = np.where(m == sub[:, None], self.grid[rooms], -1).max(axis=1)
        return best, at

    def profile_sparse(self, v: Viewer) -> tuple[np.ndarray, Callable[[int], dict[str, Any]], np.ndarray]:
        """:meth:`profile` plus the positions where it is not 0; computed once per category path, not per item."""
        n = len(self.items)
        shares = level_shares(v.category_weight)
        btot = max(sum(v.brand_weight.values()), 1e-12)
        lw = np.zeros(len(self.level_names) + 1)  # the last slot: padding (-1)
        for c, x in shares.items():
            i = self._levels.get(c)
            if i is not None:
                lw[i] = x
        bw = np.zeros(len(self.brand_names) + 1)
        for b, w in v.brand_weight.items():
            i = self._brands.get(b)
            if i is not None:
                bw[i] = w / btot
        if not n:
            return np.zeros(0), lambda _c: {}, np.zeros(0, np.int64)
        g = lw[self.paths]  # (paths, depth)
        depth = np.maximum((self.paths >= 0).sum(axis=1), 1)
        cols = np.arange(g.shape[1])[None, :]
        lc = np.where(g > 0, cols, -1).max(axis=1)
        best = np.where(lc >= 0, g[np.arange(len(g)), np.maximum(lc, 0)], 0.0)
        pv = g.sum(axis=1) / depth
        bv = bw[self.brand_ids]
        value = pv[self.path_of] + bv
        use_brand = (bv > 0) & (bv > best[self.path_of])
        return value, self._profile_cause(lc[self.path_of], use_brand), np.flatnonzero(value)

    def _profile_cause(self, lvl: np.ndarray, use_brand: np.ndarray) -> Callable[[int], dict[str, Any]]:
        level_names, brand_names, paths, path_of, brand_ids = (
            self.level_names,
            self.brand_names,
            self.paths,
            self.path_of,
            self.brand_ids,
        )

        def cause(c: int) -> dict[str, Any]:
            if use_brand[c]:
                return {"interest": f"brand:{brand_names[brand_ids[c]]}"}
            if lvl[c] >= 0:
                return {"interest": f"category:{level_names[paths[path_of[c], lvl[c]]]}"}
            return {}

        return cause


def mean_unit(m: np.ndarray, dim: int) -> np.ndarray:
    if not len(m):
        return np.zeros(dim, dtype=np.float32)
    v = m.mean(axis=0)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


__all__ = ["ItemTable", "Lazy", "LiveSnapshot", "mean_unit", "room_cause"]
