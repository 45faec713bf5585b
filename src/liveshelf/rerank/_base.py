"""What every fair re-ranker shares: position weights, input checks, relevance scaling.

A re-ranker takes, for a batch of users, each user's top-N candidates from a model
(``items`` (U, N) int, ``-1`` = padding; ``scores`` (U, N), higher = better, sorted best
first) and returns new top-k lists (U, k) drawn from those candidates. Users are handled
in the order given: exposure handed out to earlier users constrains later ones.
"""

from __future__ import annotations

import numpy as np

from liveshelf.errors import ConfigError, check_param

DISCOUNTS = ("log", "rbp", "none")


def position_weights(k: int, discount: str = "log", p: float = 0.8) -> np.ndarray:
    """Attention a slot receives, by 0-based position: (k,) float.

    ``log``: ``1 / log2(rank + 2)`` (the NDCG discount); ``rbp``: ``p ** rank`` (rank-biased
    precision, patience ``p``); ``none``: 1 for every slot (plain counts).

    >>> position_weights(3, "rbp", 0.5).tolist()
    [1.0, 0.5, 0.25]
    """
    check_param("discount", discount, discount in DISCOUNTS, f"one of {DISCOUNTS}", "position_weights")
    check_param("k", k, isinstance(k, (int, np.integer)) and k >= 1, "an int >= 1", "position_weights")
    check_param("p", p, 0.0 < p < 1.0, "a float in (0, 1)", "position_weights")
    r = np.arange(int(k), dtype=np.float64)
    if discount == "log":
        return 1.0 / np.log2(r + 2.0)
    if discount == "rbp":
        return p**r
    return np.ones(int(k))


def check_candidates(
    items: np.ndarray, scores: np.ndarray, k: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies: ``items`` int64 (U, N), ``scores`` float64 (U, N) with padding/NaN at -inf."""
    it = np.asarray(items)
    sc = np.asarray(scores)
    if it.ndim != 2 or sc.shape != it.shape:
        raise ConfigError(
            f"The 'items' and 'scores' of {where} must be 2-D arrays of the same shape "
            f"(users, candidates). Got {it.shape} and {sc.shape} instead."
        )
    check_param("k", k, isinstance(k, (int, np.integer)) and k >= 1, "an int >= 1", where)
    it = it.astype(np.int64)
    sc = sc.astype(np.float64)
    sc = np.where(np.isnan(sc) | (it < 0), -np.inf, sc)
    return it, sc


def scale_relevance(scores: np.ndarray) -> np.ndarray:
    """Per-row min-max scaling of the finite scores to [0, 1] (order kept; -inf stays -inf).

    Rows whose finite scores are all equal become 1. Scaling makes one λ mean the same
    thing for models whose scores live on different scales (counts, cosines, logits).
    """
    finite = np.isfinite(scores)
    lo = np.where(finite, scores, np.inf).min(1, keepdims=True)
    hi = np.where(finite, scores, -np.inf).max(1, keepdims=True)
    span = hi - lo
    safe_span = np.where(np.isfinite(span) & (span > 0), span, 1.0)
    with np.errstate(invalid="ignore"):
        rel = np.where(span > 0, (scores - lo) / safe_span, 1.0)
    return np.where(finite, rel, -np.inf)


def check_groups(groups: np.ndarray | None, items: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Group code per candidate (U, N) (padding -> 0) and the number of groups.

    ``groups`` is an int code per catalogue item (>= 0); ``None`` makes every item its own group.
    """
    safe = np.where(items >= 0, items, 0)
    if groups is None:
        n = int(items.max()) + 1 if items.size else 1
        return safe, max(n, 1)
    g = np.asarray(groups)
    if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer) or (len(g) and g.min() < 0):
        raise ConfigError(
            f"The 'groups' parameter of {where} must be a 1-D array of int codes >= 0, one per "
            f"item. Got dtype {g.dtype}, shape {g.shape}. Map unknown groups to a code of "
            "their own."
        )
    if items.size and items.max() >= len(g):
        raise ConfigError(
            f"The 'groups' parameter of {where} has {len(g)} entries but a candidate item "
            f"index is {int(items.max())}. Pass one group code per catalogue item."
        )
    return g.astype(np.int64)[safe], int(g.max()) + 1 if len(g) else 1


__all__ = ["DISCOUNTS", "check_candidates", "check_groups", "position_weights", "scale_relevance"]
