"""The one exception hierarchy of liveshelf.

::

    LiveshelfError
     ├── ConfigError(LiveshelfError, ValueError)        bad settings or arguments
     ├── ValidationError(LiveshelfError, ValueError)    a record or field failed validation
     ├── DataFormatError(LiveshelfError, ValueError)    a file is not in the expected format
     ├── NotFoundError(LiveshelfError, KeyError)        unknown user / item / room / model
     ├── NotFittedError(LiveshelfError, AttributeError) a model used before ``fit``
     └── RegistryError(LiveshelfError, KeyError)        unknown or duplicate model name

Messages name the field or parameter, the expectation, the value and the fix, e.g.
"The 'k' parameter of feed must be an int in [1, 500]. Got 0 instead."
The web layer maps each class to one HTTP status in a single handler.
"""

from __future__ import annotations


class LiveshelfError(Exception):
    """Base class of every error liveshelf raises on purpose."""


class ConfigError(LiveshelfError, ValueError):
    """A setting or argument is out of range or inconsistent."""


class ValidationError(LiveshelfError, ValueError):
    """A record failed validation. ``field`` and ``value`` say where."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class DataFormatError(LiveshelfError, ValueError):
    """A file or folder is not in the format the reader expects."""


class NotFoundError(LiveshelfError, KeyError):
    """An unknown user, item, room, model version or file."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class NotFittedError(LiveshelfError, AttributeError):
    """A model was used before ``fit`` was called."""


class RegistryError(LiveshelfError, KeyError):
    """A model name is unknown or registered twice."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_param(name: str, value: object, ok: bool, expectation: str, where: str = "") -> None:
    """Raise ConfigError in the house style unless ``ok``.

    >>> check_param("k", 0, 1 <= 0 <= 500, "an int in [1, 500]", "feed")
    Traceback (most recent call last):
    ...
    liveshelf.errors.ConfigError: The 'k' parameter of feed must be an int in [1, 500]. Got 0 instead.
    """
    if not ok:
        of = f" of {where}" if where else ""
        raise ConfigError(f"The '{name}' parameter{of} must be {expectation}. Got {value!r} instead.")
