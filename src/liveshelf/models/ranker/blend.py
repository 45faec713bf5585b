"""``blend``: the ranker's sources with fixed equal weights - no learning.

Each source's full-catalogue scores are min-max normalised per request (to [0, 1]) and summed
with equal, hand-set weights. It is the offline counterpart of serving's hand blend and the
baseline the learned ``ranker`` must beat with the same sources. Sources are fitted as the
ranker's are (a source that cannot run on the data is skipped, with the reason in
``fit_info_``) and saved in ``sources/<name>/``. No pickle.

>>> BlendRecommender(sources="pop,itemknn,sasrec").fit(train).score_batch(contexts)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from liveshelf.errors import check_param
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.ranker.sources import (
    check_source_params,
    fit_sources,
    load_sources,
    parse_sources,
    save_sources,
)


def minmax_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] (a constant row becomes 0)."""
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    return (x - lo) / np.where(span > 0, span, 1.0)


class BlendRecommender(BaseRecommender):
    """Equal-weight sum of per-request min-max normalised source scores (see the module docstring)."""

    name: ClassVar[str] = "blend"

    def __init__(
        self,
        sources: str | list[str] = "pop,itemknn,sasrec,textseq",
        source_params: dict[str, dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.sources = sources
        self.source_params = source_params
        self.seed = seed

    def fit(self, data: TrainData, sources: dict[str, Any] | None = None) -> BlendRecommender:
        """Fit the sources (or take ``sources``: fitted on ``data``, by name)."""
        where = type(self).__name__
        names = parse_sources(self.sources, where)
        params = check_source_params(self.source_params, names, where)
        check_param("seed", self.seed, isinstance(self.seed, int) and self.seed >= 0, "an int >= 0", where)
        t0 = time.perf_counter()
        self._set_vocab(data)
        self.models_, self.skipped_sources_, seconds = fit_sources(
            names, params, data, self.seed, given=sources
        )
        self.source_names_ = list(self.models_)
        self.fit_info_ = {
            "sources": self.source_names_,
            "skipped_sources": self.skipped_sources_,
            "weights": dict.fromkeys(self.source_names_, 1.0),
            "source_fit_seconds": seconds,
            "fit_seconds": round(time.perf_counter() - t0, 1),
        }
        return self

    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        total = np.zeros((len(contexts), self.n_items_), dtype=np.float64)
        for model in self.models_.values():
            total += minmax_rows(np.asarray(model.score_batch(contexts), dtype=np.float64))
        return total.astype(np.float32)

    def save(self, path: Path | str) -> None:
        self._check_fitted()
        path = Path(path)
        super().save(path)
        save_sources(self.models_, path)
        state = {
            "source_names": self.source_names_,
            "skipped_sources": self.skipped_sources_,
            "fit_info": self.fit_info_,
        }
        (path / "blend.json").write_text(json.dumps(state, sort_keys=True, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> BlendRecommender:
        path = Path(path)
        model = super().load(path)
        assert isinstance(model, BlendRecommender)
        state = json.loads((path / "blend.json").read_text())
        model.source_names_ = list(state["source_names"])
        model.skipped_sources_ = list(state["skipped_sources"])
        model.fit_info_ = dict(state["fit_info"])
        model.models_ = load_sources(model.source_names_, path)
        return model


__all__ = ["BlendRecommender", "minmax_rows"]
