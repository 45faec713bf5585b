"""``pop``: global popularity, the baseline every other model must beat."""

from __future__ import annotations

import numpy as np

from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import Incremental
from liveshelf.models.classic._common import check_bool, check_delta, extend_vocab, grow_rows, popularity


class Popularity(BaseRecommender, Incremental):
    """Scores every item by its training interaction count, whatever the context.

    With ``use_event_weights`` and event types in the data, each event counts with
    :data:`liveshelf.schema.EVENT_WEIGHTS` (a purchase 5, a view 1, an impression 0).
    :meth:`update` adds new events to the counts; the result equals a refit on all events.

    >>> model = Popularity().fit(old)                                       # doctest: +SKIP
    >>> model.update(new)   # counts of old + new, new items appended        # doctest: +SKIP
    """

    name = "pop"

    def __init__(self, use_event_weights: bool = True) -> None:
        self.use_event_weights = use_event_weights

    def fit(self, data: TrainData) -> Popularity:
        check_bool("use_event_weights", self.use_event_weights, "pop")
        self._set_vocab(data)
        self.counts_ = popularity(data, self.use_event_weights)
        return self

    def update(self, delta: TrainData) -> Popularity:
        """Add the events of ``delta`` (its own vocabulary; new items are appended) to the counts."""
        self._check_fitted()
        check_delta(delta, "pop.update")
        item_map, _ = extend_vocab(self, delta)
        counts = grow_rows(np.asarray(self.counts_, dtype=np.float64), len(self.item_ids_))
        np.add.at(counts, item_map, popularity(delta, self.use_event_weights))
        self.counts_ = counts
        return self

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        return np.tile(self.counts_.astype(np.float32), (len(contexts), 1))  # (B, n_items)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts_ = arrays["counts"]
