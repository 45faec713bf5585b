"""liveshelf: real-time recommendation for live-stream commerce."""

from liveshelf.errors import (
    ConfigError,
    DataFormatError,
    LiveshelfError,
    NotFittedError,
    NotFoundError,
    RegistryError,
    ValidationError,
)
from liveshelf.schema import Event, EventType, Host, Item, Room, ShelfSlot, User

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataFormatError",
    "Event",
    "EventType",
    "Host",
    "Item",
    "LiveshelfError",
    "NotFittedError",
    "NotFoundError",
    "RegistryError",
    "Room",
    "ShelfSlot",
    "User",
    "ValidationError",
    "__version__",
]
