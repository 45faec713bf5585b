"""The demand side: users, their hidden tastes and habits, and the vectorised event funnel.

Per user: Poisson sessions at habitual local hours -> a feed of live rooms (favourite hosts
first, then popular live rooms) -> at most one room entered per session -> item looks at
random moments of the visit, each on an item then on the shelf -> view (position bias) ->
click -> cart -> purchase, plus likes, comments, shares, follows and gifts during the visit.
Everything is numpy over all sessions at once; no per-event Python objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from liveshelf.config import data_dir
from liveshelf.data.sim.catalog import PHRASES, Supply, vocabulary
from liveshelf.data.sim.truth import GroundTruth, SimConfig, _sigmoid

TYPE_CODES = (
    "impression",
    "enter",
    "view",
    "click",
    "cart",
    "purchase",
    "like",
    "comment",
    "share",
    "follow",
    "gift",
    "leave",
)
T = {name: k for k, name in enumerate(TYPE_CODES)}
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
REGIONS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北", "海外")
TIERS = ("low", "mid", "high", "vip")
_TIER_SENS = np.array([1.4, 1.0, 0.6, 0.3])


@dataclass
class Population:
    gender: np.ndarray
    age: np.ndarray
    region: np.ndarray
    tier: np.ndarray
    activity: np.ndarray  # sessions per day multiplier
    hour: np.ndarray  # habitual local hour
    engagement: np.ndarray
    fav: np.ndarray  # (U, 3) favourite host or -1


def make_population(
    rng: np.random.Generator, cfg: SimConfig, supply: Supply, n_cat: int, d: int = 8
) -> tuple[Population, GroundTruth]:
    n = cfg.n_users
    interests = rng.dirichlet(np.full(n_cat, cfg.interest_alpha), size=n)
    tier = rng.choice(4, size=n, p=[0.35, 0.4, 0.2, 0.05])
    price_sens = _TIER_SENS[tier] * rng.lognormal(0.0, 0.25, n)
    user_vec = rng.normal(0, 1, (n, d))
    item_vec = rng.normal(0, 1, (len(supply.item_cat), d))
    habit = rng.random(n)
    hour = np.where(
        habit < 0.65,
        rng.normal(20.5, 1.2, n),
        np.where(habit < 0.85, rng.normal(12.5, 1.0, n), rng.normal(9.0, 1.5, n)),
    )
    pop = Population(
        gender=rng.choice(3, size=n, p=[0.62, 0.36, 0.02]),
        age=rng.choice(5, size=n, p=[0.2, 0.35, 0.25, 0.12, 0.08]),
        region=rng.choice(8, size=n, p=[0.25, 0.2, 0.15, 0.12, 0.1, 0.06, 0.07, 0.05]),
        tier=tier,
        activity=rng.lognormal(-0.245, 0.7, n),
        hour=hour,
        engagement=rng.lognormal(0.0, 0.5, n),
        fav=np.full((n, 3), -1, np.int64),
    )
    # favourite hosts: Gumbel top-k over log popularity + 2 log affinity, in chunks
    n_fav = rng.choice(4, size=n, p=[0.2, 0.35, 0.3, 0.15])
    k = min(3, supply.host_mix.shape[0])
    log_pop = np.log(supply.host_pop)
    for lo in range(0, n, 4096):
        aff = interests[lo : lo + 4096] @ supply.host_mix.T
        score = log_pop + 2.0 * np.log(aff + 1e-4) + rng.gumbel(size=aff.shape)
        top = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < score.shape[1] else np.argsort(-score, 1)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), axis=1), 1)[:, :k]
        keep = np.arange(k)[None, :] < n_fav[lo : lo + 4096, None]
        pop.fav[lo : lo + 4096, :k] = np.where(keep, top, -1)
    truth = GroundTruth(
        user_ids=np.array([f"u{i:07d}" for i in range(n)], dtype=object),
        item_ids=np.array([f"i{i:07d}" for i in range(len(supply.item_cat))], dtype=object),
        categories=[],
        interests=interests,
        price_sens=price_sens,
        user_vec=user_vec,
        item_vec=item_vec,
        item_cat=supply.item_cat,
        item_quality=supply.item_quality,
        item_price_z=supply.item_price_z,
    )
    return pop, truth


@lru_cache(maxsize=2)
def _corpus(path: str) -> dict[tuple[str, int], np.ndarray]:
    """Short real reviews per (corpus category, label) from online_shopping_10_cats.csv."""
    df = pd.read_csv(path, usecols=["cat", "label", "review"], dtype={"cat": str, "label": "int64"})
    df = df.dropna()
    text = df["review"].astype(str).str.replace("\ufeff", "", regex=False).str.strip()
    ok = text.str.len().between(4, 40)
    df = df.loc[ok].assign(review=text[ok])
    return {(c, int(lab)): g["review"].to_numpy(dtype=object) for (c, lab), g in df.groupby(["cat", "label"])}


def comment_pools(use_corpus: bool) -> tuple[dict[tuple[str, int], np.ndarray], str]:
    """Comment sentence pools keyed by (pool name, label) and where they came from."""
    builtin = json.loads((PHRASES / "comments.json").read_text(encoding="utf-8"))
    pools = {
        (f"builtin-{lg}", lab): np.asarray(builtin[lg]["pos" if lab else "neg"], dtype=object)
        for lg in ("zh", "en")
        for lab in (0, 1)
    }
    csv = data_dir() / "online-shopping-10-cats" / "online_shopping_10_cats.csv"
    if use_corpus and csv.is_file():
        pools.update(_corpus(str(csv)))
        return pools, "online-shopping-10-cats"
    return pools, "builtin"


def _csr_pick(offsets: np.ndarray, u: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Position of a uniform draw (``u`` in [0, 1)) inside CSR segment ``q``."""
    cnt = offsets[q + 1] - offsets[q]
    return offsets[q] + np.minimum((u * cnt).astype(np.int64), np.maximum(cnt - 1, 0))


