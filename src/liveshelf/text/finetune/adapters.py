"""Parameter-efficient methods: peft configs (LoRA, AdaLoRA, IA3) and a bottleneck adapter.

Target modules
--------------
``detect_target_modules`` picks the attention projections LoRA / AdaLoRA adapt, by the leaf
names the architecture uses: BERT / RoBERTa / XLM-R ``query``, ``value``; LLaMA / Qwen / Mistral
``q_proj``, ``v_proj``; DistilBERT ``q_lin``, ``v_lin``; GPT-2 ``c_attn``. Any other model falls
back to every ``Linear`` inside a module whose path contains ``attn`` / ``attention``.
IA3 uses peft's own per-architecture table (keys, values and the FFN output), else the LoRA
targets plus the FFN output projections found by ``ffn_output_modules``.

Bottleneck adapter
------------------
peft (0.21) has no classic Houlsby / Pfeiffer bottleneck adapter, so :class:`BottleneckAdapter`
implements one: ``h + up(gelu(down(h)))`` with ``down`` (D -> m) and ``up`` (m -> D, zero
initialised, so the model is unchanged before training). :func:`add_bottleneck_adapters` wraps
the FFN output projection of every layer (Pfeiffer placement: after each layer's feed-forward
block, before its residual LayerNorm) -- found generically as the ``Linear`` (or GPT-2
``Conv1D``) modules mapping a wider input to ``hidden_size`` outside attention, e.g. BERT
``layer.N.output.dense``, DistilBERT ``ffn.lin2``, LLaMA/Qwen ``mlp.down_proj``, GPT-2
``mlp.c_proj``. Only adapters and the task head train. The adapter has a nonlinearity, so it
cannot be merged into the base weights; serve it with the base model plus the adapter file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from liveshelf.errors import ConfigError

_TARGET_PAIRS = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("c_attn",))
#: Names of classification heads that train (and are saved) with every PEFT method.
HEAD_NAMES = ("classifier", "score", "pre_classifier")


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"


def _features(m: nn.Module) -> tuple[int, int]:
    """(in, out) features of a Linear or a GPT-2 Conv1D (weight (in, out))."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    w = m.weight
    return int(w.shape[0]), int(w.shape[1])


def detect_target_modules(model: nn.Module) -> list[str]:
    """Leaf names of the attention projections LoRA should adapt (see module docstring)."""
    leaves = {_leaf(n) for n, m in model.named_modules() if _is_linear(m)}
    for pair in _TARGET_PAIRS:
        if set(pair) <= leaves:
            return list(pair)
    attn = sorted(
        {
            _leaf(n)
            for n, m in model.named_modules()
            if _is_linear(m) and ("attn" in n.lower() or "attention" in n.lower())
        }
    )
    if not attn:
        raise ConfigError(
            "The 'target_modules' parameter of FinetuneConfig is None, and no attention projection was found "
            f"in {type(model).__name__} to adapt. Pass target_modules=[...] with the leaf names of its Linear layers."
        )
    return attn


def ffn_output_modules(model: nn.Module, hidden_size: int) -> list[str]:
    """Full names of the per-layer FFN output projections (wider input -> ``hidden_size``, outside attention)."""
    out = []
    for name, m in model.named_modules():
        if not _is_linear(m) or "attn" in name.lower() or "attention" in name.lower():
            continue
        fin, fout = _features(m)
        if fout == hidden_size and fin > hidden_size and any(part.isdigit() for part in name.split(".")):
            out.append(name)
    return out


def hidden_size_of(model: nn.Module) -> int:
    cfg = model.config
    for key in ("hidden_size", "n_embd", "d_model", "dim"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ConfigError(
        f"Cannot find the hidden size of {type(model).__name__}: its config has none of "
        "hidden_size / n_embd / d_model / dim."
    )


def peft_config(
    method: str,
    task: str,
    model: nn.Module,
    *,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | str | None,
    total_step: int,
) -> Any:
    """The peft config of ``method`` ('lora' | 'adalora' | 'ia3') for ``model``."""
    from peft import AdaLoraConfig, IA3Config, LoraConfig, TaskType
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    )

    task_type = TaskType.CAUSAL_LM if task == "generation" else TaskType.SEQ_CLS
    targets: list[str] | str = (
        (target_modules if isinstance(target_modules, str) else list(target_modules))
        if target_modules
        else detect_target_modules(model)
    )
    fan_in_fan_out = "c_attn" in targets or "c_proj" in targets  # GPT-2 Conv1D stores (in, out)
    if method == "lora":
        return LoraConfig(
            task_type=task_type,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            fan_in_fan_out=fan_in_fan_out,
        )
    if method == "adalora":
        tinit = max(1, total_step // 10)
        tfinal = max(1, total_step // 5)
        if tinit >= total_step - tfinal:
            raise ConfigError(
                f"AdaLoRA needs a rank-budgeting phase: with {total_step} optimiser steps there is none. "
                "Raise 'epochs' or lower 'batch_size' / 'grad_accum' so that there are at least 4 steps."
            )
        return AdaLoraConfig(
            task_type=task_type,
            init_r=math.ceil(1.5 * r),
            target_r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            total_step=total_step,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=max(1, total_step // 20),
            fan_in_fan_out=fan_in_fan_out,
        )
    if method == "ia3":
        model_type = getattr(model.config, "model_type", "")
        if isinstance(targets, str):
            raise ConfigError(
                "The 'target_modules' parameter must be a list of leaf names for method 'ia3' (its "
                f"feed-forward modules must be a subset of the targets). Got the pattern {targets!r}."
            )
        if target_modules is None and model_type in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
            ia3_targets = TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[model_type]
            feedforward = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[model_type]
        else:
            feedforward = sorted({_leaf(n) for n in ffn_output_modules(model, hidden_size_of(model))})
            ia3_targets = targets + [f for f in feedforward if f not in targets]
        return IA3Config(
            task_type=task_type,
            target_modules=ia3_targets,
            feedforward_modules=feedforward,
            fan_in_fan_out=fan_in_fan_out,
        )
    raise ConfigError(
        f"The 'method' parameter of peft_config must be 'lora', 'adalora' or 'ia3'. Got {method!r}."
    )


class BottleneckAdapter(nn.Module):
    """``base(x)`` followed by ``h + up(gelu(down(h)))``; ``up`` starts at zero (identity at init)."""

    def __init__(self, base: nn.Module, hidden: int, size: int) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)  # (B, T, D)
        return h + self.up(nn.functional.gelu(self.down(h)))


def add_bottleneck_adapters(model: nn.Module, size: int) -> list[str]:
    """Wrap every FFN output projection of ``model`` in a :class:`BottleneckAdapter`; freeze the rest.

    Returns the wrapped module names. Trainable afterwards: the adapters and the task head
    (:data:`HEAD_NAMES`).
    """
    hidden = hidden_size_of(model)
    names = ffn_output_modules(model, hidden)
    if not names:
        raise ConfigError(
            f"The 'adapter' method found no feed-forward output projection (a Linear from a wider input to "
            f"hidden_size={hidden}) in {type(model).__name__}. Use method='lora' for this architecture."
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, BottleneckAdapter(getattr(parent, leaf), hidden, size))
    for name, p in model.named_parameters():
        if ".down." in name or ".up." in name or _in_head(name):
            p.requires_grad_(True)
    return names


def _in_head(name: str) -> bool:
    return any(part in HEAD_NAMES for part in name.split("."))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters that require grad (what the adapter method saves)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def count_parameters(params: Iterable[tuple[str, nn.Parameter]]) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for _, p in params:
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
