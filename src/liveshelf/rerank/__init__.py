"""Fair and calibrated re-ranking of a model's top-N candidates (numpy, no web or evaluation code).

- :class:`ExposurePenalty` — ``relevance - λ · exposure_so_far`` (``fair:lambda=...``)
- :class:`ExposureCap` — no item / group above a share of all exposure (``cap:...``)
- :class:`Calibrated` — Steck calibration to a target group mix (``calib:lambda=...``)
- :class:`MMRDiversity` — serving's MMR diversity step, offline (``mmr:lambda=...``); business rules
  (:mod:`liveshelf.rerank.rules`) then :func:`mmr` (:func:`served_order`) is what the serving pipeline calls

Every re-ranker has ``rerank(items, scores, k) -> (U, k)`` over a batch of users' candidates.

>>> import numpy as np
>>> from liveshelf.rerank import ExposurePenalty
>>> ExposurePenalty(lam=0.0).rerank(np.array([[5, 2, 9]]), np.array([[0.9, 0.5, 0.1]]), k=2).tolist()
[[5, 2]]
"""

from liveshelf.rerank._base import DISCOUNTS, position_weights, scale_relevance
from liveshelf.rerank.calibrated import Calibrated, history_target
from liveshelf.rerank.cap import ExposureCap
from liveshelf.rerank.diversity import MMRDiversity, mmr
from liveshelf.rerank.penalty import ExposurePenalty
from liveshelf.rerank.served import served_order
from liveshelf.rerank.spec import METHODS, RerankSetting, build_reranker, parse_rerank

__all__ = [
    "DISCOUNTS",
    "METHODS",
    "Calibrated",
    "ExposureCap",
    "ExposurePenalty",
    "MMRDiversity",
    "RerankSetting",
    "build_reranker",
    "history_target",
    "mmr",
    "parse_rerank",
    "position_weights",
    "scale_relevance",
    "served_order",
]
