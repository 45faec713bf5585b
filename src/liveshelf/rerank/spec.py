"""``--rerank`` specifications: ``METHOD:VALUES`` strings -> re-ranker settings -> re-rankers.

=================================  ==============================================================
``fair:lambda=0,0.1,0.3,1``        :class:`~liveshelf.rerank.penalty.ExposurePenalty`, one per λ >= 0
``cap:0.01,0.02``                  :class:`~liveshelf.rerank.cap.ExposureCap`, one per cap share in (0, 1]
``calib:lambda=0.3,0.6,0.9``       :class:`~liveshelf.rerank.calibrated.Calibrated`, one per λ in [0, 1]
``mmr:lambda=1,0.8,0.5``           :class:`~liveshelf.rerank.diversity.MMRDiversity` (serving's MMR), λ in [0, 1]
=================================  ==============================================================

The key is optional (``fair:0,0.1`` = ``fair:lambda=0,0.1``; ``cap:cap=0.01``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from liveshelf.errors import ConfigError

#: method -> (parameter key, valid range text, check)
METHODS: dict[str, tuple[str, str, Any]] = {
    "fair": ("lambda", "numbers >= 0", lambda v: v >= 0),
    "cap": ("cap", "shares in (0, 1]", lambda v: 0 < v <= 1),
    "calib": ("lambda", "numbers in [0, 1]", lambda v: 0 <= v <= 1),
    "mmr": ("lambda", "numbers in [0, 1]", lambda v: 0 <= v <= 1),
}


@dataclass(frozen=True)
class RerankSetting:
    """One point of a sweep: a method and its parameter value."""

    method: str
    value: float

    @property
    def label(self) -> str:
        key = METHODS[self.method][0]
        shown = f"{self.value:g}" if key == self.method else f"{key}={self.value:g}"
        return f"{self.method}:{shown}"


def parse_rerank(specs: str | list[str] | None) -> list[RerankSetting]:
    """``["fair:lambda=0,0.5", "cap:0.02"]`` -> settings, in the order given (duplicates dropped).

    >>> [s.label for s in parse_rerank("fair:0,0.5")]
    ['fair:lambda=0', 'fair:lambda=0.5']
    """
    if specs is None:
        return []
    items = [specs] if isinstance(specs, str) else list(specs)
    out: list[RerankSetting] = []
    for spec in items:
        method, sep, rest = spec.strip().partition(":")
        if method not in METHODS or not sep or not rest.strip():
            raise ConfigError(
                f"The '--rerank' option must be METHOD:VALUES with METHOD one of "
                f"{sorted(METHODS)} (e.g. fair:lambda=0,0.1,0.3 or cap:0.01,0.02). "
                f"Got {spec!r} instead."
            )
        key, check_text, check = METHODS[method]
        if "=" in rest:
            given, _, rest = rest.partition("=")
            if given.strip() != key:
                raise ConfigError(
                    f"The '--rerank' option {spec!r} names the parameter {given.strip()!r}; "
                    f"{method} takes {key!r} (e.g. {method}:{key}=...). Fix the spec."
                )
        for raw in rest.split(","):
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(
                    f"The '--rerank' option {spec!r} must list {check_text} separated by "
                    f"commas; {raw.strip()!r} is not a number. Fix the spec."
                ) from None
            if not (np.isfinite(value) and check(value)):
                raise ConfigError(
                    f"The '{key}' values of '--rerank {method}' must be {check_text}. Got {value:g} instead."
                )
            setting = RerankSetting(method, value)
            if setting not in out:
                out.append(setting)
    return out


def build_reranker(
    setting: RerankSetting,
    *,
    groups: np.ndarray | None = None,
    target: np.ndarray | None = None,
    discount: str = "log",
):
    """The re-ranker of one setting. ``groups`` (int per item) is what exposure is counted on for
    ``fair`` / ``cap`` (None = items) and the mix ``calib`` calibrates with ``target``."""
    from liveshelf.rerank.calibrated import Calibrated
    from liveshelf.rerank.cap import ExposureCap
    from liveshelf.rerank.diversity import MMRDiversity
    from liveshelf.rerank.penalty import ExposurePenalty

    if setting.method == "mmr":  # groups: what counts as similar (e.g. categories)
        return MMRDiversity(lam=setting.value, groups=groups)
    if setting.method == "fair":
        return ExposurePenalty(lam=setting.value, discount=discount, groups=groups)
    if setting.method == "cap":
        return ExposureCap(cap=setting.value, discount=discount, groups=groups)
    return Calibrated(lam=setting.value, groups=groups, target=target)


__all__ = ["METHODS", "RerankSetting", "build_reranker", "parse_rerank"]
