"""Classic recommenders: popularity, trending, repeat, item-kNN and matrix factorisation.

Each model lives in its own module; importing this package registers them by name.
"""

from __future__ import annotations

from liveshelf.models.classic.als import ALS
from liveshelf.models.classic.bpr import BPR
from liveshelf.models.classic.itemknn import ItemKNN
from liveshelf.models.classic.pop import Popularity
from liveshelf.models.classic.repeat import Repeat
from liveshelf.models.classic.trending import Trending
from liveshelf.models.registry import register_model

for _cls in (Popularity, Trending, Repeat, ItemKNN, ALS, BPR):
    register_model(_cls.name, _cls)

__all__ = ["ALS", "BPR", "ItemKNN", "Popularity", "Repeat", "Trending"]
