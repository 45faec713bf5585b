"""Differentially private fine-tuning: DP-SGD (opacus) inside the fine-tuning :class:`~liveshelf.core.trainer.Trainer`.

``FinetuneConfig(dp_epsilon=8)`` (``liveshelf finetune --dp-epsilon 8``) hands the model, the
optimiser and the batches to :class:`liveshelf.privacy.dp.DPStrategy` in opacus' ``hooks`` mode:

* batches become Poisson samples of the training examples (expected size ``batch_size``);
* per-example gradients of the *trainable* layers come from opacus' layer hooks. With LoRA only the
  adapters' and the head's ``nn.Linear`` layers train, so per-example gradients stay small — the
  usual LoRA + DP-SGD recipe (Yu et al., ICLR'22). The base model is frozen and never clipped;
* the optimiser clips each example's gradient to ``dp_max_grad_norm`` and adds Gaussian noise
  calibrated so the planned ``epochs`` spend exactly ``dp_epsilon`` at ``dp_delta``.

The loss of one batch must be the mean of per-example losses (no class weights, no pairwise
losses that put one example in two rows, and for generation the per-example mean of token losses
rather than HF's batch-wide token mean), and one batch is one step (``grad_accum=1``).
Validation data (early stopping) are not protected: only the training examples are.

Measured limit: on a few hundred examples DP-LoRA does not learn (tiny BERT, 400 sentiment
texts, ε = 8: held-out accuracy stays at chance while plain LoRA reaches 1.0). Each step adds
noise of the same size to every trainable coordinate, and Adam rescales each coordinate, so the
LoRA matrices — whose true gradients start near zero (``lora_B = 0``) — move by pure noise.
DP fine-tuning needs thousands of examples, large batches (the noise is divided by the batch
size) and small learning rates.

Example::

    cfg = FinetuneConfig(task="classification", method="lora", epochs=3, dp_epsilon=8.0)
    ft = Finetuner(cfg).fit(texts, labels)
    ft.fit_stats_["privacy"]["dp_epsilon"]  # about 8.0, at delta = 1 / len(texts)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from liveshelf.errors import check_param
from liveshelf.privacy.dp import DPStrategy, empty_step

#: Methods whose trainable layers opacus' hooks support (AdaLoRA / IA3 train raw parameter
#: dicts that no hook sees).
DP_METHODS = ("full", "lora", "adapter")

LossFn = Callable[[torch.nn.Module, np.ndarray], tuple[torch.Tensor, int]]


def validate_dp(cfg: Any, where: str = "FinetuneConfig") -> None:
    """Check the DP settings of a :class:`FinetuneConfig` and what they can be combined with."""
    eps, delta, clip = cfg.dp_epsilon, cfg.dp_delta, cfg.dp_max_grad_norm
    check_param(
        "dp_epsilon",
        eps,
        isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < math.inf,
        "a finite float > 0 (e.g. 8), or None for no differential privacy",
        where,
    )
    check_param(
        "dp_delta",
        delta,
        delta is None or (isinstance(delta, (int, float)) and 0 < delta < 1),
        "a float in (0, 1), or None for 1 / number of training examples",
        where,
    )
    check_param(
        "dp_max_grad_norm",
        clip,
        isinstance(clip, (int, float)) and 0 < clip < math.inf,
        "a finite float > 0 (the per-example gradient clipping bound)",
        where,
    )
    check_param(
        "method",
        cfg.method,
        cfg.method in DP_METHODS,
        f"one of {list(DP_METHODS)} with dp_epsilon (opacus has no per-example gradients for "
        f"{cfg.method!r}'s parameters)",
        where,
    )
    check_param(
        "grad_accum",
        cfg.grad_accum,
        cfg.grad_accum == 1,
        "1 with dp_epsilon (each Poisson batch is one DP step; raise batch_size instead)",
        where,
    )
    check_param(
        "class_weights",
        cfg.class_weights,
        cfg.class_weights is None,
        "None with dp_epsilon (a weighted mean ties each example's gradient to the rest of the batch)",
        where,
    )
    check_param(
        "ranking_loss",
        cfg.ranking_loss,
        cfg.task != "ranking" or cfg.ranking_loss == "pointwise",
        "'pointwise' with dp_epsilon (pairwise losses put one example in two rows)",
        where,
    )


def per_example_generation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore: int) -> torch.Tensor:
    """Mean over examples of each example's mean next-token loss (``logits (B, T, V)``, ``labels (B, T)``)."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    keep = labels != ignore  # (B, T-1)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    per_example = (nll * keep).sum(1) / keep.sum(1).clamp(min=1)
    return per_example.mean()


class PrivateRun:
    """The DP side of one fine-tuning run: the opacus strategy plus the position-id hook (see below)."""

    def __init__(self, strategy: DPStrategy, handle: Any) -> None:
        self.strategy = strategy
        self.handle = handle

    def finish(self, model: torch.nn.Module) -> None:
        """Remove opacus' hooks and ours; the model then trains and predicts as a plain model."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.strategy.finish(model)

    def report(self) -> dict[str, Any]:
        return self.strategy.report()


def _explicit_positions(model: torch.nn.Module) -> Any:
    """Pass ``position_ids`` of shape ``(B, T)`` while training, when the model takes them.

    Hugging Face models build default positions of shape ``(1, T)`` and broadcast them, so opacus'
    embedding hook would see one example instead of ``B`` (full fine-tuning trains the position
    embedding). The values are the defaults (``0..T-1``, right padding), so nothing else changes.
    """
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return None

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        ids = kwargs.get("input_ids")
        if module.training and ids is not None and kwargs.get("position_ids") is None:
            kwargs["position_ids"] = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        return args, kwargs

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def make_private(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, n_examples: int, cfg: Any
) -> tuple[PrivateRun, torch.optim.Optimizer, Callable[[int], Any], LossFn]:
    """``(run, DP optimiser, Poisson batches(epoch), loss)`` for the fine-tuning ``Trainer``.

    ``loss_fn(module, indices)`` is the per-batch mean loss; the returned loss also handles the
    empty batches Poisson sampling draws (a noise-only step). Call ``run.finish(model)`` after
    training and read ``run.report()``.
    """
    strategy = DPStrategy(
        cfg.dp_epsilon, delta=cfg.dp_delta, max_grad_norm=cfg.dp_max_grad_norm, mode="hooks", seed=cfg.seed
    )
    _, dp_optimizer, batches = strategy.setup(
        model,
        optimizer,
        lambda epoch: [],
        epochs=cfg.epochs,
        n_samples=n_examples,
        batch_size=cfg.batch_size,
        make_batch=lambda idx: idx,
    )
    run = PrivateRun(strategy, _explicit_positions(model))

    def dp_loss(module: torch.nn.Module, idx: np.ndarray) -> tuple[torch.Tensor, int]:
        if len(idx) == 0:
            empty_step(module)
            zero = sum((p.sum() * 0.0 for p in module.parameters() if p.requires_grad), torch.zeros(()))
            return zero, 0
        return loss_fn(module, idx)

    return run, dp_optimizer, batches, dp_loss
