"""What ranked a served list and why: the learned ranker's scores of feature rows, its per-source
contributions, and the reasons of a candidate from its per-source parts (learned or hand-blend)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from liveshelf.serving.features import FEATURE_SOURCE, FeatureRows
from liveshelf.serving.settings import DEFAULT_WEIGHTS

REASON_NAMES: dict[str, str] = {
    "repeat": "repeat",
    "sequence": "sequence",
    "cf": "cf",
    "trending": "trending-in-room",
    "similar": "similar-to",
    "profile": "profile-match",
    "context": "context",
}


def learned_scores(ranker: Any, rows: list[FeatureRows]) -> list[np.ndarray]:
    """Ranker scores of each request's rows: one predict call for all."""
    X = np.concatenate([r.X for r in rows]) if rows else np.zeros((0, 0))
    if not len(X):
        return [np.zeros(0) for _ in rows]
    scores = ranker.predict(rows[0].surface, X).astype(np.float64)
    bounds = np.cumsum([0] + [len(r.X) for r in rows])
    return [scores[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def contributions(ranker: Any, rows: list[FeatureRows], cols: np.ndarray) -> dict[str, np.ndarray]:
    """Per-source parts of the ranker's score of candidates ``cols``, averaged over ``rows`` (viewers).

    A source's part is the sum of the ranker's contributions (``pred_contrib``) of its features, so
    the reasons name what moved the order; the hand-blend feature's part goes to the sources it blends,
    by their share; the bias term belongs to no source. Computed only for the candidates shown
    (one LightGBM call), as explaining costs far more than scoring.
    """
    cols = np.asarray(cols, dtype=np.int64)
    if not len(cols) or not rows:
        return {}
    X = np.concatenate([r.X[cols] for r in rows])
    contrib = ranker.contributions(rows[0].surface, X)[:, :-1]
    names = rows[0].names
    groups: dict[str, list[int]] = {}
    for f, name in enumerate(names):
        groups.setdefault(FEATURE_SOURCE[name], []).append(f)
    blend_cols = groups.pop("blend", [])
    col = {n: f for f, n in enumerate(names)}
    parts = {src: contrib[:, fs].sum(axis=1) for src, fs in groups.items()}
    if blend_cols:
        share = {
            src: DEFAULT_WEIGHTS.get(src, 0.0) * np.nan_to_num(X[:, col[f"src_{src}_norm"]])
            for src in parts
            if f"src_{src}_norm" in col
        }
        total = sum(share.values(), np.zeros(len(X)))
        hb = contrib[:, blend_cols].sum(axis=1)
        for src, v in share.items():
            parts[src] = parts[src] + np.divide(hb * v, total, out=np.zeros(len(X)), where=total > 0)
    return {src: v.reshape(len(rows), len(cols)).mean(axis=0) for src, v in parts.items()}


def reasons(
    parts: dict[str, float], causes: dict[str, Any], j: int, fallback: dict[str, Any]
) -> list[dict[str, Any]]:
    """Reasons of candidate ``j`` from its per-source parts (largest first; none above 1e-3: ``fallback``)."""
    rs = [
        {
            "source": REASON_NAMES[name],
            "score": round(float(v), 6),
            **(causes[name][j] if name in causes else {}),
        }
        for name, v in parts.items()
        if v >= 1e-3
    ]
    rs.sort(key=lambda r: -r["score"])
    return rs or [fallback]


def shown_parts(parts: dict[str, np.ndarray]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The parts of the shown candidates, from parts already computed for every candidate (the hand blend)."""
    return lambda shown: {name: p[shown] for name, p in parts.items()}


__all__ = ["REASON_NAMES", "contributions", "learned_scores", "reasons", "shown_parts"]
