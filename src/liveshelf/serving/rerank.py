"""Reranking: business rules, per-group exposure caps and MMR diversity.

Pure functions over arrays; the pipeline calls them after blending. ``relevance`` is
the blended score, ``vectors`` unit-norm content embeddings (rows may be zero = unknown).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def stock_of(attributes: dict[str, Any] | None) -> float | None:
    """The ``stock`` attribute as a number (None when absent or not a number)."""
    if not attributes or "stock" not in attributes:
        return None
    value = attributes["stock"]
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_attributes(text: Any) -> dict[str, Any]:
    """The item ``attributes`` JSON object string as a dict ({} when empty or not an object)."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def allowed(items: Sequence[str], attributes: Sequence[dict[str, Any] | None], blocked: set[str]) -> np.ndarray:
    """Business rules: not blocked and not out of stock (``stock == 0``)."""
    ok = np.ones(len(items), dtype=bool)
    for i, (item, attrs) in enumerate(zip(items, attributes, strict=True)):
        stock = stock_of(attrs)
        if item in blocked or (stock is not None and stock <= 0):
            ok[i] = False
    return ok


def mmr(relevance: np.ndarray, vectors: np.ndarray | None, k: int, lam: float,
        groups: Sequence[str | None] | None = None, cap: int | None = None, demote: bool = False,
        sim_row: Callable[[int], np.ndarray] | None = None) -> list[int]:
    """Greedy maximal marginal relevance with an optional per-group cap.

    Picks ``argmax lam * rel_i - (1 - lam) * max_{j picked} sim(i, j)`` until ``k`` are
    picked or nothing is left; a candidate whose group already has ``cap`` picks is
    skipped (``demote``: kept aside and appended, in pick order, after the others).
    Ties break by lower index (the input order). Returns candidate indices.

    ``sim_row(i)``, when given, returns ``vectors @ vectors[i]`` (e.g. from a cache kept across
    requests over the same candidates), so a pick costs no product over all candidates.
    """
    n = len(relevance)
    rel = np.asarray(relevance, dtype=np.float64)
    if n == 0 or k <= 0:
        return []
    span = rel.max() - rel.min()
    rel_n = (rel - rel.min()) / span if span > 0 else np.zeros(n)
    max_sim = np.zeros(n)
    left = np.ones(n, dtype=bool)
    counts: dict[str, int] = {}
    picked: list[int] = []
    aside: list[int] = []
    use_sim = vectors is not None and lam < 1.0 and len(vectors) == n
    while len(picked) < k and left.any():
        gain = lam * rel_n - (1.0 - lam) * max_sim if use_sim else rel_n.copy()
        gain = np.where(left, gain, -np.inf)
        i = int(np.argmax(gain))
        left[i] = False
        g = groups[i] if groups is not None else None
        if cap is not None and g is not None and counts.get(g, 0) >= cap:
            aside.append(i)
            continue
        picked.append(i)
        if g is not None:
            counts[g] = counts.get(g, 0) + 1
        if use_sim:
            assert vectors is not None
            max_sim = np.maximum(max_sim, vectors @ vectors[i] if sim_row is None else sim_row(i))
    if demote:
        picked += aside[: k - len(picked)]
    return picked
