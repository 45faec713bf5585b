"""Domain types of live commerce: users, items, hosts, rooms, shelf slots and events.

Records at the boundaries are frozen dataclasses; bulk data travels as pandas/arrow
frames whose columns are listed in ``*_COLUMNS`` below (the same names as the fields).

Time: every timestamp is timezone-aware UTC. In frames the ``ts``/``start``/``end``
columns are ``datetime64[us, UTC]``; :func:`to_epoch_seconds` turns them into float
seconds for numeric work.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import TS_DTYPE as TS_DTYPE  # re-exported: the frame columns' dtype
from liveshelf.core.timeutil import from_epoch_seconds as from_epoch_seconds
from liveshelf.core.timeutil import to_epoch_seconds as to_epoch_seconds


class EventType(enum.StrEnum):
    """What a viewer did. The order is the engagement funnel, weakest first."""

    IMPRESSION = "impression"
    ENTER = "enter"
    LEAVE = "leave"
    VIEW = "view"
    CLICK = "click"
    LIKE = "like"
    COMMENT = "comment"
    SHARE = "share"
    FOLLOW = "follow"
    CART = "cart"
    GIFT = "gift"
    PURCHASE = "purchase"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

#: Default implicit-feedback weight of each event type (used by CF models and profiles).
EVENT_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "enter": 1.0,
    "leave": 0.0,
    "view": 1.0,
    "click": 1.0,
    "like": 1.5,
    "comment": 1.5,
    "share": 2.0,
    "follow": 2.0,
    "cart": 3.0,
    "gift": 3.0,
    "purchase": 5.0,
}

#: Event types that express positive interest in the item/room (used as training targets).
POSITIVE_TYPES: frozenset[str] = frozenset(
    {"enter", "view", "click", "like", "comment", "share", "follow", "cart", "gift", "purchase"}
)

GENDERS = ("f", "m", "other")
SPENDING_TIERS = ("low", "mid", "high", "vip")


@dataclass(frozen=True, slots=True)
class User:
    id: str
    gender: str | None = None
    age_band: str | None = None  # e.g. "18-24"
    region: str | None = None
    spending_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    title: str = ""
    description: str = ""
    category: tuple[str, ...] = ()  # category path, broadest first
    brand: str | None = None
    price: float | None = None
    rating: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    language: str | None = None  # "zh", "en", ...

    def text(self) -> str:
        """The item as one text: title, category path, brand, description."""
        parts = [self.title, " > ".join(self.category), self.brand or "", self.description]
        return ". ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    name: str = ""
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    host: str
    title: str = ""
    start: datetime | None = None
    end: datetime | None = None  # None = still live


@dataclass(frozen=True, slots=True)
class ShelfSlot:
    room: str
    item: str
    start: datetime
    end: datetime | None = None  # None = still on the shelf
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    ts: datetime
    user: str
    type: str
    room: str | None = None
    item: str | None = None
    value: float | None = None  # price paid, gift value, watch seconds ...
    text: str | None = None  # comment text


EVENT_COLUMNS = ("event_id", "ts", "user", "type", "room", "item", "value", "text")
ITEM_COLUMNS = (
    "id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "rating",
    "attributes",
    "language",
)
USER_COLUMNS = ("id", "gender", "age_band", "region", "spending_tier")
ROOM_COLUMNS = ("id", "host", "title", "start", "end")
SHELF_COLUMNS = ("room", "item", "start", "end", "pinned")
HOST_COLUMNS = ("id", "name", "categories")


def utc(ts: datetime | str | float | int) -> datetime:
    """Coerce a datetime, ISO string or epoch seconds to an aware UTC datetime."""
    if isinstance(ts, datetime):
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if isinstance(ts, (int, float, np.integer, np.floating)):
        return datetime.fromtimestamp(float(ts), tz=UTC)
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def host_categories(value: Any) -> list[str]:
    """A host's category paths, main category first, from any frame representation.

    Frames and files hold them as a JSON list string (``'["美妆 > 护肤", "服饰"]'``);
    lists/tuples and a single plain path are accepted too.
    """
    import json

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if str(v)]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in json.loads(text) if str(v)]
        except ValueError:
            pass
    return [text] if text else []


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
