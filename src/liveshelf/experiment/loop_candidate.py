"""The continuous loop's candidate: which way to build it this cycle (:func:`choose_mode`: ``update`` for
:class:`~liveshelf.models.capabilities.Incremental` models, ``finetune`` for
:class:`~liveshelf.models.capabilities.WarmStartable` ones, else ``refit``) and building it
(:func:`build_candidate`)."""

from __future__ import annotations

from typing import Any

from liveshelf.evaluation.protocols import ProtocolSplit
from liveshelf.experiment.loop_config import LoopConfig
from liveshelf.models.capabilities import Incremental, WarmStartable


def warm_start(model: Any, parent: Any) -> bool:
    """Make ``model``'s next ``fit`` start from ``parent``'s weights (:class:`WarmStartable` models, e.g. the
    SASRec family); False when the model cannot or there is nothing to copy."""
    return isinstance(model, WarmStartable) and model.warm_start_from(parent)


def choose_mode(
    cfg: LoopConfig, cycle: int, prod_info: Any, prod_model: Any, prod_stale: bool, t_cut: float
) -> tuple[str, str]:
    """(mode, why) for this cycle's candidate."""
    from liveshelf.models.registry import get_model_class

    cls = get_model_class(cfg.model)
    if prod_stale:
        return "refit", "production is stale after a user deletion: retrain from the store"
    if cfg.mode == "refit":
        return "refit", "mode refit"
    if prod_model is None or prod_info.model_type != cfg.model:
        return "refit", (
            "no production version"
            if prod_info is None
            else "production could not be loaded"
            if prod_model is None
            else f"production is a {prod_info.model_type!r}, not {cfg.model!r}"
        )
    if cfg.refit_every and cycle % cfg.refit_every == 0:
        return "refit", f"every {cfg.refit_every} cycles"
    if cfg.mode in ("auto", "update") and issubclass(cls, Incremental):
        end = prod_info.lineage.get("data_end_ts")
        if end is None or float(end) > t_cut:
            return "refit", "production's training window is unknown or ends after this cycle's cut"
        return "update", "incremental update of production"
    if cfg.mode in ("auto", "finetune") and issubclass(cls, WarmStartable):
        return "finetune", "warm start from production's weights"
    return "refit", f"{cfg.model!r} has no {cfg.mode if cfg.mode != 'auto' else 'incremental'} path"


def build_candidate(
    cfg: LoopConfig,
    registry: Any,
    mode: str,
    why: str,
    split: ProtocolSplit,
    index: Any,
    prod_info: Any,
    t_cut: float,
) -> tuple[Any, str, str]:
    """(fitted candidate, mode, why); an update that cannot run falls back to a refit."""
    from liveshelf.data.split import to_train_data
    from liveshelf.errors import NotFittedError
    from liveshelf.evaluation.runner import build_model

    if mode == "update":
        base = registry.load(cfg.name, prod_info.version)  # a fresh copy: production is evaluated too
        mask = (index.ts >= float(prod_info.lineage["data_end_ts"])) & (index.ts < t_cut)
        try:
            if mask.any():
                base.update(to_train_data(index, mask)[0])
            return base, mode, f"{why} with {int(mask.sum())} events"
        except NotFittedError as exc:
            mode, why = "refit", f"update impossible ({exc})"
    parent = None
    if mode == "finetune":
        parent = registry.load(cfg.name, prod_info.version)
        model = build_model(cfg.model, {**cfg.params, "epochs": cfg.finetune_epochs}, seed=cfg.seed)
        if not warm_start(model, parent):
            mode, why = "refit", "production has no network weights to start from"
            model = build_model(cfg.model, dict(cfg.params), seed=cfg.seed)
    else:
        model = build_model(cfg.model, dict(cfg.params), seed=cfg.seed)
    model.fit(split.train)
    return model, mode, why


__all__ = ["build_candidate", "choose_mode", "warm_start"]
