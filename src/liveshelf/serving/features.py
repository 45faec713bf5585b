"""The one feature function of the ranking stage: what the ranker sees of (viewer, context, candidate).

The same code builds the rows a served request is ranked with, the rows logged with every
exposure, and the training rows rebuilt from the store's events (``liveshelf ranker train``):
there is no second copy. Every value is read from the online state, the catalogue and the
served models *as they are at the request time* ``t``, so a row replayed from a state that
holds only the events before ``t`` is point-in-time correct.

Two surfaces, two fixed feature lists (names and order are part of a trained ranker):

* :data:`ITEM_FEATURES` - an item on a room's shelf, for a viewer (shelf, next-item);
* :data:`ROOM_FEATURES` - a live room, for a viewer (feed).

Missing values are NaN (LightGBM routes them on their own branch). Each feature belongs to a
reason ``source`` (:data:`FEATURE_SOURCE`), so the ranker's per-feature contributions add up
to per-source contributions that explain an order truthfully.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from liveshelf.profile.viewer import Viewer
    from liveshelf.serving.pipeline import Pipeline
    from liveshelf.serving.results import Sources

#: Candidate sources whose values enter the features (normalised within the request + rank).
ITEM_SOURCES: tuple[str, ...] = ("repeat", "sequence", "cf", "trending", "similar", "profile")
ROOM_SOURCES: tuple[str, ...] = ("trending", "repeat", "sequence", "cf", "similar", "profile")

#: A missing "time since": larger than any real one.
NEVER_S = 1e8


def _source_block(prefix: str, sources: Sequence[str]) -> list[str]:
    return [f"{prefix}{s}_{kind}" for s in sources for kind in ("norm", "rank")]


ITEM_FEATURES: tuple[str, ...] = (
    *_source_block("src_", ITEM_SOURCES),
    "trending_raw",  # log1p of the item's decayed counter in this room
    "item_trend",  # log1p of the item's decayed counter everywhere
    "category_trend",  # log1p of the decayed counter of the item's leaf category everywhere
    "room_category_share",  # share of the room's trending mass on the item's leaf category
    "repeat_count",  # log1p of the viewer's events on the item
    "repeat_recency",  # log1p of seconds since the viewer's last event on the item
    "profile_l1",
    "profile_l2",
    "profile_l3",  # the viewer's share of the item's category, per depth
    "brand_share",  # the viewer's share of the item's brand
    "price_log",
    "price_gap",  # log1p price; |log price - the viewer's mean log price|
    "price_rel",  # log price - the mean log price of the item's leaf category in the catalogue
    "price_rel_gap",  # |price_rel - the viewer's mean price_rel|
    "hand_blend",  # the default hand blend of the sources (a prior the trees refine)
    "rating",
    "stock_log",
    "shelf_pos",  # the host's shelf order, 0 = first, 1 = last
    "shelf_size",
    "room_age",
    "audience",
    "host_affinity",  # the viewer's share of the room's host
    "history_len",
    "known",
)

ROOM_FEATURES: tuple[str, ...] = (
    *_source_block("src_", ROOM_SOURCES),
    "hand_blend",
    "room_trend",  # log1p of the room's decayed counter
    "host_trend",  # log1p of the host's decayed counter
    "host_affinity",
    "shelf_size",
    "room_age",
    "audience",
    "history_len",
    "known",
)

_SOURCE_OF_EXTRA: dict[str, str] = {
    "trending_raw": "trending",
    "item_trend": "trending",
    "category_trend": "trending",
    "room_category_share": "trending",
    "room_trend": "trending",
    "host_trend": "trending",
    "repeat_count": "repeat",
    "repeat_recency": "repeat",
    "host_affinity": "repeat",
    "profile_l1": "profile",
    "profile_l2": "profile",
    "profile_l3": "profile",
    "brand_share": "profile",
    "price_gap": "profile",
    "price_rel_gap": "profile",
    "hand_blend": "blend",
}


def feature_source(name: str) -> str:
    """The candidate source a feature belongs to (``"context"`` for facts about the item, room or viewer)."""
    if name.startswith("src_"):
        return name[4:].rsplit("_", 1)[0]
    return _SOURCE_OF_EXTRA.get(name, "context")


FEATURE_SOURCE: dict[str, str] = {n: feature_source(n) for n in (*ITEM_FEATURES, *ROOM_FEATURES)}


@dataclass
class FeatureRows:
    """Feature rows of one request: ``X[j]`` describes candidate ``keys[j]``; ``sources`` the raw values."""

    surface: str
    names: tuple[str, ...]
    keys: list[str]
    X: np.ndarray
    sources: Any  # results.Sources: raw per-source values and causes (for reasons and the hand blend)


# ------------------------------------------------------------------------------------ helpers
def normalised(values: np.ndarray, signed: bool) -> np.ndarray:
    """Counters (>= 0) divided by their max; model scores (any sign) min-max scaled; NaN -> 0."""
    v = np.where(np.isfinite(values), values, np.nan)
    if np.all(np.isnan(v)):
        return np.zeros(len(v))
    if signed:
        lo, hi = np.nanmin(v), np.nanmax(v)
        if hi > lo:
            out = (v - lo) / (hi - lo)
        else:  # one value: it says nothing, unless some candidates have none (the scored ones go first)
            out = np.where(np.isnan(v), 0.0, 1.0 if np.isnan(v).any() else 0.0)
    else:
        hi = np.nanmax(v)
        out = v / hi if hi > 0 else np.zeros(len(v))
    return np.nan_to_num(out, nan=0.0)


def rank_share(values: np.ndarray) -> np.ndarray:
    """Each candidate's rank by ``values`` as a share: 0 = best, 1 = last; unknown (NaN) or 0-valued -> 1."""
    n = len(values)
    v = np.where(np.isfinite(values), values, -np.inf)
    out = np.ones(n)
    if n <= 1:
        return np.where(v > -np.inf, 0.0, 1.0) if n else out
    order = np.argsort(-v, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    known = v > -np.inf
    out[known] = ranks[known] / (n - 1)
    return out


def rank_share_at(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``rank_share(values)[at]`` without sorting every value: a rank is how many values beat it (ties: by
    position, as the stable sort orders them)."""
    n = len(values)
    v = np.where(np.isfinite(values), values, -np.inf)
    at = np.asarray(at, dtype=np.int64)
    out = np.ones(len(at))
    if n <= 1:
        return np.where(v[at] > -np.inf, 0.0, 1.0) if n else out
    x = v[at]
    ahead = (v[None, :] > x[:, None]).sum(axis=1) + (
        (v[None, :] == x[:, None]) & (np.arange(n)[None, :] < at[:, None])
    ).sum(axis=1)
    known = x > -np.inf
    out[known] = ahead[known] / (n - 1)
    return out


def _source_columns(
    src: Sources, sources: Sequence[str], n: int, at: np.ndarray | None = None
) -> list[np.ndarray]:
    """Per source: its values normalised within the request and their rank shares (rows ``at`` only, if given)."""
    m = n if at is None else len(at)
    cols = []
    for s in sources:
        raw = src.values.get(s)
        if raw is None:
            cols += [np.full(m, np.nan), np.full(m, np.nan)]
            continue
        norm = normalised(raw, signed=s in ("sequence", "cf"))
        cols += [norm, rank_share(raw)] if at is None else [norm[at], rank_share_at(raw, at)]
    return cols


def _log1p(x: float | None) -> float:
    return math.nan if x is None or not math.isfinite(x) else math.log1p(max(x, 0.0))


def leaf_prices(p: Pipeline) -> dict[str, float]:
    """Mean log price per leaf category over the catalogue (cached per catalogue version)."""
    from liveshelf.profile.viewer import category_levels

    cat = p.catalogue
    cached = getattr(p, "_leaf_prices", None)
    if cached is not None and cached[0] == cat.version:
        return cached[1]
    sums: dict[str, list[float]] = {}
    for it in cat.ids():
        info = cat.get(it)
        if info is None or not info.category or info.price is None or not info.price > 0:
            continue
        leaf = category_levels(info.category)[-1]
        acc = sums.setdefault(leaf, [0.0, 0.0])
        acc[0] += math.log1p(info.price)
        acc[1] += 1.0
    out = {c: s / n for c, (s, n) in sums.items()}
    p._leaf_prices = (cat.version, out)  # type: ignore[attr-defined]
    return out


def _hand_blend(X: np.ndarray, names: Sequence[str], sources: Sequence[str]) -> np.ndarray:
    from liveshelf.serving.settings import DEFAULT_WEIGHTS

    col = {n: j for j, n in enumerate(names)}
    out = np.zeros(len(X))
    for s in sources:
        out += DEFAULT_WEIGHTS.get(s, 0.0) * X[:, col[f"src_{s}_norm"]]
    return out


# ------------------------------------------------------------------------------------ items
def item_features(
    p: Pipeline, viewers: list[Viewer], items: list[str], room: str, t: float
) -> list[FeatureRows]:
    """Rows of :data:`ITEM_FEATURES` for each viewer over the room's shelf ``items`` (in shelf order)."""
    from liveshelf.profile.viewer import category_levels, level_shares

    n = len(items)
    sources = p.item_sources(viewers, items, room, t, every=True)
    state, cat = p.state, p.catalogue
    infos = [cat.get(it) for it in items]
    leaves = [None if i is None or not i.category else category_levels(i.category)[-1] for i in infos]
    # shared by every viewer: counters, facts, room context
    trend = sources[0].values.get("trending") if sources else None
    trend = np.zeros(n) if trend is None else trend
    item_trend = state.counters("item", items, t) if n else np.zeros(0)
    uniq_leaves = sorted({c for c in leaves if c})
    leaf_trend = (
        dict(zip(uniq_leaves, state.counters("category", uniq_leaves, t), strict=True)) if uniq_leaves else {}
    )
    room_mass: dict[str, float] = {}
    for c, v in zip(leaves, trend, strict=True):
        if c:
            room_mass[c] = room_mass.get(c, 0.0) + float(v)
    total_mass = float(np.sum(trend))
    info = state.room(room) or {}
    start = info.get("start")
    room_age = _log1p(t - float(start)) if start is not None else math.nan
    audience = _log1p(float(state.audience_sizes([room], t)[0]))  # a count: no sorted list of viewers
    host = info.get("host")
    lp = leaf_prices(p)
    rel = np.asarray(
        [
            math.log1p(i.price) - lp[c]
            if i is not None and i.price is not None and i.price > 0 and c in lp
            else math.nan
            for i, c in zip(infos, leaves, strict=True)
        ]
    )
    fixed = np.empty((n, 11))
    for j, (i, c) in enumerate(zip(infos, leaves, strict=True)):
        price = None if i is None else i.price
        stock = None
        if i is not None and "stock" in i.attributes:
            try:
                stock = float(i.attributes["stock"])
            except (TypeError, ValueError):
                stock = None
        fixed[j] = (
            _log1p(float(trend[j])),
            _log1p(float(item_trend[j])),
            _log1p(leaf_trend.get(c, 0.0)) if c else math.nan,
            room_mass.get(c, 0.0) / total_mass if c and total_mass > 0 else math.nan,
            _log1p(price),
            math.nan if i is None or i.rating is None else float(i.rating),
            _log1p(stock),
            j / (n - 1) if n > 1 else 0.0,
            _log1p(float(n)),
            room_age,
            audience,
        )
    out = []
    for v, src in zip(viewers, sources, strict=True):
        cols = _source_columns(src, ITEM_SOURCES, n)
        count: dict[str, int] = {}
        last: dict[str, float] = {}
        prices, rels = [], []
        for item, _room, ts, _typ in v.seq:
            if item is None:
                continue
            count[item] = count.get(item, 0) + 1
            last[item] = max(last.get(item, -math.inf), float(ts))
            seen = cat.get(item)
            if seen is not None and seen.price is not None and seen.price > 0:
                prices.append(math.log1p(seen.price))
                leaf = category_levels(seen.category)[-1] if seen.category else None
                if leaf in lp:
                    rels.append(math.log1p(seen.price) - lp[leaf])
        mean_price = float(np.mean(prices)) if prices else math.nan
        mean_rel = float(np.mean(rels)) if rels else math.nan
        shares = level_shares(v.category_weight)
        btot = sum(v.brand_weight.values())
        htot = sum(v.host_weight.values())
        per = np.empty((n, 8))
        for j, (it, i) in enumerate(zip(items, infos, strict=True)):
            levels = [] if i is None else category_levels(i.category)
            lv = [shares.get(levels[d], 0.0) if d < len(levels) else math.nan for d in range(3)]
            brand = (
                (v.brand_weight.get(i.brand, 0.0) / btot if btot > 0 else 0.0)
                if i is not None and i.brand
                else math.nan
            )
            gap = (
                abs(fixed[j, 4] - mean_price)
                if math.isfinite(mean_price) and math.isfinite(fixed[j, 4])
                else math.nan
            )
            per[j] = (
                math.log1p(count.get(it, 0)),
                math.log1p(max(t - last[it], 0.0)) if it in last else math.log1p(NEVER_S),
                *lv,
                brand,
                gap,
                (v.host_weight.get(host, 0.0) / htot if htot > 0 else 0.0) if host else math.nan,
            )
        hist = np.full(n, math.log1p(len(v.seq)))
        known = np.full(n, 1.0 if v.known else 0.0)
        rel_gap = np.abs(rel - mean_rel)
        blend = (
            _hand_blend(np.column_stack(cols), _source_block("src_", ITEM_SOURCES), ITEM_SOURCES)
            if n
            else np.zeros(0)
        )
        X = (
            np.column_stack(
                [
                    *cols,
                    fixed[:, 0:4],
                    per[:, 0:6],
                    fixed[:, 4:5],
                    per[:, 6:7],
                    rel,
                    rel_gap,
                    blend,
                    fixed[:, 5:11],
                    per[:, 7:8],
                    hist,
                    known,
                ]
            )
            if n
            else np.zeros((0, len(ITEM_FEATURES)))
        )
        out.append(FeatureRows("item", ITEM_FEATURES, list(items), X.astype(np.float64), src))
    return out


# ------------------------------------------------------------------------------------ rooms
def room_features(
    p: Pipeline,
    viewer: Viewer,
    snap: Any,
    t: float,
    *,
    sources: Sources | None = None,
    at: np.ndarray | None = None,
) -> FeatureRows:
    """Rows of :data:`ROOM_FEATURES` for the viewer over the live rooms of ``snap`` (a live snapshot).

    Column-wise over all rooms: what does not depend on the viewer comes from the snapshot's arrays.
    ``sources``: the rooms' source values when the caller has them (``room_sources(every=True)``);
    ``at``: only these room positions get a row (the rooms a hand blend showed, for the exposure log) -
    each value is still computed against every live room (normalised and ranked within the request).
    """
    rooms = snap.layout.rooms
    n = len(rooms)
    src = p.room_sources(viewer, snap, t, every=True) if sources is None else sources
    if not n:
        return FeatureRows("room", ROOM_FEATURES, [], np.zeros((0, len(ROOM_FEATURES))), src)
    cols = _source_columns(src, ROOM_SOURCES, n, at)
    picked = None if at is None else np.asarray(at, dtype=np.int64)
    keep: slice | np.ndarray = slice(None) if picked is None else picked
    m = n if picked is None else len(picked)
    state = p.state
    hosts = snap.host_names
    host_trend = np.append(state.counters("host", hosts, t) if hosts else np.zeros(0), np.nan)
    hw, htot = viewer.host_weight, sum(viewer.host_weight.values())
    affinity = np.append(snap.host_values(hw) / htot if htot > 0 else np.zeros(len(hosts)), np.nan)
    hi = snap.host_index[keep]  # -1 (no host) reads the NaN slot
    with np.errstate(invalid="ignore"):
        age = np.log1p(np.maximum(t - snap.starts[keep], 0.0))
    audience = snap.audience_sizes(state, t, p.settings.room_stats_ttl_s)[keep]
    X = np.column_stack(
        [
            *cols,
            _hand_blend(np.column_stack(cols), _source_block("src_", ROOM_SOURCES), ROOM_SOURCES),
            _log1p_array(src.values["trending"][keep]),  # the room's decayed counter, as room_sources read it
            _log1p_array(host_trend[hi]),
            affinity[hi],
            np.log1p(snap.shelf_sizes[keep]),
            age,
            np.log1p(audience),
            np.full(m, math.log1p(len(viewer.seq))),
            np.full(m, 1.0 if viewer.known else 0.0),
        ]
    )
    keys = list(rooms) if picked is None else [rooms[j] for j in picked.tolist()]
    return FeatureRows("room", ROOM_FEATURES, keys, X.astype(np.float64), src)


def _log1p_array(x: np.ndarray) -> np.ndarray:
    """:func:`_log1p` element-wise: NaN stays NaN, negatives count as 0."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x)
    out[ok] = np.log1p(np.maximum(x[ok], 0.0))
    return out


__all__ = [
    "FEATURE_SOURCE",
    "ITEM_FEATURES",
    "ITEM_SOURCES",
    "ROOM_FEATURES",
    "ROOM_SOURCES",
    "FeatureRows",
    "feature_source",
    "item_features",
    "normalised",
    "rank_share",
    "rank_share_at",
    "room_features",
]
