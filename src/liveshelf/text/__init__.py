"""Text models: encoders (+ on-disk cache, Chinese fallback), fine-tuning, generation, grounding, Q&A."""

from liveshelf.text.cache import EmbeddingCache
from liveshelf.text.chinese import HashedTfidfEncoder
from liveshelf.text.encoder import TextEncoder

__all__ = ["EmbeddingCache", "HashedTfidfEncoder", "TextEncoder"]
