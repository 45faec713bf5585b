"""``als``: implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from liveshelf.models.classic._common import check_number
from liveshelf.models.classic.implicit_mf import ImplicitMF


class ALS(ImplicitMF):
    """``implicit.cpu.als.AlternatingLeastSquares`` with confidence ``alpha * count``.

    A context that is not the user's training row is folded in exactly: the user vector
    solves ``(YᵀY + λI + Yᵀ(C - I)Y) x = Yᵀ C p`` for the context's items, as
    ``recalculate_user`` does. :meth:`update` re-solves the users new events touch that
    way, then the items they touch against the user factors (one ALS sweep restricted to
    the touched rows). Fitting is deterministic for a given ``random_state``
    (users and items are solved independently, whatever ``num_threads``).
    """

    name = "als"
    refold_touched_items = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 1.0,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 2,
        use_event_weights: bool = True,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.use_event_weights = use_event_weights

    def _check_params(self) -> None:
        check_number("factors", self.factors, 1, 4096, "als", integer=True)
        check_number("regularization", self.regularization, 0.0, np.inf, "als", hi_open=True)
        check_number("alpha", self.alpha, 0.0, np.inf, "als", lo_open=True, hi_open=True)
        check_number("iterations", self.iterations, 1, 10_000, "als", integer=True)
        check_number("random_state", self.random_state, 0, 2**32 - 1, "als", integer=True)
        check_number("num_threads", self.num_threads, 1, 256, "als", integer=True)

    def _make_estimator(self) -> Any:
        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=int(self.random_state),
            num_threads=int(self.num_threads),
        )

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        return self._solve(self.item_factors_, rows)

    def _fold_in_items(self, cols: sp.csr_matrix) -> np.ndarray:
        # the item step of ALS for one item, with the user factors fixed (the same normal equations)
        return self._solve(self.user_factors_, cols)

    def _solve(self, fixed: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        """Least-squares vectors ``(B, F)`` for ``rows`` ``(B, n)`` of counts against ``fixed`` ``(n, F)``."""
        y = fixed.astype(np.float64)  # (n, F)
        f = y.shape[1]
        base = y.T @ y + float(self.regularization) * np.eye(f)  # (F, F)
        out = np.zeros((rows.shape[0], f), dtype=np.float32)
        for b in range(rows.shape[0]):
            a, e = rows.indptr[b], rows.indptr[b + 1]
            idx, conf = rows.indices[a:e], float(self.alpha) * rows.data[a:e].astype(np.float64)
            yi = y[idx]  # (m, F)
            lhs = base + yi.T @ ((conf - 1.0)[:, None] * yi)
            out[b] = np.linalg.solve(lhs, yi.T @ conf)
        return out
