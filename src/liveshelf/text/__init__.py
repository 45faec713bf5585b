"""Text models: encoders (MiniLM or any local model, multilingual e5, hashing; on-disk cache), fine-tuning, generation, grounding, Q&A.

Names are imported lazily so ``import liveshelf.text.qa`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "E5Encoder": "liveshelf.text.e5",
    "EmbeddingCache": "liveshelf.text.cache",
    "HashedTfidfEncoder": "liveshelf.text.chinese",
    "TextEncoder": "liveshelf.text.encoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'liveshelf.text' has no attribute {name!r}")
