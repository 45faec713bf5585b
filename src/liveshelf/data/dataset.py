"""The in-memory container every reader returns and every trainer starts from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from liveshelf.data.item_vectors import ItemVectors
from liveshelf.schema import EVENT_COLUMNS


@dataclass
class Dataset:
    """Frames in the schema's column layout (see :mod:`liveshelf.schema`).

    ``events`` is required; the other frames are ``None`` when the source has none.
    ``split`` is aligned with ``events`` ("train" / "valid" / "test") when the source
    publishes its own split (UniSRec files, P5 leave-one-out); protocols use it as is.
    Rows of ``events`` are grouped by user, ``ts`` ascending within each user, with a
    stable tie order that keeps the source's sequence order (user order is the reader's).

    ``item_vectors`` maps a modality name (``image``, ``title_pca128`` ...) to the vectors of the items
    that have one (:class:`~liveshelf.data.item_vectors.ItemVectors`: unique ids, float32 ``(n, d)``);
    ``room_vectors`` the same for rooms (KuaiLive's title embeddings), which a host-target training
    set averages per host.
    """

    name: str
    events: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    rooms: pd.DataFrame | None = None
    shelf: pd.DataFrame | None = None
    hosts: pd.DataFrame | None = None
    split: pd.Series | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    item_vectors: dict[str, ItemVectors] = field(default_factory=dict)
    room_vectors: dict[str, ItemVectors] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in EVENT_COLUMNS if c not in self.events.columns]
        if missing:
            raise ValueError(f"Dataset {self.name!r}: events frame lacks columns {missing}.")
        if self.split is not None and len(self.split) != len(self.events):
            raise ValueError(
                f"Dataset {self.name!r}: split has {len(self.split)} rows, events {len(self.events)}."
            )
        for what, sets in (("item_vectors", self.item_vectors), ("room_vectors", self.room_vectors)):
            for name, (ids, vectors) in sets.items():
                if vectors.ndim != 2 or len(ids) != len(vectors) or not pd.Index(ids).is_unique:
                    raise ValueError(
                        f"Dataset {self.name!r}: {what}[{name!r}] must hold unique ids and one row per id; "
                        f"got {len(ids)} ids and vectors of shape {vectors.shape}."
                    )

    @property
    def n_users(self) -> int:
        return int(self.events["user"].nunique())

    @property
    def n_items(self) -> int:
        if self.items is not None:
            return int(len(self.items))
        return int(self.events["item"].dropna().nunique())

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "events": int(len(self.events)),
            "users": self.n_users,
            "items": self.n_items,
            "rooms": 0 if self.rooms is None else int(len(self.rooms)),
            "shelf_slots": 0 if self.shelf is None else int(len(self.shelf)),
            "event_types": self.events["type"].value_counts().to_dict(),
        }
