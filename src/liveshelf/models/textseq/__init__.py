"""The text-aware sequential recommender ``textseq`` (UniSRec-style, inductive over item texts)."""

from __future__ import annotations

from liveshelf.models.registry import register_model
from liveshelf.models.textseq.config import TextSeqConfig
from liveshelf.models.textseq.recommender import TextSeq, encode_texts

register_model("textseq", TextSeq)

__all__ = ["TextSeq", "TextSeqConfig", "encode_texts"]
