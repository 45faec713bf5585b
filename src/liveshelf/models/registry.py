"""Model families registered by name: ``register_model("sasrec", SASRec)``.

Each family lives in its own module or package under ``liveshelf.models`` and calls
:func:`register_model` at import time. ``liveshelf.models`` imports the built-in families.
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

from liveshelf.errors import RegistryError

#: The kinds differ (recommender, ranker, simulation) and share no base class: callers that need one
#: narrow with isinstance / issubclass.
_MODELS: dict[str, type[Any]] = {}
#: What each registered family is: "recommender" (the Recommender protocol: fit on TrainData, score
#: item candidates; what ``liveshelf evaluate --model`` takes), "ranker" (the serving ranker over
#: feature rows) or "simulation" (the simulator's truth oracle: it needs the simulated world, not
#: training data). Every kind is saved, loaded and versioned the same way.
_KINDS: dict[str, str] = {}
KINDS: tuple[str, ...] = ("recommender", "ranker", "simulation")


def register_model(name: str, cls: type[Any], kind: str = "recommender") -> None:
    if kind not in KINDS:
        raise RegistryError(f"register_model: kind must be one of {KINDS}; got {kind!r} for {name!r}.")
    if name in _MODELS and _MODELS[name] is not cls:
        raise RegistryError(
            f"A model named {name!r} is already registered by {_MODELS[name].__module__}; "
            f"pick another name in {cls.__module__}."
        )
    _MODELS[name] = cls
    _KINDS[name] = kind


def available_models(kind: str = "recommender") -> list[str]:
    """Registered families of ``kind`` ("recommender" by default; ``"all"`` for every kind)."""
    _load_builtins(None)
    return sorted(n for n in _MODELS if kind == "all" or _KINDS.get(n) == kind)


def get_model_class(name: str) -> type[Any]:
    _load_builtins(name)
    if name not in _MODELS:
        raise RegistryError(
            f"Unknown model {name!r}. Known models: {', '.join(sorted(_MODELS))}. "
            "A new family registers itself with register_model() in its package under "
            "src/liveshelf/models/ and is listed in liveshelf.models.registry.FAMILIES."
        )
    return _MODELS[name]


def create_model(name: str, **params: Any) -> Any:
    return get_model_class(name)(**params)


def load_model(path: Path | str) -> Any:
    """Load any saved model from its artifact folder (``config.json`` names the family)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.exists():
        raise RegistryError(f"{path} is not a model artifact folder: it has no config.json.")
    model_type = json.loads(cfg.read_text())["model_type"]
    return get_model_class(model_type).load(path)


#: The built-in families (packages under ``liveshelf.models``), cheapest import first: each registers its
#: models when imported, and one is imported only when a name is asked for that an earlier one lacks -
#: serving an ``itemknn`` never imports torch.
FAMILIES: tuple[str, ...] = ("classic", "ranker", "sasrec", "textseq", "llmrank", "oracle")
_imported: set[str] = set()
_import_lock = threading.Lock()


def _load_builtins(name: str | None = None) -> None:
    """Import built-in families until ``name`` is registered (None: all of them)."""
    for family in FAMILIES:
        if name is not None and name in _MODELS:
            return
        if family in _imported:
            continue
        with _import_lock:
            if family in _imported:
                continue
            try:
                importlib.import_module(f"liveshelf.models.{family}")
            except ModuleNotFoundError as exc:  # an optional family whose own package is absent
                if exc.name != f"liveshelf.models.{family}":
                    raise
            _imported.add(family)
