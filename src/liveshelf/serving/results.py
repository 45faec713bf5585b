"""What a ranking step produces: raw source values with their causes, scored candidates, ranked answers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from liveshelf.serving.features import FeatureRows


@dataclass
class Scored:
    key: str
    score: float
    reasons: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ranked:
    """One ranked answer: the recommendations, the feature rows of every candidate (None when the hand
    blend ranked and exposures are not logged), what ranked it, and per-surface facts."""

    recs: list[Scored]
    rows: FeatureRows | None
    ranked_by: str
    audience: int = 0
    known: bool = False


class Causes(Protocol):
    """The causes of one source's values, one per candidate: a list, or computed when read (``live.Lazy``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, j: int) -> dict[str, Any]: ...

    def __iter__(self) -> Iterator[dict[str, Any]]: ...


@dataclass
class Sources:
    """Raw per-source values over the candidates, and the cause of each value."""

    n: int
    values: dict[str, np.ndarray] = field(default_factory=dict)
    causes: dict[str, Causes] = field(default_factory=dict)

    def put(self, source: str, values: np.ndarray, causes: Causes) -> None:
        self.values[source] = np.asarray(values, dtype=np.float64)
        self.causes[source] = causes


def majority(causes: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """The most frequent non-empty cause (ties: first seen)."""
    counts: dict[str, tuple[int, dict[str, Any]]] = {}
    for c in causes:
        if not c:
            continue
        key = repr(sorted(c.items()))
        n, _ = counts.get(key, (0, c))
        counts[key] = (n + 1, c)
    if not counts:
        return {}
    return max(counts.values(), key=lambda p: p[0])[1]


__all__ = ["Ranked", "Scored", "Sources", "majority"]
