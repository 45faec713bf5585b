"""The supply side of a simulated world: hosts, items, rooms (schedules) and shelf slots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PHRASES = Path(__file__).resolve().parent.parent / "phrases"


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    """Built-in category tree, brands, nouns and attribute words (zh/en)."""
    return json.loads((PHRASES / "catalog.json").read_text(encoding="utf-8"))


@dataclass
class Leaves:
    """Flattened leaf categories of the vocabulary."""

    top: np.ndarray  # (C,) index of the top category
    path_zh: list[str]
    path_en: list[str]
    price: np.ndarray  # (C,) median price
    spec: list[dict[str, Any]]


def leaves() -> Leaves:
    v = vocabulary()
    top, zh, en, price, spec = [], [], [], [], []
    for t, tc in enumerate(v["tops"]):
        for lf in tc["leaves"]:
            top.append(t)
            zh.append(" > ".join([tc["zh"], *lf["zh"]]))
            en.append(" > ".join([tc["en"], *lf["en"]]))
            price.append(float(lf["price"]))
            spec.append(lf)
    return Leaves(np.asarray(top), zh, en, np.asarray(price), spec)


@dataclass
class Supply:
    host_lang: np.ndarray  # (H,) 0 = zh, 1 = en
    host_tops: list[list[int]]
    host_pop: np.ndarray  # (H,) popularity (lognormal)
    host_mix: np.ndarray  # (H, C) share of the host's items per leaf
    host_names: list[str]
    item_host: np.ndarray  # (I,)
    item_cat: np.ndarray  # (I,)
    item_day: np.ndarray  # (I,) release day
    item_price: np.ndarray
    item_price_z: np.ndarray
    item_quality: np.ndarray
    item_rows: dict[str, list[Any]]  # title, description, category, brand, rating, attributes, language
    room_host: np.ndarray  # (R,)
    room_start: np.ndarray
    room_end: np.ndarray
    room_title: list[str]
    slot_room: np.ndarray  # (S,)
    slot_item: np.ndarray
    slot_start: np.ndarray
    slot_end: np.ndarray
    slot_pinned: np.ndarray
    slot_pos: np.ndarray  # shelf position: 0 = pinned, k = link number k


_ZH_NAMES = ["小美", "阿杰", "莉莉", "大鹏", "晓雯", "胖虎", "甜甜", "老王", "琳达", "子涵", "佳琪", "浩然"]
_EN_NAMES = ["Amy", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Ivy", "Jack", "Kate", "Leo"]


def make_supply(
    rng: np.random.Generator,
    n_hosts: int,
    n_items: int,
    days: int,
    day0: float,
    utc_offset_h: float,
    en_share: float,
) -> Supply:
    v, lv = vocabulary(), leaves()
    n_top, n_cat = len(v["tops"]), len(lv.top)
    # ---- hosts: one or two top categories, language, popularity
    top_pop = rng.dirichlet(np.full(n_top, 3.0))
    host_tops = []
    for _ in range(n_hosts):
        k = 1 if rng.random() < 0.7 else 2
        host_tops.append(sorted(rng.choice(n_top, size=k, replace=False, p=top_pop).tolist()))
    host_lang = (rng.random(n_hosts) < en_share).astype(np.int64)
    host_pop = rng.lognormal(0.0, 1.0, n_hosts)
    host_names = [
        f"{_ZH_NAMES[h % 12]}{h}号直播间" if host_lang[h] == 0 else f"{_EN_NAMES[h % 12]}'s Live #{h}"
        for h in range(n_hosts)
    ]
    # ---- items: spread over hosts and release days; leaf from the host's tops
    item_host = np.concatenate([rng.permutation(n_hosts), rng.integers(0, n_hosts, n_items - n_hosts)])
    item_day = rng.integers(0, days, n_items)
    leaf_of_top = [np.nonzero(lv.top == t)[0] for t in range(n_top)]
    tops_of_item = [host_tops[h] for h in item_host.tolist()]
    pick_top = np.array([t[int(u * len(t))] for t, u in zip(tops_of_item, rng.random(n_items), strict=True)])
    item_cat = np.array(
        [
            leaf_of_top[t][int(u * len(leaf_of_top[t]))]
            for t, u in zip(pick_top.tolist(), rng.random(n_items), strict=True)
        ],
        dtype=np.int64,
    )
    host_mix = np.zeros((n_hosts, n_cat))
    np.add.at(host_mix, (item_host, item_cat), 1.0)
    host_mix /= host_mix.sum(1, keepdims=True)
    price_sigma = 0.35
    z = rng.normal(0.0, 1.0, n_items)
    item_price = np.round(lv.price[item_cat] * np.exp(price_sigma * z)) - 0.1
    item_price = np.maximum(item_price, 1.9)
    item_quality = rng.normal(0.0, 1.0, n_items)
    rating = np.clip(np.round(4.3 + 0.35 * item_quality + rng.normal(0, 0.15, n_items), 1), 1.0, 5.0)
    lang = host_lang[item_host]
    u = rng.random((n_items, 6))
    mods, cols, ships = v["modifiers"], v["colours"], v["shipping"]
    titles, descs, cats, brands, attrs = [], [], [], [], []
    for k in range(n_items):
        c, lg = int(item_cat[k]), int(lang[k])
        spec, top = lv.spec[c], v["tops"][lv.top[c]]
        brand = top["brands"][int(u[k, 0] * len(top["brands"]))]
        noun = spec["nouns"][int(u[k, 1] * len(spec["nouns"]))]
        mod = mods[int(u[k, 2] * len(mods))]
        size = spec["sizes"][int(u[k, 3] * len(spec["sizes"]))]
        size = size if isinstance(size, str) else size[lg]  # sizes with words are [zh, en]
        colour = cols[int(u[k, 4] * len(cols))]
        ship = ships[int(u[k, 5] * len(ships))]
        mat = spec["materials"][k % len(spec["materials"])] if spec["materials"] else None
        if lg == 0:
            titles.append(f"{brand[0]} {mod[0]}{noun[0]} {size}")
            descs.append("，".join(x for x in (noun[0], mat[0] if mat else "", colour[0], ship[0]) if x))
            cats.append(lv.path_zh[c])
        else:
            titles.append(f"{brand[1]} {mod[1]} {noun[1]} {size}")
            descs.append(", ".join(x for x in (noun[1], mat[1] if mat else "", colour[1], ship[1]) if x))
            cats.append(lv.path_en[c])
        brands.append(brand[lg])
        a = {"size": size, "colour": colour[lg], "shipping": ship[lg]}
        if mat:
            a["material"] = mat[lg]
        attrs.append(json.dumps(a, ensure_ascii=False, sort_keys=True))
    item_rows = {
        "title": titles,
        "description": descs,
        "category": cats,
        "brand": brands,
        "rating": rating.tolist(),
        "attributes": attrs,
        "language": ["en" if x else "zh" for x in lang],
    }
    # ---- rooms: one or two streams a day (afternoon + evening), 45 min - 3 h
    two = rng.random(n_hosts) < 0.25
    pref_h = np.where(
        rng.random(n_hosts) < 0.75, rng.normal(20.0, 0.8, n_hosts), rng.normal(10.5, 1.0, n_hosts)
    )
    r_host, r_start, r_end = [], [], []
    for d in range(days):
        on = rng.random(n_hosts) < 0.85
        for h in np.nonzero(on)[0].tolist():
            base = day0 + d * 86_400.0
            hours = (
                [14.0 + rng.normal(0, 0.7), pref_h[h] + rng.normal(0, 0.3)]
                if two[h]
                else [pref_h[h] + rng.normal(0, 0.3)]
            )
            prev_end = -np.inf
            for hr in sorted(hours):
                s = base + ((hr - utc_offset_h) % 24.0) * 3600.0
                s = max(s, prev_end + 600.0)
                dur = float(np.clip(rng.lognormal(np.log(90 * 60), 0.35), 45 * 60, 180 * 60))
                r_host.append(h)
                r_start.append(round(s))
                r_end.append(round(s + dur))
                prev_end = s + dur
    room_host = np.asarray(r_host, np.int64)
    room_start = np.asarray(r_start, np.float64)
    room_end = np.asarray(r_end, np.float64)
    room_title = [
        f"{host_names[h]}：{v['tops'][host_tops[h][0]]['zh']}专场"
        if host_lang[h] == 0
        else f"{host_names[h]}: {v['tops'][host_tops[h][0]]['en']} special"
        for h in r_host
    ]
    slots = _make_shelves(rng, room_host, room_start, room_end, item_host, item_day, day0)
    return Supply(
        host_lang,
        host_tops,
        host_pop,
        host_mix,
        host_names,
        item_host,
        item_cat,
        item_day,
        item_price,
        z,
        item_quality,
        item_rows,
        room_host,
        room_start,
        room_end,
        room_title,
        *slots,
    )


def _make_shelves(
    rng: np.random.Generator,
    room_host: np.ndarray,
    room_start: np.ndarray,
    room_end: np.ndarray,
    item_host: np.ndarray,
    item_day: np.ndarray,
    day0: float,
) -> tuple[np.ndarray, ...]:
    """Per room: a shelf of host items with their own slots, and a pin schedule that splits slots."""
    order = np.argsort(item_host, kind="stable")
    ptr = np.searchsorted(item_host[order], np.arange(int(item_host.max()) + 2))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("room", "item", "start", "end", "pinned", "pos")}
    for r in range(len(room_host)):
        h, rs, re_ = int(room_host[r]), room_start[r], room_end[r]
        day = int((rs - day0) // 86_400)
        pool = order[ptr[h] : ptr[h + 1]]
        pool = pool[item_day[pool] <= day]
        if not len(pool):
            continue
        w = np.where(item_day[pool] == day, 3.0, 1.0)
        n = min(len(pool), int(np.clip(rng.poisson(12) + 4, 4, 30)))
        items = rng.choice(pool, size=n, replace=False, p=w / w.sum())
        dur = re_ - rs
        s = np.where(rng.random(n) < 0.6, rs, rs + np.floor(rng.uniform(0, 0.6, n) * dur))
        e = np.where(rng.random(n) < 0.75, re_, s + np.floor(rng.uniform(0.3, 0.9, n) * (re_ - s)))
        e = np.maximum(e, s + 1)
        # pin segments of 6-12 minutes; each pins one item whose slot covers the segment
        seg = float(rng.integers(360, 721))
        a = rs + seg * np.arange(int(dur // seg))
        b = a + seg
        cover = (s[None, :] <= a[:, None]) & (e[None, :] >= b[:, None])
        key = np.where(cover, rng.random(cover.shape), -1.0)
        chosen = np.where((key.max(1) >= 0) & (rng.random(len(a)) < 0.8), key.argmax(1), -1)
        for j in range(n):
            pins = np.nonzero(chosen == j)[0]
            bounds = np.concatenate([[s[j]], np.column_stack([a[pins], b[pins]]).ravel(), [e[j]]])
            lo, hi = bounds[:-1], bounds[1:]
            pinned = (np.arange(len(lo)) % 2) == 1
            keep = hi > lo
            k = int(keep.sum())
            out["room"].append(np.full(k, r))
            out["item"].append(np.full(k, items[j]))
            out["start"].append(lo[keep])
            out["end"].append(hi[keep])
            out["pinned"].append(pinned[keep])
            out["pos"].append(np.where(pinned[keep], 0, j + 1))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    return (
        cat["room"].astype(np.int64),
        cat["item"].astype(np.int64),
        cat["start"].astype(np.float64),
        cat["end"].astype(np.float64),
        cat["pinned"].astype(bool),
        cat["pos"].astype(np.int64),
    )
