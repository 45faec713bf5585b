"""``bpr``: Bayesian personalised ranking (Rendle et al. 2009) by SGD."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from liveshelf.models.classic._common import check_number
from liveshelf.models.classic.implicit_mf import ImplicitMF


class BPR(ImplicitMF):
    """``implicit.cpu.bpr.BayesianPersonalizedRanking``.

    ``implicit`` appends an item-bias column to the factors (user side fixed to 1). A
    context that is not the user's training row is folded in as the (count-weighted)
    mean of its items' factors, bias column set to 1. SGD runs Hogwild over threads, so
    only ``num_threads=1`` (the default) makes fitting reproducible for a ``random_state``.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
        num_threads: int = 1,
        use_event_weights: bool = True,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.use_event_weights = use_event_weights

    def _check_params(self) -> None:
        check_number("factors", self.factors, 1, 4096, "bpr", integer=True)
        check_number("learning_rate", self.learning_rate, 0.0, np.inf, "bpr", lo_open=True, hi_open=True)
        check_number("regularization", self.regularization, 0.0, np.inf, "bpr", hi_open=True)
        check_number("iterations", self.iterations, 1, 100_000, "bpr", integer=True)
        check_number("random_state", self.random_state, 0, 2**32 - 1, "bpr", integer=True)
        check_number("num_threads", self.num_threads, 1, 256, "bpr", integer=True)

    def _make_estimator(self) -> Any:
        return BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            random_state=int(self.random_state),
            num_threads=int(self.num_threads),
        )

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        w = rows.astype(np.float64)
        w = sp.diags(1.0 / np.asarray(w.sum(axis=1)).ravel()) @ w  # row-normalised weights
        vecs = np.asarray(w @ self.item_factors_.astype(np.float64))  # (B, F + 1)
        vecs[:, -1] = 1.0  # the user side of the item-bias column
        return vecs.astype(np.float32)
