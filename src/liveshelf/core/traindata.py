"""The data a recommender is trained on and asked about: :class:`TrainData` and :class:`Context`.

They live in the bottom layer because data preparation (``liveshelf.data.split``) builds them and
models, evaluation and serving read them; ``liveshelf.models`` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Context:
    """Everything a model may know about one request.

    ``items`` is the user's recent sequence in item-index space, oldest first
    (unknown items dropped); ``ts`` its epoch seconds and ``types`` its event types.
    ``time`` is the request time (epoch seconds). ``user_index`` is the user's row in
    the training data, or -1 for a user the model never saw.
    """

    items: np.ndarray
    ts: np.ndarray | None = None
    types: np.ndarray | None = None
    user: str | None = None
    user_index: int = -1
    room: str | None = None
    time: float | None = None

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)


@dataclass
class TrainData:
    """Training sequences in index space, plus optional side information.

    ``sequences[u]`` holds user ``u``'s training interactions in time order.
    ``valid_targets[u]`` is the held-out next item used for early stopping (-1 = none).
    ``available`` answers "which items are available at time t" (live protocol), as a
    callable ``t -> np.ndarray[int]``; models that do not need it ignore it.
    ``item_vectors`` (None: the data has none) maps a modality name (``image``, ``video``,
    ``title_pca128`` ...) to a float32 ``(n_items, d)`` matrix aligned with ``item_ids``; the rows of
    items without a vector of that modality are all NaN (consumers mask them).
    """

    item_ids: np.ndarray
    user_ids: np.ndarray
    sequences: list[np.ndarray]
    timestamps: list[np.ndarray] | None = None
    types: list[np.ndarray] | None = None
    valid_targets: np.ndarray | None = None
    item_text: list[str] | None = None
    item_category: np.ndarray | None = None  # int code per item (-1 = unknown)
    available: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    item_vectors: dict[str, np.ndarray] | None = None  # modality -> (n_items, d) float32, NaN rows: none

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    def context(self, u: int, upto: int | None = None, time: float | None = None) -> Context:
        """The context of user ``u`` from their first ``upto`` training interactions."""
        seq = self.sequences[u] if upto is None else self.sequences[u][:upto]
        ts = None if self.timestamps is None else self.timestamps[u][: len(seq)]
        ty = None if self.types is None else self.types[u][: len(seq)]
        return Context(items=seq, ts=ts, types=ty, user=str(self.user_ids[u]), user_index=u, time=time)

    def interaction_matrix(self, weights: dict[str, float] | None = None):
        """User × item CSR matrix of interaction counts (or event-type weights)."""
        import scipy.sparse as sp

        rows = np.repeat(np.arange(self.n_users), [len(s) for s in self.sequences])
        cols = np.concatenate(self.sequences) if self.sequences else np.zeros(0, np.int64)
        if weights is not None and self.types is not None:
            ty = np.concatenate(self.types)
            vals = np.array([weights.get(str(t), 1.0) for t in ty], dtype=np.float32)
        else:
            vals = np.ones(len(cols), dtype=np.float32)
        m = sp.csr_matrix((vals, (rows, cols)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        return m


__all__ = ["Context", "TrainData"]
