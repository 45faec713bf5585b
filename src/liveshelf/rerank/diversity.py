"""MMR diversity with a per-group cap: the re-ranking step of every served list, and ``mmr:lambda=...`` offline.

:func:`mmr` re-ranks one list (serving: a shelf by content vectors and a brand cap, the feed by room
vectors and a host cap). :class:`MMRDiversity` applies the same function to a batch of top-N lists
for ``liveshelf evaluate --rerank mmr:lambda=...``, with items of one category counted as similar
(similarity 1, else 0), so what is measured offline is what serving does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from liveshelf.errors import check_param
from liveshelf.rerank._base import check_candidates


def mmr(
    relevance: np.ndarray,
    vectors: np.ndarray | None,
    k: int,
    lam: float,
    groups: Sequence[str | None] | None = None,
    cap: int | None = None,
    demote: bool = False,
    sim_row: Callable[[int], np.ndarray] | None = None,
) -> list[int]:
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


@dataclass
class MMRDiversity:
    """:func:`mmr` over each user's top-N candidates; ``groups`` (int code per item, e.g. its category)
    decides similarity (same group = 1). ``lam`` = 1 keeps the model's order.

    >>> import numpy as np
    >>> MMRDiversity(lam=0.5, groups=np.array([0, 0, 1])).rerank(np.array([[0, 1, 2]]),
    ...                                                         np.array([[0.9, 0.8, 0.7]]), k=2).tolist()
    [[0, 2]]
    """

    lam: float = 0.8
    groups: np.ndarray | None = None

    @property
    def name(self) -> str:
        return f"mmr:lambda={self.lam:g}"

    def rerank(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """(U, k) re-ranked item indices from the (U, N) candidates (best first); -1 where a user runs out."""
        check_param(
            "lam",
            self.lam,
            isinstance(self.lam, (int, float)) and 0 <= self.lam <= 1,
            "a float in [0, 1]",
            "MMRDiversity",
        )
        items, scores = check_candidates(items, scores, k, "MMRDiversity.rerank")
        out = np.full((len(items), k), -1, dtype=np.int64)
        g = None if self.groups is None else np.asarray(self.groups, dtype=np.int64)
        for u in range(len(items)):
            ok = np.isfinite(scores[u]) & (items[u] >= 0)
            cand, rel = items[u][ok], scores[u][ok]
            if not len(cand):
                continue
            codes = cand if g is None else g[cand]
            _, inv = np.unique(codes, return_inverse=True)
            vectors = np.eye(int(inv.max()) + 1, dtype=np.float64)[inv]
            picked = mmr(rel, vectors, k, float(self.lam))
            out[u, : len(picked)] = cand[picked]
        return out


__all__ = ["MMRDiversity", "mmr"]
