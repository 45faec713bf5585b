"""The simulation oracle family: :class:`GroundTruthRanker` (``truth-oracle``), registered as kind ``simulation``."""

from liveshelf.models.oracle.truth import GroundTruthRanker
from liveshelf.models.registry import register_model

register_model(GroundTruthRanker.name, GroundTruthRanker, kind="simulation")

__all__ = ["GroundTruthRanker"]
