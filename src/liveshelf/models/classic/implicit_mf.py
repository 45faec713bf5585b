"""Shared layer of the matrix-factorisation models trained with the ``implicit`` library.

A subclass builds the ``implicit`` estimator and says how to fold a new context into a
user vector; this layer fits it, stores the factors and decides per request which user
vector to use:

- the context is exactly the user's training row -> the learned user factors;
- the context is empty -> popularity (scaled to [0, 1]);
- otherwise (a new user, or new events since training) -> fold the context in.

:meth:`ImplicitMF.update` is the cheap incremental step of continuous training: new
events are added to the stored user × item matrix, the users they touch get their
vectors re-solved against the item factors (the fold-in), then the items they touch
against the user factors (``als``: one ALS sweep restricted to touched rows; ``bpr``:
only items without earlier interactions, as zeros), and the popularity prior is
recomputed. Untouched factors change only on the next full ``fit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import Incremental
from liveshelf.models.classic._common import (
    check_bool,
    check_delta,
    context_matrix,
    delta_matrix,
    extend_vocab,
    grow,
    grow_rows,
    normalised,
    popularity,
    weights_or_none,
)


class ImplicitMF(BaseRecommender, Incremental, ABC):
    """Base of ``als`` and ``bpr``; subclasses define the estimator and the fold-in."""

    use_event_weights: bool
    #: ``update`` re-solves every item the new events touch (True), or only items without
    #: earlier interactions (False: a fold-in that would overwrite learned item vectors).
    refold_touched_items: ClassVar[bool] = False
    # learned state: the user × item matrix, the factors (n_users, F) / (n_items, F), the popularity prior
    train_: sp.csr_matrix
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    prior_: np.ndarray

    # ---- for subclasses -----------------------------------------------------------
    @abstractmethod
    def _check_params(self) -> None:
        """Raise ConfigError for a constructor parameter out of range."""

    @abstractmethod
    def _make_estimator(self) -> Any:
        """A fresh ``implicit`` estimator built from the constructor parameters."""

    @abstractmethod
    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """User vectors ``(B, F)`` for context rows ``(B, n_items)`` (none of them empty)."""

    def _fold_in_items(self, cols: sp.csr_matrix) -> np.ndarray:
        """Item vectors ``(B, F)`` for items' user columns ``(B, n_users)`` (none empty); zeros by default."""
        return np.zeros((cols.shape[0], self.item_factors_.shape[1]), dtype=np.float32)

    # ---- shared -------------------------------------------------------------------
    def update(self, delta: TrainData) -> ImplicitMF:
        """Add ``delta``'s events: re-solve the users (and items) they touch (see the module docs).

        >>> model = create_model("als").fit(old).update(new)                   # doctest: +SKIP
        """
        self._check_fitted()
        check_delta(delta, f"{self.name}.update")
        old_counts = np.diff(sp.csc_matrix(self.train_).indptr)  # interactions per known item
        item_map, user_map = extend_vocab(self, delta)
        shape = (len(self.user_ids_), len(self.item_ids_))
        dx = delta_matrix(delta, item_map, user_map, shape, self.use_event_weights)
        train = sp.csr_matrix(grow(self.train_, shape) + dx.astype(np.float32), dtype=np.float32)
        train.sort_indices()
        self.train_ = train
        self.user_factors_ = grow_rows(self.user_factors_, shape[0])
        self.item_factors_ = grow_rows(self.item_factors_, shape[1])
        users = np.unique(dx.nonzero()[0])
        items = np.unique(dx.nonzero()[1])
        if not self.refold_touched_items:  # only items that had no interaction (new or cold) get a vector
            items = items[
                (items >= len(old_counts)) | (old_counts[np.minimum(items, len(old_counts) - 1)] == 0)
            ]
        with threadpool_limits(1, "blas"):
            if len(users):  # the user half-step of one ALS sweep, restricted to the touched users ...
                self.user_factors_[users] = self._fold_in(train[users])
            if len(items):  # ... then the item half-step for the touched items
                self.item_factors_[items] = self._fold_in_items(sp.csr_matrix(train.T)[items])
        self.prior_ = normalised(np.asarray(train.sum(axis=0), dtype=np.float64).ravel())
        return self

    def fit(self, data: TrainData) -> ImplicitMF:
        self._check_params()
        check_bool("use_event_weights", self.use_event_weights, self.name)
        self._set_vocab(data)
        x = data.interaction_matrix(weights_or_none(self.use_event_weights))  # (n_users, n_items)
        x.sort_indices()
        # implicit's own threads do the work; a BLAS thread pool on top only slows it down.
        # (implicit is imported at module level: a BLAS library loaded inside the block
        # would escape the limit.)
        with threadpool_limits(1, "blas"):
            est = self._make_estimator()
            est.fit(x, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(est.user_factors, dtype=np.float32)  # (n_users, F)
        self.item_factors_ = np.ascontiguousarray(est.item_factors, dtype=np.float32)  # (n_items, F)
        self.train_ = x.astype(np.float32)
        self.prior_ = normalised(popularity(data, self.use_event_weights))
        return self

    def _is_training_row(self, ctx: Context, row: sp.csr_matrix) -> bool:
        u = ctx.user_index
        if u < 0 or u >= self.train_.shape[0]:
            return False
        a, b = self.train_.indptr[u], self.train_.indptr[u + 1]
        return bool(
            np.array_equal(self.train_.indices[a:b], row.indices)
            and np.allclose(self.train_.data[a:b], row.data, rtol=1e-6, atol=0.0)
        )

    def user_vectors(self, contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, F)`` user vectors and a mask of the empty contexts (their rows are zero)."""
        rows = context_matrix(contexts, self.n_items_, self.use_event_weights)  # (B, n_items)
        rows.sort_indices()
        vecs = np.zeros((len(contexts), self.item_factors_.shape[1]), dtype=np.float32)
        empty = np.diff(rows.indptr) == 0
        fold = []
        for b, ctx in enumerate(contexts):
            if empty[b]:
                continue
            if self._is_training_row(ctx, rows[b]):
                vecs[b] = self.user_factors_[ctx.user_index]
            else:
                fold.append(b)
        if fold:
            vecs[fold] = self._fold_in(rows[fold])
        return vecs, empty

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        vecs, empty = self.user_vectors(contexts)
        scores = vecs @ self.item_factors_.T  # (B, n_items)
        if empty.any():
            scores[empty] = self.prior_.astype(np.float32)
        return scores

    def _arrays(self) -> dict[str, np.ndarray]:
        t = self.train_
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "train_indptr": t.indptr.astype(np.int64),
            "train_indices": t.indices.astype(np.int64),
            "train_data": t.data.astype(np.float32),
            "prior": self.prior_,
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        shape = (len(self.user_ids_), len(self.item_ids_))
        self.train_ = sp.csr_matrix(
            (arrays["train_data"], arrays["train_indices"], arrays["train_indptr"]), shape=shape
        )
        self.prior_ = arrays["prior"]