def simulate_events(
    rng: np.random.Generator, cfg: SimConfig, supply: Supply, pop: Population, truth: GroundTruth, day0: float
) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """All events as column arrays (user, ts, type, room, item, value, text index) + texts."""
    n_users = cfg.n_users
    # ---- sessions
    n_sess = rng.poisson(cfg.sessions_per_day * cfg.days * pop.activity)
    s_user = np.repeat(np.arange(n_users), n_sess)
    ns = len(s_user)
    s_day = rng.integers(0, cfg.days, ns)
    local_h = (pop.hour[s_user] + rng.normal(0, 1.0, ns)) % 24.0
    s_t = day0 + s_day * 86_400.0 + ((local_h - cfg.utc_offset_hours) % 24.0) * 3600.0
    # ---- feed: live rooms, favouring popular hosts. A room live at t started less than the
    # longest room duration before t, so proposals come from that window of the start-sorted
    # rooms; a proposal is kept when the room is live and with probability ~ host popularity.
    by_start = np.argsort(supply.room_start, kind="stable")
    st_sorted = supply.room_start[by_start]
    max_dur = float((supply.room_end - supply.room_start).max()) if len(by_start) else 0.0
    w_lo = np.searchsorted(st_sorted, s_t - max_dur, side="right")
    w_hi = np.searchsorted(st_sorted, s_t, side="right")
    acc_w = np.minimum(1.0, supply.host_pop / np.quantile(supply.host_pop, 0.9))
    ps = np.repeat(np.nonzero(w_hi > w_lo)[0], 4 * cfg.feed_size)
    pr = by_start[w_lo[ps] + (rng.random(len(ps)) * (w_hi - w_lo)[ps]).astype(np.int64)]
    keep = (supply.room_end[pr] > s_t[ps]) & (rng.random(len(ps)) < acc_w[supply.room_host[pr]])
    ps, pr = ps[keep], pr[keep]
    rank = np.arange(len(ps)) - np.searchsorted(ps, ps, side="left")  # order of acceptance
    keep = rank < cfg.feed_size
    feed_s, feed_r, feed_rank = ps[keep], pr[keep], rank[keep] + 1
    feed_fav = np.zeros(len(feed_s), bool)
    # favourite hosts' live rooms go first (shown with probability 0.85)
    key = supply.room_host * 1e11 + supply.room_start
    korder = np.argsort(key)
    fs = np.repeat(np.arange(ns), 3)
    fh = pop.fav[s_user].ravel()
    ok = (fh >= 0) & (len(korder) > 0)
    fs, fh = fs[ok], fh[ok]
    j = np.searchsorted(key[korder], fh * 1e11 + s_t[fs], side="right") - 1
    cand = korder[np.maximum(j, 0)]
    live = (
        (j >= 0)
        & (supply.room_host[cand] == fh)
        & (supply.room_start[cand] <= s_t[fs])
        & (supply.room_end[cand] > s_t[fs])
        & (rng.random(len(fs)) < 0.85)
    )
    feed_s = np.concatenate([fs[live], feed_s])
    feed_r = np.concatenate([cand[live], feed_r])
    feed_rank = np.concatenate([np.zeros(int(live.sum()), np.int64), feed_rank])
    feed_fav = np.concatenate([np.ones(int(live.sum()), bool), feed_fav])
    # one impression per (session, room): keep the first (favourites first)
    _, first = np.unique(feed_s * (len(supply.room_host) + 1) + feed_r, return_index=True)
    first = np.sort(first)
    imp_s, imp_r, imp_rank, imp_fav = feed_s[first], feed_r[first], feed_rank[first], feed_fav[first]
    imp_u = s_user[imp_s]
    imp_t = s_t[imp_s]
    # ---- enter: host affinity, favourite, feed rank
    h = supply.room_host[imp_r]
    n_cat = truth.interests.shape[1]
    aff = np.einsum("nc,nc->n", truth.interests[imp_u], supply.host_mix[h])
    logit = (
        -2.2
        + 0.9 * np.log(n_cat * aff + 0.05)
        + 2.0 * imp_fav
        - 0.15 * imp_rank
        + 0.3 * np.log(supply.host_pop[h])
    )
    enter = rng.random(len(imp_s)) < _sigmoid(logit)
    # at most one room per session: the first entered in feed order
    e_idx = np.nonzero(enter)[0]
    _, first_e = np.unique(imp_s[e_idx], return_index=True)
    v = e_idx[first_e]
    v_u, v_r, v_fav, v_aff = imp_u[v], imp_r[v], imp_fav[v], aff[v]
    v_end_room = supply.room_end[v_r]
    nv = len(v)
    t_in = imp_t[v] + np.minimum(rng.uniform(1, 20, nv), (v_end_room - imp_t[v]) * 0.5)
    dwell = rng.lognormal(np.log(cfg.mean_dwell_s), 0.8, nv) * np.where(v_fav, 2.0, 1.0)
    t_out = np.minimum(t_in + dwell, v_end_room)
    span = t_out - t_in
    # ---- item looks during the visit: a random moment, a random slot live at that moment
    n_look = np.minimum(rng.poisson(cfg.looks_per_min * span / 60.0 * pop.engagement[v_u]), 60)
    l_v = np.repeat(np.arange(nv), n_look)
    l_t = t_in[l_v] + rng.random(len(l_v)) * span[l_v]
    s_ord = np.argsort(supply.slot_room, kind="stable")
    s_ptr = np.searchsorted(supply.slot_room[s_ord], np.arange(len(supply.room_host) + 1))
    l_room = v_r[l_v]
    chosen = np.full(len(l_v), -1, np.int64)
    for _ in range(8):  # proposals: first slot of the room that is on the shelf at the look time
        todo = chosen < 0
        p = s_ord[np.minimum(_csr_pick(s_ptr, rng.random(int(todo.sum())), l_room[todo]), len(s_ord) - 1)]
        hit = (
            (supply.slot_room[p] == l_room[todo])
            & (supply.slot_start[p] <= l_t[todo])
            & (supply.slot_end[p] > l_t[todo])
        )
        idx = np.nonzero(todo)[0]
        chosen[idx[hit]] = p[hit]
    ok = chosen >= 0
    l_v, l_t, sl = l_v[ok], l_t[ok], chosen[ok]
    l_u, l_i = v_u[l_v], supply.slot_item[sl]
    bound = np.minimum(supply.slot_end[sl], t_out[l_v])
    pref = truth.preference_idx(l_u, l_i)
    prm = truth.params
    viewed = rng.random(len(sl)) < truth.exam(supply.slot_pos[sl])
    clicked = viewed & (rng.random(len(sl)) < pref)
    carted = clicked & (rng.random(len(sl)) < np.minimum(1.0, prm.kappa_cart * pref))
    bought = carted & (rng.random(len(sl)) < prm.kappa_buy)
    t_click = l_t + rng.uniform(0.05, 0.3, len(sl)) * (bound - l_t)
    t_cart = t_click + rng.uniform(0.05, 0.3, len(sl)) * (bound - t_click)
    t_buy = t_cart + rng.uniform(0.05, 0.3, len(sl)) * (bound - t_cart)
    qty = 1 + rng.poisson(0.2, len(sl))
    price = supply.item_price[l_i]
    # ---- room-level engagement during the visit
    eng = pop.engagement[v_u]
    n_like = rng.poisson(0.6 * span / 60.0 * eng)
    n_com = rng.poisson(0.15 * span / 60.0 * eng)
    share = rng.random(nv) < 0.03 * eng
    not_fav_host = (pop.fav[v_u] != supply.room_host[v_r][:, None]).all(1)
    follow = not_fav_host & (rng.random(nv) < 0.25 * _sigmoid(np.log(n_cat * v_aff + 0.05)))
    gift = rng.random(nv) < 0.02 * (1 + pop.tier[v_u]) * np.where(v_fav, 3.0, 1.0)
    gift_val = np.round(rng.lognormal(np.log(10.0), 1.0, nv) * (1 + pop.tier[v_u]), 1)
    lk_v = np.repeat(np.arange(nv), n_like)
    cm_v = np.repeat(np.arange(nv), n_com)
    cm_pos = rng.random(len(cm_v)) < _sigmoid(0.4 + 0.8 * np.log(n_cat * v_aff[cm_v] + 0.05))
    texts, cm_text, source = _comment_texts(rng, cfg, supply, v_r[cm_v], cm_pos)

    def at(vis: np.ndarray) -> np.ndarray:
        return t_in[vis] + rng.random(len(vis)) * span[vis]

    nan = np.nan
    parts = [
        # (user, ts, type, room, item, value, text)
        (imp_u, imp_t, T["impression"], imp_r, -1, nan, -1),
        (v_u, t_in, T["enter"], v_r, -1, nan, -1),
        (v_u, t_out, T["leave"], v_r, -1, span.round(1), -1),
        (l_u[viewed], l_t[viewed], T["view"], v_r[l_v][viewed], l_i[viewed], nan, -1),
        (l_u[clicked], t_click[clicked], T["click"], v_r[l_v][clicked], l_i[clicked], nan, -1),
        (l_u[carted], t_cart[carted], T["cart"], v_r[l_v][carted], l_i[carted], price[carted], -1),
        (
            l_u[bought],
            t_buy[bought],
            T["purchase"],
            v_r[l_v][bought],
            l_i[bought],
            np.round(price[bought] * qty[bought], 2),
            -1,
        ),
        (v_u[lk_v], at(lk_v), T["like"], v_r[lk_v], -1, nan, -1),
        (v_u[cm_v], at(cm_v), T["comment"], v_r[cm_v], -1, cm_pos.astype(float), cm_text),
        (v_u[share], at(np.nonzero(share)[0]), T["share"], v_r[share], -1, nan, -1),
        (v_u[follow], at(np.nonzero(follow)[0]), T["follow"], v_r[follow], -1, nan, -1),
        (v_u[gift], at(np.nonzero(gift)[0]), T["gift"], v_r[gift], -1, gift_val[gift], -1),
    ]
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("user", "ts", "type", "room", "item", "value", "text")
    }
    for user, ts, typ, room, item, value, text in parts:
        m = len(user)
        cols["user"].append(np.asarray(user, np.int64))
        cols["ts"].append(np.asarray(ts, np.float64))
        cols["type"].append(np.full(m, typ, np.int64))
        cols["room"].append(np.asarray(room, np.int64))
        cols["item"].append(np.broadcast_to(np.asarray(item, np.int64), (m,)))
        cols["value"].append(np.broadcast_to(np.asarray(value, np.float64), (m,)))
        cols["text"].append(np.broadcast_to(np.asarray(text, np.int64), (m,)))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    return out, texts, source


def _comment_texts(
    rng: np.random.Generator, cfg: SimConfig, supply: Supply, rooms: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """Comment sentences: real reviews of the host's category (zh) or built-in phrases (en / fallback)."""
    pools, source = comment_pools(cfg.use_review_corpus)
    tops = vocabulary()["tops"]
    host = supply.room_host[rooms]
    names = []
    for h in range(len(supply.host_pop)):
        if supply.host_lang[h] == 1:
            names.append("builtin-en")
            continue
        corpus = [c for c in tops[supply.host_tops[h][0]]["corpus"] if (c, 1) in pools]
        names.append(corpus[h % len(corpus)] if corpus else "builtin-zh")
    pool_names = sorted(set(names))
    pool_of_host = np.array([pool_names.index(n) for n in names], np.int64)
    texts, out = [], np.full(len(rooms), -1, np.int64)
    base = 0
    for k, name in enumerate(pool_names):
        for lab in (0, 1):
            arr = pools[(name, lab)]
            m = (pool_of_host[host] == k) & (positive == bool(lab))
            out[m] = base + rng.integers(0, len(arr), int(m.sum()))
            texts.append(arr)
            base += len(arr)
    return (np.concatenate(texts) if texts else np.zeros(0, object)), out, source
