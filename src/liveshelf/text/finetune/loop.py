"""The fine-tuning loop: gradient accumulation, autocast, warmup schedule, callbacks.

It follows ``liveshelf.models.trainer.Trainer`` (same callback hooks, so its ``ProgressBar``
works here too) and adds what fine-tuning needs: ``grad_accum`` micro-batches per optimiser
step, bf16 autocast, a linear warmup/decay schedule, an ``after_step(step)`` hook (AdaLoRA's
rank allocation runs there, after ``optimizer.step()`` and before the gradients are cleared),
and throughput counting (``examples`` / ``train_seconds``, evaluation excluded).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from liveshelf.errors import ConfigError
from liveshelf.models.trainer import Callback


class FinetuneLoop:
    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, int]],
        batches: Callable[[int], Iterable[Any]],
        *,
        epochs: int,
        grad_accum: int = 1,
        scheduler: Any = None,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        grad_clip: float | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
        after_step: Callable[[int], None] | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.module = module
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.batches = batches
        self.epochs = epochs
        self.grad_accum = grad_accum
        self.scheduler = scheduler
        self.evaluate = evaluate
        self.grad_clip = grad_clip
        self.autocast = autocast or contextlib.nullcontext
        self.after_step = after_step
        self.callbacks = list(callbacks or [])
        self.epoch = 0
        self.step = 0
        self.examples = 0
        self.train_seconds = 0.0
        self.should_stop = False
        self.history: list[dict[str, Any]] = []

    def _fire(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _optimizer_step(self, params: list[torch.nn.Parameter]) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        if self.after_step is not None:
            self.after_step(self.step)
        self.optimizer.zero_grad(set_to_none=True)

    def fit(self) -> FinetuneLoop:
        params = [p for p in self.module.parameters() if p.requires_grad]
        self._fire("on_train_begin")
        for epoch in range(1, self.epochs + 1):
            self.epoch = epoch
            t0 = time.perf_counter()
            self.module.train()
            self.optimizer.zero_grad(set_to_none=True)
            total, n, pending = 0.0, 0, 0
            for batch in self.batches(epoch):
                with self.autocast():
                    loss, size = self.loss_fn(self.module, batch)
                (loss / self.grad_accum).backward()
                pending += 1
                self.examples += size
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"The training loss became {value} at epoch {epoch}, step {self.step}; "
                        "lower the learning rate ('lr') or turn bf16 off."
                    )
                total, n = total + value, n + 1
                if pending == self.grad_accum:
                    self._optimizer_step(params)
                    pending = 0
                    self._fire("on_batch_end", value)
            if pending:
                self._optimizer_step(params)
                self._fire("on_batch_end", total / max(n, 1))
            train_seconds = time.perf_counter() - t0
            self.train_seconds += train_seconds
            logs: dict[str, Any] = {"epoch": epoch, "loss": total / max(n, 1), "train_seconds": train_seconds}
            if self.evaluate is not None:
                self.module.eval()
                with torch.no_grad(), self.autocast():
                    metrics = self.evaluate(self.module)
                logs.update({f"valid_{k}": v for k, v in metrics.items()})
                self._fire("on_eval", metrics)
            logs["seconds"] = time.perf_counter() - t0
            self.history.append(logs)
            self._fire("on_epoch_end", logs)
            if self.should_stop:
                break
        self._fire("on_train_end")
        return self


class KeepBest(Callback):
    """Early stopping on ``monitor``: keeps a copy of the best epoch's *trainable* weights and restores it.

    Only parameters that require grad are copied, so PEFT runs copy megabytes, not the base model.
    """

    def __init__(self, monitor: str, mode: str = "max", patience: int | None = 2) -> None:
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def on_eval(self, trainer: Any, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            raise ConfigError(
                f"The early-stopping metric {self.monitor!r} is not among the validation metrics "
                f"{sorted(metrics)}; set FinetuneConfig.monitor to one of them."
            )
        score = self.sign * float(value)
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, trainer.epoch, 0
            self.best_state = {
                n: p.detach().clone() for n, p in trainer.module.named_parameters() if p.requires_grad
            }
        else:
            self.bad += 1
            if self.patience is not None and self.bad >= self.patience:
                trainer.should_stop = True

    def on_train_end(self, trainer: Any) -> None:
        if self.best_state is not None and self.best_epoch != trainer.epoch:
            params = dict(trainer.module.named_parameters())
            with torch.no_grad():
                for name, value in self.best_state.items():
                    params[name].copy_(value)
