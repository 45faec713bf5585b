"""``repeat``: the user's own history, weighted by recency and frequency.

Live commerce is dominated by repeat consumption (viewers return to the same hosts and
items), so "what you engaged with recently and often" is a strong baseline.
"""

from __future__ import annotations

import numpy as np

from liveshelf.errors import NotFittedError
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import Incremental
from liveshelf.models.classic._common import (
    check_bool,
    check_delta,
    check_number,
    clean_context,
    event_weights,
    extend_vocab,
    grow_rows,
    normalised,
    popularity,
)


class Repeat(BaseRecommender, Incremental):
    """``score(i) = sum over the user's events on i of w_type * recency + prior(i)``.

    Recency is ``decay ** k`` for the event ``k`` positions before the newest one, or,
    when ``half_life`` is set and the context has timestamps, ``2 ** (-age / half_life)``
    with ``age`` in seconds before ``ctx.time`` (default: the newest event). Items the user
    never touched get ``prior_weight * popularity / max popularity`` so the ranking over
    the whole catalogue is total; an empty context ranks by popularity alone.
    """

    name = "repeat"
    #: Raw popularity counts (what ``update`` adds to); None for an artifact saved without them.
    counts_: np.ndarray | None

    def __init__(
        self,
        decay: float = 0.9,
        half_life: float | None = None,
        prior_weight: float = 0.01,
        use_event_weights: bool = True,
    ) -> None:
        self.decay = decay
        self.half_life = half_life
        self.prior_weight = prior_weight
        self.use_event_weights = use_event_weights

    def fit(self, data: TrainData) -> Repeat:
        check_number("decay", self.decay, 0.0, 1.0, "repeat", lo_open=True)
        if self.half_life is not None:
            check_number("half_life", self.half_life, 0.0, np.inf, "repeat", lo_open=True, hi_open=True)
        check_number("prior_weight", self.prior_weight, 0.0, np.inf, "repeat", hi_open=True)
        check_bool("use_event_weights", self.use_event_weights, "repeat")
        self._set_vocab(data)
        self.counts_ = popularity(data, self.use_event_weights)
        self.prior_ = normalised(self.counts_)
        return self

    def update(self, delta: TrainData) -> Repeat:
        """Add ``delta``'s events to the popularity prior (the only learned state); equals a refit."""
        self._check_fitted()
        check_delta(delta, "repeat.update")
        if getattr(self, "counts_", None) is None:
            raise NotFittedError(
                "This Repeat model was saved without its raw counts (an older artifact), so it "
                "cannot be updated. Refit it with 'fit'."
            )
        item_map, _ = extend_vocab(self, delta)
        counts = grow_rows(np.asarray(self.counts_, dtype=np.float64), len(self.item_ids_))
        np.add.at(counts, item_map, popularity(delta, self.use_event_weights))
        self.counts_ = counts
        self.prior_ = normalised(counts)
        return self

    def recency(self, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, weight of each event) of the cleaned context."""
        items, ts, types = clean_context(ctx, self.n_items_)
        n = len(items)
        if self.half_life is not None and ts is not None and n:
            ref = float(ctx.time) if ctx.time is not None else float(ts.max())
            rec = np.exp2(-np.maximum(ref - ts, 0.0) / self.half_life)
        else:
            rec = np.power(float(self.decay), np.arange(n - 1, -1, -1, dtype=np.float64))
        return items, rec * event_weights(types, n, self.use_event_weights)

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        out = np.tile((self.prior_weight * self.prior_).astype(np.float64), (len(contexts), 1))
        for b, ctx in enumerate(contexts):
            items, w = self.recency(ctx)
            np.add.at(out[b], items, w)
        return out.astype(np.float32)  # (B, n_items)

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"prior": self.prior_}
        counts = getattr(self, "counts_", None)
        if counts is not None:
            out["counts"] = counts
        return out

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.prior_ = arrays["prior"]
        self.counts_ = arrays.get("counts")
