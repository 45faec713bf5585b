"""Recommenders: the protocol, the base class and the registry of families (imported on first need)."""

from __future__ import annotations

from liveshelf.models.base import BaseRecommender, Context, Recommender, TrainData
from liveshelf.models.registry import available_models, create_model, load_model, register_model

# The built-in families (liveshelf.models.registry.FAMILIES) are imported on first need: asking for a model
# by name imports the families until one registers it, so loading an itemknn never imports torch.

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
