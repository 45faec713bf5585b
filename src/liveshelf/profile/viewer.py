"""What the serving pipeline knows about a viewer at request time (:class:`Viewer`): decayed item, host,
category-level and brand weights of the viewer's recent events, built per request by :func:`build_viewer`
with the one weight table (:mod:`liveshelf.profile.weights`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liveshelf.core.catalog import category_prefixes
from liveshelf.profile.weights import decay, event_weight


@dataclass
class Viewer:
    """What the pipeline knows about one viewer at request time."""

    user: str | None
    seq: list[tuple]  # (item, room, ts, type), oldest first
    item_weight: dict[str, float]
    host_weight: dict[str, float]
    category_weight: dict[str, float]
    brand_weight: dict[str, float]
    recent_items: list[str]  # distinct, most recent first

    @property
    def known(self) -> bool:
        return bool(self.seq)


def category_levels(path: str | None) -> tuple[str, ...]:
    """``"A > b > c"`` -> ``("A", "A > b", "A > b > c")`` (:func:`liveshelf.core.catalog.category_prefixes`;
    no path: ``()``)."""
    if not path:
        return ()
    return category_prefixes(str(path))


def level_shares(category_weight: dict[str, float]) -> dict[str, float]:
    """Each category level's share among the viewer's levels of the same depth.

    ``{"A": 3, "A > x": 2, "A > y": 1, "B": 1}`` -> A 0.75, B 0.25, A > x 0.67, A > y 0.33. The profile
    source averages these over an item's levels, so items of one top category (a room's shelf) still
    differ by sub-category, and a deeper match counts as much as a broad one.
    """
    totals: dict[int, float] = {}
    for c, w in category_weight.items():
        d = c.count(">")
        totals[d] = totals.get(d, 0.0) + w
    return {c: w / totals[c.count(">")] for c, w in category_weight.items() if totals[c.count(">")] > 0}


def profile_match(v: Viewer, infos: Sequence[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The ``profile`` source of items (catalogue infos with ``category`` and ``brand``; None: 0) for viewer
    ``v``: the mean of the item's category levels' :func:`level_shares` plus the brand's share of the
    viewer's brand weight, and its cause (the brand, or the most specific category level matched)."""
    n = len(infos)
    prof = np.zeros(n)
    pcause: list[dict[str, Any]] = [{} for _ in range(n)]
    shares = level_shares(v.category_weight)
    btot = max(sum(v.brand_weight.values()), 1e-12)
    for j, info in enumerate(infos):
        if info is None:
            continue
        levels = category_levels(info.category)
        g = [shares.get(level, 0.0) for level in levels]
        deep = max((d for d, x in enumerate(g) if x > 0), default=-1)  # the most specific match
        b = v.brand_weight.get(info.brand, 0.0) / btot if info.brand else 0.0
        prof[j] = (sum(g) / len(g) if g else 0.0) + b
        if b > 0 and b > (g[deep] if deep >= 0 else 0.0):
            pcause[j] = {"interest": f"brand:{info.brand}"}
        elif deep >= 0:
            pcause[j] = {"interest": f"category:{levels[deep]}"}
    return prof, pcause


def build_viewer(
    user: str | None,
    seq: Sequence[tuple],
    room_host: dict[str, str | None],
    catalogue: Any,
    t: float,
    half_life: float,
) -> Viewer:
    """Decayed item, host, category-level and brand weights of ``seq`` ((item, room, ts, type), oldest first)
    at ``t``; ``room_host`` maps the sequence's rooms to their hosts."""
    items: dict[str, float] = {}
    hosts: dict[str, float] = {}
    cats: dict[str, float] = {}
    brands: dict[str, float] = {}
    recent: list[str] = []
    for item, room, ts, typ in seq:
        w = event_weight(typ) * decay(t - float(ts), half_life)
        if w <= 0:
            continue
        if item is not None:
            items[item] = items.get(item, 0.0) + w
            info = catalogue.get(item)
            if info is not None:
                for level in category_levels(info.category):
                    cats[level] = cats.get(level, 0.0) + w
                if info.brand:
                    brands[info.brand] = brands.get(info.brand, 0.0) + w
        if room is not None:
            h = room_host.get(room)
            if h:
                hosts[h] = hosts.get(h, 0.0) + w
    for item, _room, _ts, _typ in reversed(seq):
        if item is not None and item not in recent:
            recent.append(item)
    return Viewer(
        user=user,
        seq=list(seq),
        item_weight=items,
        host_weight=hosts,
        category_weight=cats,
        brand_weight=brands,
        recent_items=recent[:10],
    )


def profile_summary(v: Viewer, top: int, half_life: float) -> dict[str, Any]:
    """Recent sequence summary and decayed top categories / brands / hosts of a viewer."""
    types: dict[str, int] = {}
    for e in v.seq:
        types[str(e[3])] = types.get(str(e[3]), 0) + 1

    def top_of(d: dict[str, float], keep: Callable[[str], bool] = lambda _k: True) -> list[dict[str, Any]]:
        pairs = sorted(((key, w) for key, w in d.items() if keep(key)), key=lambda p: (-p[1], p[0]))
        return [{"key": key, "weight": round(w, 6)} for key, w in pairs[:top]]

    return {
        "events": len(v.seq),
        "first_ts": v.seq[0][2] if v.seq else None,
        "last_ts": v.seq[-1][2] if v.seq else None,
        "event_types": dict(sorted(types.items())),
        "recent_items": v.recent_items,
        "top_categories": top_of(v.category_weight, lambda c: ">" not in c),
        "top_leaf_categories": top_of(v.category_weight, lambda c: ">" in c),
        "top_brands": top_of(v.brand_weight),
        "top_hosts": top_of(v.host_weight),
        "half_life_s": half_life,
    }


__all__ = ["Viewer", "build_viewer", "category_levels", "level_shares", "profile_match", "profile_summary"]
