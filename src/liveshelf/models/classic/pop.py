"""``pop``: global popularity, the baseline every other model must beat."""

from __future__ import annotations

import numpy as np

from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.classic._common import check_bool, popularity


class Popularity(BaseRecommender):
    """Scores every item by its training interaction count, whatever the context.

    With ``use_event_weights`` and event types in the data, each event counts with
    :data:`liveshelf.schema.EVENT_WEIGHTS` (a purchase 5, a view 1, an impression 0).
    """

    name = "pop"

    def __init__(self, use_event_weights: bool = True) -> None:
        self.use_event_weights = use_event_weights

    def fit(self, data: TrainData) -> Popularity:
        check_bool("use_event_weights", self.use_event_weights, "pop")
        self._set_vocab(data)
        self.counts_ = popularity(data, self.use_event_weights)
        return self

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        return np.tile(self.counts_.astype(np.float32), (len(contexts), 1))  # (B, n_items)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts_ = arrays["counts"]
