"""Model families registered by name: ``register_model("sasrec", SASRec)``.

Each family lives in its own module or package under ``liveshelf.models`` and calls
:func:`register_model` at import time. ``liveshelf.models`` imports the built-in families.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liveshelf.errors import RegistryError

_MODELS: dict[str, type] = {}


def register_model(name: str, cls: type) -> None:
    if name in _MODELS and _MODELS[name] is not cls:
        raise RegistryError(
            f"A model named {name!r} is already registered by {_MODELS[name].__module__}; "
            f"pick another name in {cls.__module__}."
        )
    _MODELS[name] = cls


def available_models() -> list[str]:
    _load_builtins()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    _load_builtins()
    if name not in _MODELS:
        raise RegistryError(
            f"Unknown model {name!r}. Known models: {', '.join(sorted(_MODELS))}. "
            "A new family registers itself with register_model() in its package under "
            "src/liveshelf/models/ and is imported in src/liveshelf/models/__init__.py."
        )
    return _MODELS[name]


def create_model(name: str, **params: Any):
    return get_model_class(name)(**params)


def load_model(path: Path | str):
    """Load any saved model from its artifact folder (``config.json`` names the family)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.exists():
        raise RegistryError(f"{path} is not a model artifact folder: it has no config.json.")
    model_type = json.loads(cfg.read_text())["model_type"]
    return get_model_class(model_type).load(path)


def _load_builtins() -> None:
    import liveshelf.models  # noqa: F401  (registers the built-in families)
