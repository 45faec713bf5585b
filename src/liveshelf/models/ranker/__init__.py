"""``ranker`` (learned two-stage hybrid), ``blend`` (its hand-weighted baseline) and the serving ranker.

``lgbm.LambdaRanker`` is the LightGBM lambdarank wrapper both rankers use; ``live`` (the serving
ranker, ``liveranker``) is imported when present.
"""

from liveshelf.models.ranker.blend import BlendRecommender
from liveshelf.models.ranker.hybrid import HybridRanker
from liveshelf.models.ranker.lgbm import LambdaRanker
from liveshelf.models.registry import register_model

register_model("ranker", HybridRanker)
register_model("blend", BlendRecommender)

try:
    from liveshelf.models.ranker import live  # noqa: F401  (registers "liveranker")
except ModuleNotFoundError as exc:  # the serving ranker is added separately
    if exc.name != "liveshelf.models.ranker.live":
        raise

__all__ = ["BlendRecommender", "HybridRanker", "LambdaRanker"]
