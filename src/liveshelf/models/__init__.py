"""Recommenders. Importing this package registers the built-in families."""

from __future__ import annotations

import importlib

from liveshelf.models.base import BaseRecommender, Context, Recommender, TrainData
from liveshelf.models.registry import available_models, create_model, load_model, register_model

# Built-in families; each module calls register_model() when imported.
_FAMILIES = ("classic", "sasrec", "textseq", "llmrank", "ranker")

for _name in _FAMILIES:
    try:
        importlib.import_module(f"liveshelf.models.{_name}")
    except ModuleNotFoundError as exc:  # a family still being written must not break the rest
        if exc.name != f"liveshelf.models.{_name}":
            raise

__all__ = [
    "BaseRecommender",
    "Context",
    "Recommender",
    "TrainData",
    "available_models",
    "create_model",
    "load_model",
    "register_model",
]
