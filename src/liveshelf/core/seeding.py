"""One way to seed the random generators a run uses."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and, when it is imported, torch."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:  # seeded only when something brought torch in (never imported here)
        sys.modules["torch"].manual_seed(seed)


__all__ = ["seed_everything"]
