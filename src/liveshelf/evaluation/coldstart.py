"""Cold-start evaluation: hide a share of the catalogue from training, test on those items.

:func:`hide_items` takes a protocol split (e.g. ``loo``) and removes every training event
of a seeded random ``fraction`` of the items (and validation targets among them). The
items stay in the catalogue (``item_ids``, ``item_text``) and the test cases stay as they
were, so a model is asked to rank items it has never seen an interaction with. An ID-only
model cannot know them (their embeddings only ever receive "negative" gradients); a
text-aware model can score them by their text. :func:`evaluate_cold` reports metrics on
all test cases and on the cases whose target is a hidden item.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from liveshelf.errors import check_param
from liveshelf.evaluation.protocols import ProtocolSplit
from liveshelf.evaluation.runner import evaluate_model
from liveshelf.models.base import Recommender


@dataclass
class ColdSplit:
    split: ProtocolSplit  # training events of hidden items removed; all test cases kept
    hidden: np.ndarray  # (n_items,) bool, True = item hidden from training

    def cold_cases(self) -> ProtocolSplit:
        """The same split restricted to the test cases whose target is a hidden item."""
        cases = [c for c in self.split.cases if self.hidden[c.target]]
        return replace(self.split, cases=cases, meta={**self.split.meta, "cases_subset": "cold targets"})


def hide_items(split: ProtocolSplit, fraction: float = 0.2, seed: int = 0) -> ColdSplit:
    """Hide a seeded random ``fraction`` of the items from ``split.train`` (see module docs)."""
    check_param(
        "fraction",
        fraction,
        isinstance(fraction, (int, float)) and 0 < fraction < 1,
        "a float in (0, 1)",
        "hide_items",
    )
    train = split.train
    n = train.n_items
    rng = np.random.default_rng(seed)
    hidden = np.zeros(n, dtype=bool)
    hidden[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    keep = [~hidden[np.asarray(s, dtype=np.int64)] for s in train.sequences]

    def cut(arrays: list[np.ndarray] | None) -> list[np.ndarray] | None:
        return None if arrays is None else [np.asarray(a)[k] for a, k in zip(arrays, keep, strict=True)]

    valid = None
    if train.valid_targets is not None:
        valid = np.asarray(train.valid_targets, dtype=np.int64).copy()
        valid[(valid >= 0) & hidden[np.maximum(valid, 0)]] = -1
    n_removed = int(sum(int((~k).sum()) for k in keep))
    meta: dict[str, Any] = {
        **train.meta,
        "hidden_items": int(hidden.sum()),
        "hidden_seed": seed,
        "hidden_fraction": fraction,
        "removed_train_events": n_removed,
    }
    cold_train = replace(
        train,
        sequences=[np.asarray(a)[k] for a, k in zip(train.sequences, keep, strict=True)],
        timestamps=cut(train.timestamps),
        types=cut(train.types),
        valid_targets=valid,
        meta=meta,
    )
    cold = replace(
        split,
        train=cold_train,
        meta={
            **split.meta,
            "hidden_items": int(hidden.sum()),
            "hidden_fraction": fraction,
            "hidden_seed": seed,
            "removed_train_events": n_removed,
        },
    )
    return ColdSplit(split=cold, hidden=hidden)


def evaluate_cold(
    model: Recommender, cold: ColdSplit, batch_size: int = 512
) -> dict[str, dict[str, float | None]]:
    """Metrics of a model fitted on ``cold.split.train``: ``{"all": ..., "cold": ...}``."""
    return {
        "all": evaluate_model(model, cold.split, batch_size=batch_size).metrics,
        "cold": evaluate_model(model, cold.cold_cases(), batch_size=batch_size).metrics,
    }


__all__ = ["ColdSplit", "evaluate_cold", "hide_items"]
