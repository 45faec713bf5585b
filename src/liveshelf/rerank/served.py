"""The re-ranking step of a served item list: business rules (:mod:`liveshelf.rerank.rules`), then
:func:`liveshelf.rerank.diversity.mmr` with a per-group cap. The serving pipeline calls :func:`served_order`
for shelves and next-item lists (the feed calls :func:`mmr` over rooms directly); ``liveshelf evaluate
--rerank mmr:...`` measures the same :func:`mmr`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from liveshelf.rerank.diversity import mmr
from liveshelf.rerank.rules import allowed


def served_order(
    items: Sequence[str],
    relevance: np.ndarray,
    attributes: Sequence[dict[str, Any] | None],
    blocked: set[str],
    k: int,
    *,
    lam: float = 1.0,
    vectors: Callable[[np.ndarray], np.ndarray | None] | None = None,
    groups: Sequence[str | None] | None = None,
    cap: int | None = None,
    demote: bool = True,
) -> np.ndarray:
    """Indices into ``items`` of the ``k`` shown, in order: the allowed items (not blocked, in stock)
    re-ranked by MMR (``lam``; ``vectors(kept)`` gives the unit vectors of the kept positions, asked only
    when something is kept) with at most ``cap`` per group (``demote``: capped items follow the others)."""
    keep = np.nonzero(allowed(items, attributes, blocked))[0]
    if not len(keep):
        return np.zeros(0, dtype=np.int64)
    order = mmr(
        np.asarray(relevance)[keep],
        None if vectors is None else vectors(keep),
        k,
        lam,
        groups=None if groups is None else [groups[int(i)] for i in keep],
        cap=cap,
        demote=demote,
    )
    return keep[np.asarray(order, dtype=np.int64)]


__all__ = ["served_order"]
