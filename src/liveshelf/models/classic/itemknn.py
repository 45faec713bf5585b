"""``itemknn``: sparse cosine item-item neighbours, scored from the user's recent items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.classic._common import (
    check_bool,
    check_number,
    clean_context,
    context_matrix,
    normalised,
    popularity,
    weights_or_none,
)


def cosine_similarity(x: sp.csr_matrix, shrink: float = 0.0) -> sp.csr_matrix:
    """Item × item cosine of the columns of the user × item matrix ``x``, diagonal removed.

    ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)``; only co-occurring pairs are stored.
    """
    x = sp.csc_matrix(x, dtype=np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())  # (n_items,)
    co = (x.T @ x).tocoo()  # (n_items, n_items), sparse
    off = co.row != co.col
    r, c, v = co.row[off], co.col[off], co.data[off]
    sim = v / (norms[r] * norms[c] + shrink)
    n = x.shape[1]
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


class ItemKNN(BaseRecommender):
    """Item-based nearest neighbours.

    ``fit`` computes the cosine similarity of items' user vectors (the rows of
    ``TrainData.interaction_matrix``, event-type weighted when ``use_event_weights``)
    and keeps each item's ``k_neighbors`` most similar items. A context's score for item
    ``j`` is ``sum_k recency_decay ** age_k * sim(item_k, j)`` over its last
    ``max_history`` items, plus ``pop_prior * popularity(j) / max popularity``, which
    breaks ties and makes an empty context rank by popularity.
    """

    name = "itemknn"

    def __init__(self, k_neighbors: int = 100, shrink: float = 0.0, max_history: int = 50,
                 recency_decay: float = 0.5, pop_prior: float = 1e-6,
                 use_event_weights: bool = True) -> None:
        self.k_neighbors = k_neighbors
        self.shrink = shrink
        self.max_history = max_history
        self.recency_decay = recency_decay
        self.pop_prior = pop_prior
        self.use_event_weights = use_event_weights

    def fit(self, data: TrainData) -> ItemKNN:
        check_number("k_neighbors", self.k_neighbors, 1, np.inf, "itemknn", integer=True, hi_open=True)
        check_number("shrink", self.shrink, 0.0, np.inf, "itemknn", hi_open=True)
        check_number("max_history", self.max_history, 1, np.inf, "itemknn", integer=True, hi_open=True)
        check_number("recency_decay", self.recency_decay, 0.0, 1.0, "itemknn", lo_open=True)
        check_number("pop_prior", self.pop_prior, 0.0, np.inf, "itemknn", hi_open=True)
        check_bool("use_event_weights", self.use_event_weights, "itemknn")
        self._set_vocab(data)
        x = data.interaction_matrix(weights_or_none(self.use_event_weights))  # (n_users, n_items)
        self.similarity_ = top_k_per_row(cosine_similarity(x, float(self.shrink)), int(self.k_neighbors))
        self.prior_ = normalised(popularity(data, self.use_event_weights))
        return self

    def _recent(self, contexts: list[Context]) -> list[Context]:
        """Each context cut to its last ``max_history`` valid items."""
        out = []
        for ctx in contexts:
            items, ts, types = clean_context(ctx, self.n_items_)
            h = int(self.max_history)
            out.append(Context(items=items[-h:], ts=None if ts is None else ts[-h:],
                               types=None if types is None else types[-h:]))
        return out

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        recent = self._recent(contexts)
        rec = [np.power(float(self.recency_decay), np.arange(len(c.items) - 1, -1, -1, dtype=np.float64))
               for c in recent]
        w = context_matrix(recent, self.n_items_, self.use_event_weights, row_weights=rec)  # (B, n_items)
        scores = np.asarray((w @ self.similarity_).todense(), dtype=np.float64)  # (B, n_items)
        scores += float(self.pop_prior) * self.prior_[None, :]
        return scores.astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {"sim_indptr": s.indptr.astype(np.int64), "sim_indices": s.indices.astype(np.int64),
                "sim_data": s.data.astype(np.float32), "prior": self.prior_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(self.item_ids_)
        self.similarity_ = sp.csr_matrix(
            (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n, n))
        self.prior_ = arrays["prior"]
