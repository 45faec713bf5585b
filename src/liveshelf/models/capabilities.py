"""Optional abilities a model declares by inheriting them (never found by ``hasattr``).

- :class:`Incremental` — ``update(delta)`` folds new events into a fitted model without a refit
  (pop, repeat, trending, itemknn, implicit MF); the continuous loop's ``update`` mode needs it.
- :class:`EmbedsItems` — ``item_embeddings()`` gives one vector per item in ``item_ids_`` order
  (the SASRec family, textseq); serving's content source uses them when ``content_embedding="auto"``.
- :class:`WarmStartable` — ``warm_start_from(parent)`` makes the next ``fit`` start from a fitted
  parent's weights (the SASRec family); the loop's ``finetune`` mode needs it.

Callers test ``isinstance(model, Incremental)`` (or the class with ``issubclass``).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from liveshelf.core.traindata import TrainData


class Incremental(abc.ABC):
    """A fitted model that folds new events in (``update``) instead of refitting on everything."""

    @abc.abstractmethod
    def update(self, delta: TrainData) -> Any:
        """Fold ``delta`` (events after the fitted ones; new users / items appended) in; returns self.

        Raises :class:`liveshelf.errors.NotFittedError` before ``fit``."""


class EmbedsItems(abc.ABC):
    """A fitted model with one learned vector per item."""

    @abc.abstractmethod
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, d)`` float32, rows in ``item_ids_`` order."""


class WarmStartable(abc.ABC):
    """A model whose next ``fit`` can start from a fitted parent's weights (same family)."""

    @abc.abstractmethod
    def warm_start_from(self, parent: Any) -> bool:
        """Start the next ``fit`` from ``parent``'s weights where shapes agree (item rows matched by id);
        False when there is nothing to copy (different family, parent not fitted)."""


__all__ = ["EmbedsItems", "Incremental", "WarmStartable"]
