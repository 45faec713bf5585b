"""How a served model sees the viewer's sequence (:class:`ModelView`). What the pipeline knows about a viewer
(:class:`Viewer`: decayed item, host, category and brand weights) is :mod:`liveshelf.profile.viewer`, re-exported
here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from liveshelf.models.base import Recommender
from liveshelf.profile.viewer import Viewer, build_viewer, category_levels, level_shares, profile_summary


class ModelView:
    """A model plus its id -> index maps, built once per model object."""

    def __init__(self, model: Recommender) -> None:
        from liveshelf.models.base import Context

        self.model = model
        self._context = Context
        items = getattr(model, "item_ids_", None)  # the fitted vocabularies (state, not an ability)
        users = getattr(model, "user_ids_", None)
        self.item_ids = [str(x) for x in ([] if items is None else items)]
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        self.user_index = {str(u): i for i, u in enumerate([] if users is None else users)}

    def context(self, user: str | None, seq: Sequence[tuple], room: str | None, t: float) -> Any:
        keep = [
            (self.item_index[e[0]], e[2], e[3]) for e in seq if e[0] is not None and e[0] in self.item_index
        ]
        items = np.asarray([k[0] for k in keep], dtype=np.int64)
        ts = np.asarray([k[1] for k in keep], dtype=np.float64)
        types = np.asarray([k[2] for k in keep], dtype=object)
        return self._context(
            items=items,
            ts=ts,
            types=types,
            user=user,
            user_index=self.user_index.get(user or "", -1),
            room=room,
            time=t,
        )

    def columns(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``items`` of the items the model knows, and their model indices."""
        cols = [(j, self.item_index[it]) for j, it in enumerate(items) if it in self.item_index]
        return (
            np.asarray([c[0] for c in cols], dtype=np.int64),
            np.asarray([c[1] for c in cols], dtype=np.int64),
        )

    def scores(
        self, contexts: list[Any], items: Sequence[str], cols: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """``(B, len(items))`` model scores; NaN for items outside the model's vocabulary.

        ``cols``: :meth:`columns` of ``items``, when the caller keeps them.
        """
        out = np.full((len(contexts), len(items)), np.nan, dtype=np.float64)
        j_idx, cand = self.columns(items) if cols is None else cols
        if not len(cand) or not contexts:
            return out
        out[:, j_idx] = np.asarray(self.model.score_batch(contexts, cand), dtype=np.float64)
        return out


__all__ = ["ModelView", "Viewer", "build_viewer", "category_levels", "level_shares", "profile_summary"]
