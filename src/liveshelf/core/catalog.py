"""Catalogue values read the same way everywhere: category paths and the ``attributes`` JSON column."""

from __future__ import annotations

import functools
import json
from typing import Any


@functools.lru_cache(maxsize=65_536)
def category_prefixes(path: str) -> tuple[str, ...]:
    """``"a > b > c"`` -> ``("a", "a > b", "a > b > c")`` (every level; memoised: a catalogue has few
    distinct paths)."""
    parts = [p.strip() for p in path.split(">") if p.strip()]
    return tuple(" > ".join(parts[: i + 1]) for i in range(len(parts)))


def parse_attributes(value: Any) -> dict[str, Any]:
    """The item ``attributes`` value (JSON object string, dict or missing) as a dict (``{}`` when empty,
    unparsable or not an object); values keep their JSON types."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value.strip():
        return {}
    try:
        out = json.loads(value)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


__all__ = ["category_prefixes", "parse_attributes"]
