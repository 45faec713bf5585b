"""``itemknn``: sparse cosine item-item neighbours, scored from the user's recent items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from liveshelf.errors import NotFittedError
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import Incremental
from liveshelf.models.classic._common import (
    check_bool,
    check_delta,
    check_number,
    clean_context,
    context_matrix,
    delta_matrix,
    extend_vocab,
    grow,
    normalised,
    popularity,
    weights_or_none,
)


def cosine_similarity(x: sp.csr_matrix, shrink: float = 0.0) -> sp.csr_matrix:
    """Item × item cosine of the columns of the user × item matrix ``x``, diagonal removed.

    ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)``; only co-occurring pairs are stored.
    """
    x = sp.csc_matrix(x, dtype=np.float64)
    return cosine_from_gram(sp.csr_matrix(x.T @ x), shrink)


def cosine_from_gram(gram: sp.csr_matrix, shrink: float = 0.0) -> sp.csr_matrix:
    """The cosine similarity (diagonal removed) of the items whose Gram matrix ``XᵀX`` is ``gram``."""
    co = sp.coo_matrix(gram, dtype=np.float64)  # (n_items, n_items), sparse
    norms = np.sqrt(np.maximum(gram.diagonal(), 0.0))  # (n_items,)
    off = (co.row != co.col) & (co.data != 0)
    r, c, v = co.row[off], co.col[off], co.data[off]
    sim = v / (norms[r] * norms[c] + shrink)
    n = gram.shape[0]
    return sp.csr_matrix((sim, (r, c)), shape=(n, n), dtype=np.float64)


def top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row (ties: lower column first)."""
    m = m.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # by row, then value descending
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < k]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)
    out.sort_indices()
    return out


