"""The candidate sources of the two-stage models (``ranker``, ``blend``): parse, fit, save, load.

A source is any registered recommender. Sources that cannot run on a data set (a text model
without ``TrainData.item_text``) are skipped, with the reason recorded, not failed.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError
from liveshelf.models.base import TrainData

#: Sources that read ``TrainData.item_text``.
TEXT_SOURCES = frozenset({"textseq", "llmrank"})
#: Two-stage families that must not be their own sources.
NOT_SOURCES = frozenset({"ranker", "blend"})
#: Defaults per source, below the user's ``source_params``: on a shared 2-core machine one torch
#: thread is faster than two, and the sequential models stop after 5 epochs without progress.
DEFAULT_SOURCE_PARAMS: dict[str, dict[str, Any]] = {
    "sasrec": {"n_threads": 1, "patience": 5},
    "textseq": {"n_threads": 1, "patience": 5},
}


def parse_sources(sources: str | list[str] | tuple[str, ...], where: str) -> list[str]:
    """``"pop,itemknn"`` or ``["pop", "itemknn"]`` -> a list of registered, distinct family names."""
    from liveshelf.models.registry import available_models

    if isinstance(sources, str):
        names = [s.strip() for s in sources.split(",") if s.strip()]
    elif isinstance(sources, (list, tuple)) and all(isinstance(s, str) for s in sources):
        names = [s.strip() for s in sources if s.strip()]
    else:
        raise ConfigError(
            f"The 'sources' parameter of {where} must be a comma string or a list of model "
            f"names (e.g. 'pop,itemknn'). Got {sources!r} instead."
        )
    known = set(available_models()) - NOT_SOURCES
    bad = [s for s in names if s not in known]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(
            f"The 'sources' parameter of {where} must name distinct registered models from "
            f"{sorted(known)}. Got {sources!r} instead"
            f"{f' ({bad[0]!r} is not one)' if bad else ''}."
        )
    return names


def check_source_params(source_params: Any, names: list[str], where: str) -> dict[str, dict[str, Any]]:
    if source_params is None:
        return {}
    if not isinstance(source_params, dict) or not all(isinstance(v, dict) for v in source_params.values()):
        raise ConfigError(
            f"The 'source_params' parameter of {where} must be a dict of dicts, one per source "
            f"(e.g. {{'sasrec': {{'epochs': 50}}}}). Got {source_params!r} instead."
        )
    unknown = [k for k in source_params if k not in names]
    if unknown:
        raise ConfigError(
            f"The 'source_params' parameter of {where} names {unknown[0]!r}, which is not a "
            f"source ({', '.join(names)}). Add it to 'sources' or drop its parameters."
        )
    return dict(source_params)


def skip_reason(name: str, data: TrainData) -> str | None:
    """Why the source ``name`` cannot run on ``data`` (None: it can)."""
    if name in TEXT_SOURCES and (data.item_text is None or len(data.item_text) != data.n_items):
        return "no item text (TrainData.item_text is None)"
    return None


def build_source(name: str, params: dict[str, Any] | None, seed: int):
    from liveshelf.models.registry import create_model, get_model_class

    accepted = set(inspect.signature(get_model_class(name).__init__).parameters)
    kw = {k: v for k, v in DEFAULT_SOURCE_PARAMS.get(name, {}).items() if k in accepted}
    kw.update(params or {})
    if "seed" in accepted:
        kw.setdefault("seed", seed)
    elif "random_state" in accepted:
        kw.setdefault("random_state", seed)
    return create_model(name, **kw)


def fit_sources(
    names: list[str],
    params: dict[str, dict[str, Any]],
    data: TrainData,
    seed: int,
    given: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, float]]:
    """Fit (or take from ``given``, already fitted on ``data``) each source.

    Returns the fitted sources by name (in ``names`` order), the skipped ones with their reason,
    and the fit seconds per source.
    """
    fitted: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    seconds: dict[str, float] = {}
    for name in names:
        reason = skip_reason(name, data)
        if reason is not None:
            skipped.append({"source": name, "reason": reason})
            continue
        if given and name in given:
            model = given[name]
            if len(getattr(model, "item_ids_", ())) != data.n_items:
                raise ConfigError(
                    f"The fitted source {name!r} passed to fit() knows {len(model.item_ids_)} items, "
                    f"the data {data.n_items}. Pass sources fitted on the same TrainData."
                )
            fitted[name] = model
            continue
        t0 = time.perf_counter()
        fitted[name] = build_source(name, params.get(name), seed).fit(data)
        seconds[name] = round(time.perf_counter() - t0, 2)
    if not fitted:
        raise ConfigError(
            f"None of the sources {names} can run on this data: "
            f"{'; '.join(s['source'] + ': ' + s['reason'] for s in skipped)}. Add a source such as pop."
        )
    return fitted, skipped, seconds


def save_sources(fitted: dict[str, Any], path: Path) -> None:
    for name, model in fitted.items():
        model.save(path / "sources" / name)


def load_sources(names: list[str], path: Path) -> dict[str, Any]:
    from liveshelf.models.registry import load_model

    return {name: load_model(path / "sources" / name) for name in names}
