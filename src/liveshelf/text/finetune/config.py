"""``FinetuneConfig``: every setting of one fine-tuning run, validated, saved as JSON beside the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from liveshelf.errors import check_param

Task = Literal["classification", "ranking", "generation"]
Method = Literal["full", "lora", "adalora", "ia3", "adapter"]

TASKS = ("classification", "ranking", "generation")
METHODS = ("full", "lora", "adalora", "ia3", "adapter")
RANKING_LOSSES = ("pointwise", "bpr", "margin")
#: Learning rates that work for each method on small encoders (full FT needs a far smaller step).
DEFAULT_LR = {"full": 5e-5, "lora": 1e-3, "adalora": 1e-3, "ia3": 5e-3, "adapter": 1e-3}
#: Validation metric watched by early stopping, and whether larger is better.
DEFAULT_MONITOR = {
    "classification": ("macro_f1", "max"),
    "ranking": ("auc", "max"),
    "generation": ("loss", "min"),
}
CONFIG_FILE = "finetune_config.json"


@dataclass
class FinetuneConfig:
    """Settings of one run. ``model=None`` is the bundled all-MiniLM-L6-v2 (classification/ranking only).

    ``lr=None`` takes :data:`DEFAULT_LR` for the method. ``warmup`` is the share of optimiser steps
    with a linearly rising learning rate (then linear decay to 0). With validation data, training stops after
    ``patience`` epochs without a better ``monitor`` value (``patience=None``: never stops early)
    and the best epoch's trainable weights are restored.
    ``bf16`` enables bf16 autocast when the device supports it (off by default: on most CPUs
    without AMX it is slower than fp32). ``r`` / ``alpha`` / ``dropout`` configure LoRA and AdaLoRA
    (AdaLoRA starts at ``init_r = ceil(1.5 r)`` and prunes to an average of ``r``);
    ``adapter_size`` is the bottleneck width of the ``adapter`` method. ``target_modules=None``
    picks them per architecture (see ``adapters.detect_target_modules``); a list names leaf modules,
    a string is a regular expression over full module names (peft semantics).

    ``dp_epsilon`` (``None`` = off) trains with DP-SGD (opacus; Poisson batches of expected size
    ``batch_size``, each example's gradient clipped to ``dp_max_grad_norm``, Gaussian noise) so the
    trained weights are (``dp_epsilon``, ``dp_delta``)-differentially private with respect to the
    training examples; ``dp_delta=None`` is 1 / (number of training examples). Supported with
    ``full``, ``lora`` and ``adapter`` (layers opacus computes per-example gradients for), one
    example per optimiser step group (``grad_accum=1``), no class weights and pointwise losses
    (see :mod:`liveshelf.text.finetune.private`).
    """

    task: Task = "classification"
    method: Method = "lora"
    model: str | None = None
    lr: float | None = None
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    max_length: int = 128
    weight_decay: float = 0.01
    warmup: float = 0.06
    grad_clip: float | None = 1.0
    patience: int | None = 2
    monitor: str | None = None
    class_weights: Literal["balanced"] | None = None
    ranking_loss: Literal["pointwise", "bpr", "margin"] = "pointwise"
    margin: float = 1.0
    bf16: bool = False
    seed: int = 0
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | str | None = None
    adapter_size: int = 32
    device: str = "auto"
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_max_grad_norm: float = 1.0

    def validate(self) -> FinetuneConfig:
        where = "FinetuneConfig"
        check_param("task", self.task, self.task in TASKS, f"one of {list(TASKS)}", where)
        check_param("method", self.method, self.method in METHODS, f"one of {list(METHODS)}", where)
        check_param(
            "model",
            self.model,
            self.model is not None or self.task != "generation",
            "a local causal-LM directory for task 'generation' (there is no bundled one)",
            where,
        )
        for name in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "grad_accum",
            "max_length",
            "r",
            "alpha",
            "adapter_size",
        ):
            value = getattr(self, name)
            check_param(name, value, isinstance(value, int) and value >= 1, "an int >= 1", where)
        check_param(
            "lr", self.lr, self.lr is None or self.lr > 0, "a float > 0 or None (method default)", where
        )
        check_param("warmup", self.warmup, 0 <= self.warmup < 1, "a share in [0, 1)", where)
        check_param("weight_decay", self.weight_decay, self.weight_decay >= 0, "a float >= 0", where)
        check_param("dropout", self.dropout, 0 <= self.dropout < 1, "a float in [0, 1)", where)
        check_param(
            "patience",
            self.patience,
            self.patience is None or self.patience >= 1,
            "an int >= 1 or None (no early stopping)",
            where,
        )
        check_param(
            "class_weights",
            self.class_weights,
            self.class_weights in (None, "balanced"),
            "None or 'balanced'",
            where,
        )
        check_param(
            "ranking_loss",
            self.ranking_loss,
            self.ranking_loss in RANKING_LOSSES,
            f"one of {list(RANKING_LOSSES)}",
            where,
        )
        check_param(
            "device",
            self.device,
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"),
            "'auto', 'cpu' or 'cuda[:N]'",
            where,
        )
        if self.dp_epsilon is not None or self.dp_delta is not None:
            from liveshelf.text.finetune.private import validate_dp

            validate_dp(self, where)
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def monitor_metric(self) -> tuple[str, str]:
        """(metric name, 'max' | 'min') watched by early stopping."""
        name, mode = DEFAULT_MONITOR[self.task]
        if self.monitor is None:
            return name, mode
        return self.monitor, ("min" if self.monitor in ("loss", "perplexity") else "max")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names}).validate()

    def save(self, folder: Path, **extra: Any) -> None:
        payload = {"model_type": "liveshelf-finetune", "config": self.to_dict(), **extra}
        (folder / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
