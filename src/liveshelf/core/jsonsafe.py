"""Values made JSON-safe, once: numpy scalars and arrays to Python, NaN / inf to ``None``, paths to text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with every part JSON-serialisable (``repr`` for anything unknown)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return repr(value)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar (anything else unchanged)."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["jsonable", "plain"]
