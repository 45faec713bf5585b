"""What one continuous loop trains and when (:class:`LoopConfig`), validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liveshelf.errors import check_param
from liveshelf.experiment.gate import GateConfig

MODES = ("auto", "update", "finetune", "refit")


@dataclass(frozen=True)
class LoopConfig:
    """What one loop trains and when.

    ``every_events``: a cycle runs once this many new events arrived (``run``), or every
    ``interval_s`` seconds when set. ``eval_fraction``: share of event time held out by the
    first cycle. ``max_cases``: evaluation cases (a seeded sample of the window).
    """

    name: str = "default"
    model: str = "itemknn"
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "auto"
    target: str = "item"
    every_events: int = 1000
    interval_s: float | None = None
    refit_every: int = 0
    eval_fraction: float = 0.2
    max_cases: int = 2000
    latency_contexts: int = 50
    finetune_epochs: int = 3
    seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)
    #: also retrain the serving ranker every cycle (``liveshelf.experiment.ranker_train``): from the exposure
    #: log when it holds enough labelled requests, else from replayed events; promoted per surface only when
    #: its held-out NDCG@5 is not below the hand blend's + ``ranker_margin``. Its decision joins the log.
    ranker: bool = False
    ranker_name: str = "ranker"
    ranker_margin: float = 0.0

    def validate(self) -> LoopConfig:
        w = "LoopConfig"
        check_param("mode", self.mode, self.mode in MODES, f"one of {MODES}", w)
        check_param("target", self.target, self.target in ("item", "host"), "'item' or 'host'", w)
        check_param(
            "every_events",
            self.every_events,
            _int(self.every_events) and self.every_events >= 1,
            "an int >= 1",
            w,
        )
        check_param(
            "interval_s",
            self.interval_s,
            self.interval_s is None or (isinstance(self.interval_s, (int, float)) and self.interval_s > 0),
            "None or seconds > 0",
            w,
        )
        check_param(
            "refit_every",
            self.refit_every,
            _int(self.refit_every) and self.refit_every >= 0,
            "an int >= 0 (0 = only when needed)",
            w,
        )
        check_param("eval_fraction", self.eval_fraction, 0 < self.eval_fraction < 1, "a float in (0, 1)", w)
        check_param(
            "max_cases", self.max_cases, _int(self.max_cases) and self.max_cases >= 1, "an int >= 1", w
        )
        check_param(
            "latency_contexts",
            self.latency_contexts,
            _int(self.latency_contexts) and self.latency_contexts >= 1,
            "an int >= 1",
            w,
        )
        check_param(
            "finetune_epochs",
            self.finetune_epochs,
            _int(self.finetune_epochs) and self.finetune_epochs >= 1,
            "an int >= 1",
            w,
        )
        from liveshelf.models.registry import get_model_class

        get_model_class(self.model)
        self.gate.validate()
        return self


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


__all__ = ["MODES", "LoopConfig"]
