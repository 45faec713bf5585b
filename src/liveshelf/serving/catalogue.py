"""Item attributes by id, as the serving path reads them (thread-safe, versioned)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from liveshelf.core.catalog import parse_attributes


@dataclass(frozen=True)
class ItemInfo:
    id: str
    title: str = ""
    description: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    rating: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    language: str | None = None

    def text(self) -> str:
        return ". ".join(
            p for p in (self.title, self.category or "", self.brand or "", self.description) if p
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "rating": self.rating,
            "attributes": dict(self.attributes),
            "language": self.language,
        }


class Catalogue:
    """Item attributes by id (thread-safe). ``version`` grows with every change."""

    def __init__(self) -> None:
        self._items: dict[str, ItemInfo] = {}
        self._lock = threading.Lock()
        self.version = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item: str) -> ItemInfo | None:
        return self._items.get(item)

    @staticmethod
    def _infos(frame: pd.DataFrame) -> list[ItemInfo]:
        n = len(frame)

        def col(name: str) -> list[Any]:
            if name not in frame.columns:
                return [None] * n
            c = frame[name]
            return c.astype(object).where(c.notna(), None).tolist()  # NaN / NA / NaT -> None, column-wise

        rows = []
        for iid, title, desc, cat, brand, price, rating, attrs, lang in zip(
            frame["id"].tolist(),
            col("title"),
            col("description"),
            col("category"),
            col("brand"),
            col("price"),
            col("rating"),
            col("attributes"),
            col("language"),
            strict=True,
        ):
            rows.append(
                ItemInfo(
                    id=str(iid),
                    title=str(title or ""),
                    description=str(desc or ""),
                    category=cat,
                    brand=brand,
                    price=None if price is None else float(price),
                    rating=None if rating is None else float(rating),
                    attributes=parse_attributes(attrs),
                    language=lang,
                )
            )
        return rows

    def upsert_frame(self, frame: pd.DataFrame) -> int:
        """Insert or replace items from a schema items frame."""
        rows = self._infos(frame)
        with self._lock:
            items = dict(self._items)
            items.update((r.id, r) for r in rows)
            self._items = items  # one reference swap: readers see the old or the new catalogue
            self.version += 1
        return len(rows)

    def replace(self, frame: pd.DataFrame) -> int:
        """Replace the whole catalogue at once."""
        rows = self._infos(frame)
        with self._lock:
            self._items = {r.id: r for r in rows}
            self.version += 1
        return len(rows)

    def ids(self) -> list[str]:
        return list(self._items)


__all__ = ["Catalogue", "ItemInfo"]
