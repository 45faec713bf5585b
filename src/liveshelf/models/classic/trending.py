"""``trending``: exponentially time-decayed popularity that can be updated event by event."""

from __future__ import annotations

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.capabilities import Incremental
from liveshelf.models.classic._common import (
    check_bool,
    check_delta,
    check_number,
    event_weights,
    extend_vocab,
    grow_rows,
)

#: Request-time decay stops after this many half-lives. It is the same factor for every
#: item, so the ranking does not change; the clip keeps scores representable in float32.
MAX_REQUEST_HALF_LIVES = 64.0


class Trending(BaseRecommender, Incremental):
    """Counts where an event ``age`` seconds old weighs ``2 ** (-age / half_life)``.

    The state is ``(values_, ref_time_)``: every item's decayed count as of time
    ``ref_time_`` (the latest event seen). :meth:`partial_fit` folds new events in without
    refitting, which is what serving and continuous training call. When the training
    data has no timestamps, an event's time is its position in its user's sequence
    (the dataset convention for synthetic timestamps), and ``half_life`` counts positions.

    At request time the counts decay further from ``ref_time_`` to ``ctx.time``.
    """

    name = "trending"

    def __init__(self, half_life: float = 86400.0, use_event_weights: bool = True) -> None:
        self.half_life = half_life
        self.use_event_weights = use_event_weights

    def _check_params(self) -> None:
        check_number("half_life", self.half_life, 0.0, np.inf, "trending", lo_open=True, hi_open=True)
        check_bool("use_event_weights", self.use_event_weights, "trending")

    def fit(self, data: TrainData) -> Trending:
        self._check_params()
        self._set_vocab(data)
        seqs = data.sequences
        items = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
        if data.timestamps is not None and seqs:
            times = np.concatenate(data.timestamps).astype(np.float64)
        else:
            times = (
                np.concatenate([np.arange(len(s), dtype=np.float64) for s in seqs])
                if seqs
                else np.zeros(0, np.float64)
            )
        types = None if data.types is None or not seqs else np.concatenate(data.types)
        self.values_ = np.zeros(data.n_items, dtype=np.float64)
        self.ref_time_ = float(times.max()) if len(times) else 0.0
        self._add(items, times, event_weights(types, len(items), self.use_event_weights))
        return self

    def partial_fit(
        self, item_indices: np.ndarray, ts: np.ndarray, types: np.ndarray | None = None
    ) -> Trending:
        """Add events (item indices, epoch seconds, optional event types) to the counts."""
        self._check_fitted()
        items = np.asarray(item_indices, dtype=np.int64).ravel()
        times = np.asarray(ts, dtype=np.float64).ravel()
        if len(items) != len(times):
            raise ConfigError(
                f"partial_fit of trending needs one timestamp per item: got {len(items)} items and "
                f"{len(times)} timestamps. Pass arrays of equal length."
            )
        bad = (items < 0) | (items >= self.n_items_)
        check_param(
            "item_indices",
            items[bad][:5].tolist(),
            not bad.any(),
            f"item indices in [0, {self.n_items_ - 1}]",
            "trending.partial_fit",
        )
        check_param(
            "ts",
            times[~np.isfinite(times)][:5].tolist(),
            bool(np.isfinite(times).all()),
            "finite epoch seconds",
            "trending.partial_fit",
        )
        if len(items) == 0:
            return self
        new_ref = max(self.ref_time_, float(times.max()))
        self.values_ = self.values_ * np.exp2(-(new_ref - self.ref_time_) / self.half_life)
        self.ref_time_ = new_ref
        w = event_weights(
            None if types is None else np.asarray(types).ravel(), len(items), self.use_event_weights
        )
        self._add(items, times, w)
        return self

    def update(self, delta: TrainData) -> Trending:
        """:meth:`partial_fit` with the events of ``delta`` (matched by id; new items are appended).

        ``delta`` must carry timestamps (epoch seconds): positions mean nothing across batches.
        """
        self._check_fitted()
        check_delta(delta, "trending.update")
        if delta.timestamps is None:
            raise ConfigError(
                "The 'delta' parameter of trending.update must carry timestamps (epoch seconds); "
                "got TrainData.timestamps=None. Build it from an events frame with 'ts'."
            )
        item_map, _ = extend_vocab(self, delta)
        self.values_ = grow_rows(np.asarray(self.values_, dtype=np.float64), len(self.item_ids_))
        if not delta.sequences:
            return self
        items = item_map[np.concatenate(delta.sequences).astype(np.int64)]
        ts = np.concatenate(delta.timestamps).astype(np.float64)
        types = None if delta.types is None else np.concatenate(delta.types)
        return self.partial_fit(items, ts, types)

    def _add(self, items: np.ndarray, times: np.ndarray, w: np.ndarray) -> None:
        decay = np.exp2(-(self.ref_time_ - times) / self.half_life)  # events after ref never happen here
        self.values_ = self.values_ + np.bincount(items, weights=w * decay, minlength=len(self.values_))

    def decayed_counts(self, time: float | None = None) -> np.ndarray:
        """Every item's decayed count at ``time`` (default: the latest event seen)."""
        self._check_fitted()
        if time is None:
            return self.values_.copy()
        age = min(max(float(time) - self.ref_time_, 0.0), MAX_REQUEST_HALF_LIVES * self.half_life)
        return self.values_ * np.exp2(-age / self.half_life)

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        return (
            np.stack([self.decayed_counts(c.time) for c in contexts]).astype(np.float32)
            if contexts
            else np.zeros((0, self.n_items_), np.float32)
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values_, "ref_time": np.array([self.ref_time_], dtype=np.float64)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.values_ = arrays["values"]
        self.ref_time_ = float(arrays["ref_time"][0])
