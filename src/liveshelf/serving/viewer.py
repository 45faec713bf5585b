"""What the pipeline knows about a viewer (decayed item, host, category and brand weights) and how a
served model sees the viewer's sequence (:class:`ModelView`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liveshelf.schema import EVENT_WEIGHTS


class ModelView:
    """A model plus its id -> index maps, built once per model object."""

    def __init__(self, model: Any) -> None:
        from liveshelf.models.base import Context

        self.model = model
        self._context = Context
        items = getattr(model, "item_ids_", None)
        self.item_ids = [str(x) for x in ([] if items is None else items)]
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        users = getattr(model, "user_ids_", None)
        self.user_index = {str(u): i for i, u in enumerate([] if users is None else users)}

    def context(self, user: str | None, seq: Sequence[tuple], room: str | None, t: float) -> Any:
        keep = [
            (self.item_index[e[0]], e[2], e[3]) for e in seq if e[0] is not None and e[0] in self.item_index
        ]
        items = np.asarray([k[0] for k in keep], dtype=np.int64)
        ts = np.asarray([k[1] for k in keep], dtype=np.float64)
        types = np.asarray([k[2] for k in keep], dtype=object)
        return self._context(
            items=items,
            ts=ts,
            types=types,
            user=user,
            user_index=self.user_index.get(user or "", -1),
            room=room,
            time=t,
        )

    def columns(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``items`` of the items the model knows, and their model indices."""
        cols = [(j, self.item_index[it]) for j, it in enumerate(items) if it in self.item_index]
        return (
            np.asarray([c[0] for c in cols], dtype=np.int64),
            np.asarray([c[1] for c in cols], dtype=np.int64),
        )

    def scores(
        self, contexts: list[Any], items: Sequence[str], cols: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """``(B, len(items))`` model scores; NaN for items outside the model's vocabulary.

        ``cols``: :meth:`columns` of ``items``, when the caller keeps them.
        """
        out = np.full((len(contexts), len(items)), np.nan, dtype=np.float64)
        j_idx, cand = self.columns(items) if cols is None else cols
        if not len(cand) or not contexts:
            return out
        batch = getattr(self.model, "score_batch", None)
        if callable(batch):
            s = np.asarray(batch(contexts, cand), dtype=np.float64)
        else:
            s = np.stack([np.asarray(self.model.score(c, cand), dtype=np.float64) for c in contexts])
        out[:, j_idx] = s
        return out


# ------------------------------------------------------------------------------------ viewer
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


def _decay(age: float, half_life: float) -> float:
    return math.pow(2.0, -max(age, 0.0) / half_life)


def category_levels(path: str | None) -> tuple[str, ...]:
    """``"A > b > c"`` -> ``("A", "A > b", "A > b > c")`` (memoised: a catalogue has few distinct paths)."""
    if not path:
        return ()
    return _levels(str(path))


@functools.lru_cache(maxsize=65_536)
def _levels(path: str) -> tuple[str, ...]:
    parts = [p.strip() for p in path.split(">") if p.strip()]
    return tuple(" > ".join(parts[: i + 1]) for i in range(len(parts)))


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
        w = EVENT_WEIGHTS.get(str(typ), 1.0) * _decay(t - float(ts), half_life)
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


__all__ = ["ModelView", "Viewer", "build_viewer", "category_levels", "level_shares", "profile_summary"]
