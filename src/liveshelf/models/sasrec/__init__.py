"""The SASRec family: ``sasrec`` (full-softmax SASRec) and ``livesasrec`` (+ LiveRec ideas)."""

from __future__ import annotations

from liveshelf.models.registry import register_model
from liveshelf.models.sasrec.config import SASRecConfig
from liveshelf.models.sasrec.livesasrec import LiveSASRec, LiveSASRecConfig
from liveshelf.models.sasrec.recommender import SASRec

register_model("sasrec", SASRec)
register_model("livesasrec", LiveSASRec)

__all__ = ["LiveSASRec", "LiveSASRecConfig", "SASRec", "SASRecConfig"]
