"""``llmrank``: a LoRA-tuned cross-encoder re-ranking a cheaper recommender's top candidates."""

from liveshelf.models.llmrank.recommender import LLMRank
from liveshelf.models.registry import register_model

register_model("llmrank", LLMRank)

__all__ = ["LLMRank"]
