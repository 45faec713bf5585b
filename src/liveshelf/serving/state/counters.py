"""Decayed counters in log space, the arithmetic both backends share.

An event of weight ``w`` at time ``t`` adds ``w * 2 ** (-(T - t) / half_life)`` to a counter read at
time ``T``. A counter is stored as one float, its log-score
``s = log2(sum_i w_i * 2 ** ((t_i - ANCHOR) / half_life))``; its value at ``T`` is
``2 ** (s - (T - ANCHOR) / half_life)``. Adding a batch is a log-add-exp
(``hi + log2(1 + 2 ** (lo - hi))``), order-independent, so out-of-order events are exact too, and
ranking counters by value at any ``T`` is ranking by ``s`` (a Redis sorted set answers top-k directly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from liveshelf.core.catalog import category_prefixes
from liveshelf.errors import check_param
from liveshelf.schema import EVENT_WEIGHTS
from liveshelf.serving.state.batch import Batch

#: Counter families: ``top(kind, ...)`` / ``counter(kind, ...)``. ``room_item`` is scoped by room.
COUNTER_KINDS: tuple[str, ...] = ("item", "room", "host", "room_item", "category")

#: Reference time (epoch seconds) of the log-scores; keeps them small so doubles stay precise.
ANCHOR = 1_700_000_000.0


def log_add(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``log2(2**a + 2**b)`` as ``hi + log2(1 + 2**(lo - hi))`` (the Redis script does the same).

    ``a`` may be ``-inf`` (a new counter); ``b`` must be finite.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    hi = np.maximum(a, b)  # b is finite, so hi is finite and lo - hi is well defined (a may be -inf)
    lo = np.minimum(a, b)
    return hi + np.log(1.0 + np.exp2(lo - hi)) / math.log(2.0)


def decayed(score: np.ndarray | float, t: float, half_life: float) -> np.ndarray:
    """Counter value at ``t`` from log-scores."""
    return np.exp2(np.asarray(score, dtype=np.float64) - (t - ANCHOR) / half_life)


def _group_log_sum(codes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``codes`` (ascending) and ``log2(sum(2**x))`` per code (max-shifted, no underflow)."""
    uniq, inv = np.unique(codes, return_inverse=True)
    m = np.full(len(uniq), -np.inf)
    np.maximum.at(m, inv, x)
    total = np.bincount(inv, weights=np.exp2(x - m[inv]), minlength=len(uniq))
    return uniq, m + np.log2(total)


@dataclass(frozen=True)
class CounterUpdate:
    """Log-scores to add: ``scopes[i]`` is the room for ``room_item`` (else ``""``)."""

    scopes: np.ndarray
    keys: np.ndarray
    scores: np.ndarray


def counter_updates(
    batch: Batch, half_life: float, host_of: Mapping[str, str | None], category_of: Mapping[str, str | None]
) -> dict[str, CounterUpdate]:
    """Aggregated log-score increments per counter kind for one batch."""
    t_codes, t_uniq = pd.factorize(batch.types)
    w = np.asarray([EVENT_WEIGHTS[t] for t in t_uniq], dtype=np.float64)[t_codes]
    pos = w > 0
    if not pos.any():
        return {}
    x_all = np.where(pos, np.log2(np.where(pos, w, 1.0)) + (batch.ts - ANCHOR) / half_life, -np.inf)
    r_codes, r_uniq = pd.factorize(batch.rooms)  # None -> -1
    i_codes, i_uniq = pd.factorize(batch.items)
    r_uniq = np.asarray(r_uniq, dtype=object)
    i_uniq = np.asarray(i_uniq, dtype=object)
    has_item = pos & (i_codes >= 0)
    has_room = pos & (r_codes >= 0)
    out: dict[str, CounterUpdate] = {}

    def add(kind: str, codes: np.ndarray, names: np.ndarray, x: np.ndarray) -> None:
        if not len(codes):
            return
        uniq, s = _group_log_sum(codes, x)
        out[kind] = CounterUpdate(np.full(len(uniq), "", dtype=object), names[uniq], s)

    add("item", i_codes[has_item], i_uniq, x_all[has_item])
    add("room", r_codes[has_room], r_uniq, x_all[has_room])
    host_names = np.asarray([host_of.get(r) for r in r_uniq.tolist()], dtype=object)
    if len(host_names):
        h_codes_of_room, h_uniq = pd.factorize(host_names)
        h_codes = np.where(r_codes >= 0, h_codes_of_room[np.maximum(r_codes, 0)], -1)
        has_host = has_room & (h_codes >= 0)
        add("host", h_codes[has_host], np.asarray(h_uniq, dtype=object), x_all[has_host])
    both = has_item & has_room
    if both.any():
        pair = r_codes[both].astype(np.int64) * len(i_uniq) + i_codes[both]
        uniq, s = _group_log_sum(pair, x_all[both])
        out["room_item"] = CounterUpdate(r_uniq[uniq // len(i_uniq)], i_uniq[uniq % len(i_uniq)], s)
    if category_of:
        levels_of = [category_prefixes(c) if (c := category_of.get(it)) else [] for it in i_uniq.tolist()]
        n_levels = np.asarray([len(v) for v in levels_of], dtype=np.int64)
        rows = np.nonzero(has_item)[0]
        rows = rows[n_levels[i_codes[rows]] > 0]
        if len(rows):
            flat = [lv for v in levels_of for lv in v]
            offsets = np.concatenate([[0], np.cumsum(n_levels)])
            counts = n_levels[i_codes[rows]]
            rep = np.repeat(rows, counts)
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            level_idx = offsets[i_codes[rep]] + within
            c_codes, c_uniq = pd.factorize(np.asarray(flat, dtype=object)[level_idx])
            add("category", c_codes, np.asarray(c_uniq, dtype=object), x_all[rep])
    return out


def check_kind(kind: str, scope: str | None, where: str) -> None:
    check_param("kind", kind, kind in COUNTER_KINDS, f"one of {list(COUNTER_KINDS)}", where)
    if kind == "room_item":
        check_param(
            "scope",
            scope,
            isinstance(scope, str) and bool(scope),
            "a room id (room_item counters are per room)",
            where,
        )
    else:
        check_param(
            "scope", scope, scope is None, f"None for kind {kind!r} (only room_item takes a scope)", where
        )


def rank_top(pairs: Iterable[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """Top ``k`` by score; ties by key, descending (the order of Redis ``ZREVRANGE``)."""
    return sorted(pairs, key=lambda p: (p[1], p[0]), reverse=True)[:k]
