"""A viewer's profile record (:class:`UserProfile`): what :class:`liveshelf.profile.ProfileBuilder` returns and
what the text generators read. It lives here, below the profile builder, so ``liveshelf.text`` never imports
``liveshelf.profile``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveshelf.text.facts import is_zh


@dataclass
class UserProfile:
    """One viewer's decayed interests at time ``t`` (shares sum to 1 within each family)."""

    user: str
    t: float
    n_events: int
    weight: float  # total decayed event weight at t
    categories: dict[str, float]
    brands: dict[str, float]
    price_bands: dict[str, float]  # en band label -> share
    attributes: dict[str, dict[str, float]]  # attribute name -> value -> share
    hosts: dict[str, float]
    active_hours: list[float]  # 24 shares by local hour
    tags_zh: list[str]
    tags_en: list[str]
    interest: np.ndarray | None = field(default=None, repr=False)  # (D,) weighted mean item vector

    def top_categories(self, k: int = 3) -> list[str]:
        return list(self.categories)[:k]

    def tag_line(self, lang: str = "zh") -> str:
        return " · ".join(self.tags_zh if lang == "zh" else self.tags_en)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """JSON-ready view (distributions cut to the ``top`` largest entries)."""

        def cut(d: Mapping[str, float]) -> dict[str, float]:
            return {k: round(v, 4) for k, v in list(d.items())[:top]}

        return {
            "user": self.user,
            "t": self.t,
            "n_events": self.n_events,
            "weight": round(self.weight, 4),
            "categories": cut(self.categories),
            "brands": cut(self.brands),
            "price_bands": cut(self.price_bands),
            "attributes": {k: cut(v) for k, v in self.attributes.items()},
            "hosts": cut(self.hosts),
            "active_hours": [round(x, 4) for x in self.active_hours],
            "tags": {"zh": self.tag_line("zh"), "en": self.tag_line("en")},
            "tags_zh": self.tags_zh,
            "tags_en": self.tags_en,
        }


def profile_language(profile: UserProfile) -> str:
    """``"zh"`` when most of the viewer's category weight is on Chinese category paths."""
    zh = sum(s for c, s in profile.categories.items() if is_zh(c))
    return "zh" if zh >= 0.5 or not profile.categories else "en"


__all__ = ["UserProfile", "profile_language"]
