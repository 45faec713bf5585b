"""Exposure-capped re-ranking: no item (or group) gets more than a share of all exposure.

Over a batch of U users with top-k lists, the total position-weighted exposure is
``U · Σ_j w_j``. :class:`ExposureCap` walks the users in blocks and the slots in order; at
every slot each user takes its best free candidate whose group would stay within
``cap · total``. Users of one block compete for the last room under a cap in user order,
so the cap holds exactly. Users with no candidate left under the cap take their least exposed
free candidates instead, dealt out round robin (lists stay full, the excess is spread as
evenly as the candidates allow); :attr:`ExposureCap.overflow_` counts those slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from liveshelf.errors import check_param
from liveshelf.rerank._base import DISCOUNTS, check_candidates, check_groups, position_weights


@dataclass
class ExposureCap:
    """Greedy re-ranker with a cap on each item's (or group's) share of exposure.

    >>> import numpy as np
    >>> items = np.tile([0, 1, 2, 3], (4, 1)); scores = np.tile([4., 3., 2., 1.], (4, 1))
    >>> ExposureCap(cap=0.5, discount="none").rerank(items, scores, k=1).ravel().tolist()
    [0, 0, 1, 1]
    """

    cap: float = 0.05
    discount: str = "log"
    groups: np.ndarray | None = None
    block: int = 64
    overflow_: int = field(default=0, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"cap:{self.cap:g}"

    def _check(self) -> None:
        check_param(
            "cap",
            self.cap,
            isinstance(self.cap, (int, float)) and 0 < self.cap <= 1,
            "a share in (0, 1]",
            "ExposureCap",
        )
        check_param(
            "discount", self.discount, self.discount in DISCOUNTS, f"one of {DISCOUNTS}", "ExposureCap"
        )
        check_param(
            "block", self.block, isinstance(self.block, int) and self.block >= 1, "an int >= 1", "ExposureCap"
        )

    def rerank(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """(U, k) re-ranked item indices from the (U, N) candidates (best first); -1 where a user runs out."""
        self._check()
        items, scores = check_candidates(items, scores, k, "ExposureCap.rerank")
        gi, n_groups = check_groups(self.groups, items, "ExposureCap")
        w = position_weights(k, self.discount)
        u, _ = items.shape
        budget = self.cap * u * w.sum() * (1 + 1e-12)
        exposure = np.zeros(n_groups)
        out = np.full((u, k), -1, dtype=np.int64)
        self.overflow_ = 0
        for a in range(0, u, self.block):
            b = min(a + self.block, u)
            s, g, it = scores[a:b], gi[a:b], items[a:b]
            free = np.isfinite(s)
            for j in range(k):
                pending = np.nonzero(free.any(1))[0]
                while len(pending):
                    ps, pg, pfree = s[pending], g[pending], free[pending]
                    allowed = pfree & (exposure[pg] + w[j] <= budget)
                    none = ~allowed.any(1)
                    c = np.where(allowed, ps, -np.inf).argmax(1)
                    if none.any():  # nothing left under the cap: deal out the least exposed free candidates
                        nr = np.flatnonzero(none)  # round robin (ties in exposure: the model's order)
                        load = np.where(pfree[nr], exposure[pg[nr]], np.inf)
                        least = np.argsort(load, axis=1, kind="stable")
                        c[nr] = least[np.arange(len(nr)), np.arange(len(nr)) % pfree[nr].sum(1)]
                    chosen = pg[np.arange(len(pending)), c]
                    # within the block, earlier users come first: the n-th user taking group g adds n·w_j
                    order = np.lexsort((pending, chosen))
                    start = np.r_[0, np.flatnonzero(np.diff(chosen[order])) + 1]
                    nth = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
                    rank = np.empty(len(order), dtype=np.int64)
                    rank[order] = nth
                    accept = none | (exposure[chosen] + (rank + 1) * w[j] <= budget)
                    acc_rows = pending[accept]
                    acc_c = c[accept]
                    out[a + acc_rows, j] = it[acc_rows, acc_c]
                    free[acc_rows, acc_c] = False
                    np.add.at(exposure, chosen[accept], w[j])
                    self.overflow_ += int(none.sum())
                    pending = pending[~accept]
        return out


__all__ = ["ExposureCap"]
