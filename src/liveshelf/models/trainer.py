"""Compatibility: the training loop moved to :mod:`liveshelf.core.trainer` (one loop for the package)."""

from __future__ import annotations

from liveshelf.core.trainer import (
    AccumulateStrategy,
    Callback,
    EarlyStopping,
    LRSchedule,
    NaNGuard,
    OnStep,
    ProgressBar,
    ReduceLROnPlateau,
    Trainer,
    TrainStrategy,
)

__all__ = [
    "AccumulateStrategy",
    "Callback",
    "EarlyStopping",
    "LRSchedule",
    "NaNGuard",
    "OnStep",
    "ProgressBar",
    "ReduceLROnPlateau",
    "TrainStrategy",
    "Trainer",
]
