"""λ-weighted exposure penalty: pick by ``relevance - λ · exposure_so_far``.

Greedy over a batch of users, in blocks of ``block`` users and position by position (users
of one block do not see each other's picks at the same slot, so blocks stay small next to
the batch: 64 users at most, 1/32 of the batch by default): at every slot each user of the
block takes the free candidate with the best

    rel(u, i) - λ · E[g(i)] / max_g E[g]

where ``rel`` is the user's candidate scores scaled to [0, 1] (see
:func:`~liveshelf.rerank._base.scale_relevance`) and ``E`` the position-weighted exposure
each group (each item by default) has received so far in this batch. ``λ = 0`` gives back
the model's own order exactly; larger λ spreads exposure (lower Gini) at some accuracy cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveshelf.errors import check_param
from liveshelf.rerank import _base as B


@dataclass
class ExposurePenalty:
    """Exposure-penalised greedy re-ranker.

    >>> import numpy as np
    >>> items = np.array([[0, 1, 2], [0, 1, 2]]); scores = np.array([[3., 2., 1.], [3., 2., 1.]])
    >>> ExposurePenalty(lam=0.0).rerank(items, scores, k=2).tolist()
    [[0, 1], [0, 1]]
    >>> ExposurePenalty(lam=2.0).rerank(items, scores, k=2).tolist()
    [[0, 1], [2, 1]]
    """

    lam: float = 0.1
    discount: str = "log"
    groups: np.ndarray | None = None
    block: int | None = None  # users per greedy step; None = min(64, users // 32), at least 1

    @property
    def name(self) -> str:
        return f"fair:lambda={self.lam:g}"

    def _check(self) -> None:
        check_param(
            "lam",
            self.lam,
            isinstance(self.lam, (int, float)) and self.lam >= 0,
            "a number >= 0",
            "ExposurePenalty",
        )
        check_param(
            "discount",
            self.discount,
            self.discount in B.DISCOUNTS,
            f"one of {B.DISCOUNTS}",
            "ExposurePenalty",
        )
        ok_block = self.block is None or (isinstance(self.block, int) and self.block >= 1)
        check_param("block", self.block, ok_block, "None or an int >= 1", "ExposurePenalty")

    def rerank(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """(U, k) re-ranked item indices from the (U, N) candidates; -1 where a user runs out."""
        self._check()
        items, scores = B.check_candidates(items, scores, k, "ExposurePenalty.rerank")
        gi, n_groups = B.check_groups(self.groups, items, "ExposurePenalty")
        rel = B.scale_relevance(scores)
        w = B.position_weights(k, self.discount)
        exposure = np.zeros(n_groups)
        u, _ = items.shape
        out = np.full((u, k), -1, dtype=np.int64)
        block = self.block or max(1, min(64, u // 32))
        for a in range(0, u, block):
            b = min(a + block, u)
            r, g, it = rel[a:b], gi[a:b], items[a:b]
            free = np.isfinite(r)
            rows = np.arange(b - a)
            for j in range(k):
                top = exposure.max()
                adj = r - (self.lam / top) * exposure[g] if top > 0 and self.lam > 0 else r
                adj = np.where(free, adj, -np.inf)
                c = adj.argmax(1)  # first best: ties keep the model's order
                ok = free[rows, c]
                out[a + rows[ok], j] = it[rows[ok], c[ok]]
                free[rows[ok], c[ok]] = False
                np.add.at(exposure, g[rows[ok], c[ok]], w[j])
        return out


__all__ = ["ExposurePenalty"]
