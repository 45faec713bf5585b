"""Business rules applied before any ordering is shown: blocked items and items out of stock never show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def stock_of(attributes: dict[str, Any] | None) -> float | None:
    """The ``stock`` attribute as a number (None when absent or not a number)."""
    if not attributes or "stock" not in attributes:
        return None
    value = attributes["stock"]
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def allowed(
    items: Sequence[str], attributes: Sequence[dict[str, Any] | None], blocked: set[str]
) -> np.ndarray:
    """Business rules: not blocked and not out of stock (``stock == 0``)."""
    ok = np.ones(len(items), dtype=bool)
    for i, (item, attrs) in enumerate(zip(items, attributes, strict=True)):
        stock = stock_of(attrs)
        if item in blocked or (stock is not None and stock <= 0):
            ok[i] = False
    return ok


__all__ = ["allowed", "stock_of"]