class ItemKNN(BaseRecommender, Incremental):
    """Item-based nearest neighbours.

    ``fit`` computes the cosine similarity of items' user vectors (the rows of
    ``TrainData.interaction_matrix``, event-type weighted when ``use_event_weights``)
    and keeps each item's ``k_neighbors`` most similar items. A context's score for item
    ``j`` is ``sum_k recency_decay ** age_k * sim(item_k, j)`` over its last
    ``max_history`` items, plus ``pop_prior * popularity(j) / max popularity``, which
    breaks ties and makes an empty context rank by popularity.

    With ``incremental`` (the default) the model keeps the user × item matrix ``train_``
    and the item co-occurrence (Gram) matrix ``cooc_``, and :meth:`update` adds new
    events by correcting ``cooc_`` for the users they touch only
    (``G += X'ₐᵀX'ₐ - XₐᵀXₐ``), then re-derives the neighbours. With dyadic event weights
    (all of :data:`~liveshelf.schema.EVENT_WEIGHTS`) the sums are exact, so an update
    equals a refit on all events. ``incremental=False`` saves only the neighbours.

    >>> knn = ItemKNN(k_neighbors=50).fit(old).update(new)                   # doctest: +SKIP
    """

    name = "itemknn"
    #: The user × item matrix and the item co-occurrence matrix (None: ``incremental=False``).
    train_: sp.csr_matrix | None
    cooc_: sp.csr_matrix | None

    def __init__(
        self,
        k_neighbors: int = 100,
        shrink: float = 0.0,
        max_history: int = 50,
        recency_decay: float = 0.5,
        pop_prior: float = 1e-6,
        use_event_weights: bool = True,
        incremental: bool = True,
    ) -> None:
        self.k_neighbors = k_neighbors
        self.shrink = shrink
        self.max_history = max_history
        self.recency_decay = recency_decay
        self.pop_prior = pop_prior
        self.use_event_weights = use_event_weights
        self.incremental = incremental

    def fit(self, data: TrainData) -> ItemKNN:
        check_number("k_neighbors", self.k_neighbors, 1, np.inf, "itemknn", integer=True, hi_open=True)
        check_number("shrink", self.shrink, 0.0, np.inf, "itemknn", hi_open=True)
        check_number("max_history", self.max_history, 1, np.inf, "itemknn", integer=True, hi_open=True)
        check_number("recency_decay", self.recency_decay, 0.0, 1.0, "itemknn", lo_open=True)
        check_number("pop_prior", self.pop_prior, 0.0, np.inf, "itemknn", hi_open=True)
        check_bool("use_event_weights", self.use_event_weights, "itemknn")
        check_bool("incremental", self.incremental, "itemknn")
        self._set_vocab(data)
        x = sp.csr_matrix(data.interaction_matrix(weights_or_none(self.use_event_weights)), dtype=np.float64)
        gram = sp.csr_matrix(x.T @ x)  # (n_items, n_items) co-occurrence
        self.similarity_ = top_k_per_row(cosine_from_gram(gram, float(self.shrink)), int(self.k_neighbors))
        self.prior_ = normalised(popularity(data, self.use_event_weights))
        self.train_, self.cooc_ = (x, gram) if self.incremental else (None, None)
        return self

    def update(self, delta: TrainData) -> ItemKNN:
        """Add the events of ``delta`` (matched by id; new users and items are appended)."""
        self._check_fitted()
        check_delta(delta, "itemknn.update")
        if getattr(self, "train_", None) is None or getattr(self, "cooc_", None) is None:
            raise NotFittedError(
                "This ItemKNN model keeps no co-occurrence state (incremental=False, or an older "
                "artifact), so it cannot be updated. Refit it with 'fit', using incremental=True."
            )
        item_map, user_map = extend_vocab(self, delta)
        shape = (len(self.user_ids_), len(self.item_ids_))
        train = grow(self.train_, shape)
        dx = delta_matrix(delta, item_map, user_map, shape, self.use_event_weights)  # (n_users, n_items)
        touched = np.unique(dx.nonzero()[0])
        old_rows = train[touched]  # (A, n_items)
        train = sp.csr_matrix(train + dx)
        new_rows = train[touched]
        cooc = grow(self.cooc_, (shape[1], shape[1]))
        cooc = sp.csr_matrix(cooc + new_rows.T @ new_rows - old_rows.T @ old_rows)
        cooc.eliminate_zeros()
        self.train_, self.cooc_ = train, cooc
        self.similarity_ = top_k_per_row(cosine_from_gram(cooc, float(self.shrink)), int(self.k_neighbors))
        self.prior_ = normalised(np.asarray(train.sum(axis=0), dtype=np.float64).ravel())
        return self

    def _recent(self, contexts: list[Context]) -> list[Context]:
        """Each context cut to its last ``max_history`` valid items."""
        out = []
        for ctx in contexts:
            items, ts, types = clean_context(ctx, self.n_items_)
            h = int(self.max_history)
            out.append(
                Context(
                    items=items[-h:],
                    ts=None if ts is None else ts[-h:],
                    types=None if types is None else types[-h:],
                )
            )
        return out

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        recent = self._recent(contexts)
        rec = [
            np.power(float(self.recency_decay), np.arange(len(c.items) - 1, -1, -1, dtype=np.float64))
            for c in recent
        ]
        w = context_matrix(recent, self.n_items_, self.use_event_weights, row_weights=rec)  # (B, n_items)
        scores = np.asarray((w @ self.similarity_).todense(), dtype=np.float64)  # (B, n_items)
        scores += float(self.pop_prior) * self.prior_[None, :]
        return scores.astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        out = _csr_arrays("sim", self.similarity_, np.float32)
        out["prior"] = self.prior_
        if getattr(self, "train_", None) is not None and getattr(self, "cooc_", None) is not None:
            out.update(_csr_arrays("train", self.train_, np.float64))
            out.update(_csr_arrays("cooc", self.cooc_, np.float64))
        return out

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n, n_users = len(self.item_ids_), len(self.user_ids_)
        self.similarity_ = _csr_from("sim", arrays, (n, n))
        self.prior_ = arrays["prior"]
        has_state = "train_data" in arrays and "cooc_data" in arrays
        self.train_ = _csr_from("train", arrays, (n_users, n)) if has_state else None
        self.cooc_ = _csr_from("cooc", arrays, (n, n)) if has_state else None


def _csr_arrays(prefix: str, m: sp.csr_matrix, dtype: type) -> dict[str, np.ndarray]:
    m = sp.csr_matrix(m)
    return {
        f"{prefix}_indptr": m.indptr.astype(np.int64),
        f"{prefix}_indices": m.indices.astype(np.int64),
        f"{prefix}_data": m.data.astype(dtype),
    }


def _csr_from(prefix: str, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )
