"""The simulator's truth oracle as a model: scores items by the simulated world's hidden preferences.

A model family like the others (``model_type: truth-oracle``, kind ``simulation``), so the registry saves,
loads and serves its artifact without the online simulator (:mod:`liveshelf.experiment.online_sim`) being
imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.data.sim.truth import GroundTruth
from liveshelf.errors import NotFittedError


class GroundTruthRanker:
    """The oracle arm of a simulation: scores items by the world's hidden ``preference`` of the viewer.

    An upper bound to compare models and A/B machinery against, never a production model:
    it needs the simulator's truth. Saved as ``config.json`` (``model_type: truth-oracle``) plus
    the truth files, so the model registry stores, versions and serves it like any model.

    >>> ranker = GroundTruthRanker(world.truth).fit(None)                      # doctest: +SKIP
    >>> ModelRegistry(home / "models").register(ranker, name="oracle")          # doctest: +SKIP
    """

    name = "truth-oracle"

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.item_ids_: np.ndarray | None = None
        self.user_ids_: np.ndarray | None = None

    def fit(self, data: Any = None) -> GroundTruthRanker:
        """Nothing to learn: the vocabulary is the world's items."""
        self.item_ids_ = np.asarray(self.truth.item_ids, dtype=object)
        self.user_ids_ = np.asarray(self.truth.user_ids, dtype=object)
        return self

    def score(self, ctx: Any, candidates: np.ndarray) -> np.ndarray:
        """Preference of ``ctx.user`` for the candidate item indices (0 for a user outside the world)."""
        if self.item_ids_ is None:
            raise NotFittedError("This GroundTruthRanker instance is not fitted yet. Call 'fit' first.")
        cand = np.asarray(candidates, dtype=np.int64)
        user = ctx.user
        if user is None or user not in self.truth._u:
            return np.zeros(len(cand))
        return self.truth.preference_idx(np.full(len(cand), self.truth._u[user]), cand)

    def score_batch(self, contexts: list[Any], candidates: np.ndarray | None = None) -> np.ndarray:
        """``(B, n)`` preferences; ``candidates=None`` scores every item."""
        if self.item_ids_ is None:
            raise NotFittedError("This GroundTruthRanker instance is not fitted yet. Call 'fit' first.")
        cand = (
            np.arange(len(self.item_ids_)) if candidates is None else np.asarray(candidates, dtype=np.int64)
        )
        return np.stack([self.score(c, cand) for c in contexts]) if contexts else np.zeros((0, len(cand)))

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.truth.save(path)
        (path / "config.json").write_text(json.dumps({"model_type": self.name}, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> GroundTruthRanker:
        return cls(GroundTruth.load(Path(path))).fit()


__all__ = ["GroundTruthRanker"]
