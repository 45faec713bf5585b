"""The one training loop of the package: a model-agnostic :class:`Trainer` with callbacks and strategies.

The trainer knows no specific model. It is given

- ``module``: any ``torch.nn.Module``;
- ``batches(epoch)``: an iterable of batches for one epoch (any objects);
- ``loss_fn(module, batch)``: the scalar loss of one batch;
- ``evaluate(module)``: a dict of validation metrics (optional);

and fires callbacks at fixed points so early stopping, schedules, guards, progress bars and
logging hook in without touching the loop::

    on_train_begin(trainer)
    on_eval(trainer, metrics)                # epoch 0, before training, when eval_first
    on_loss(trainer, loss)                   # after each backward pass (each micro-batch)
    on_step_end(trainer, step)               # after each optimiser step, gradients still there
    on_batch_end(trainer, loss)              # after each optimiser step (and its on_step_end)
    on_eval(trainer, metrics)                # after each evaluation
    on_epoch_end(trainer, logs)              # logs: epoch, loss, train_seconds, seconds,
                                             #       cpu_seconds (+ metrics)
    on_train_end(trainer)

A callback stops training by setting ``trainer.should_stop = True``.

*How* a batch becomes a gradient is a :class:`TrainStrategy` (default: plain
``loss.backward()`` in one process, one batch per optimiser step). Gradient accumulation and
autocast (:class:`AccumulateStrategy`, fine-tuning), differential privacy
(:class:`liveshelf.privacy.dp.DPStrategy`) and data-parallel scale-out plug in there. The
fine-tuning pieces that are not about gradients are callbacks: :class:`LRSchedule` (a scheduler
stepped per optimiser step), :class:`OnStep` (e.g. AdaLoRA's rank allocation), :class:`NaNGuard`
and :class:`EarlyStopping` (``trainable_only=True`` copies only the trained weights).

After ``fit``: ``history`` (one ``logs`` dict per epoch), ``epoch``, ``step`` (optimiser steps),
``train_seconds`` (evaluation excluded) and ``strategy_report`` (``strategy.report()``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from liveshelf.errors import ConfigError, check_param


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_loss(self, trainer: Trainer, loss: float) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int) -> None: ...

    def on_batch_end(self, trainer: Trainer, loss: float) -> None: ...

    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class TrainStrategy:
    """How the :class:`Trainer` turns batches into optimiser steps; this base class is plain training.

    Four hooks, all no-ops here (so ``Trainer(..., strategy=TrainStrategy())`` trains bit-for-bit
    like ``strategy=None``):

    - ``setup(module, optimizer, batches, *, epochs, n_samples, batch_size, make_batch)`` runs once before
      the first epoch and returns the ``(module, optimizer, batches)`` the loop uses: a strategy may
      wrap the module (DDP), the optimiser (per-sample clipping and noise) or replace the batches
      (Poisson sampling, sharding). ``epochs`` is the planned number of epochs, ``n_samples`` the
      number of training examples, ``batch_size`` the nominal batch size and ``make_batch(indices)``
      builds the batch of those examples (an int array), so a strategy can draw its own batches;
      the last three may be ``None`` when the caller cannot say.
    - ``backward(module, loss_fn, batch)`` computes the batch loss and leaves gradients where the
      optimiser reads them; returns the loss (a tensor).
    - ``finish(module)`` runs once after the last epoch (remove hooks, release workers).
    - ``report()`` returns facts worth recording with the model (e.g. the achieved ε).

    Two settings the loop reads: ``grad_accum`` (batches per optimiser step, 1 here) and
    ``context()`` (the context manager around forward passes, training and evaluation alike:
    none here, autocast in :class:`AccumulateStrategy`).

    ``private = True`` marks a strategy with a formal privacy guarantee. A model that sees it must
    then give a per-sample loss (computable on one example inside ``torch.func.vmap``: no shapes
    that depend on the data), one sample per person, and make no choice from the data outside the
    strategy (no early stopping on validation, no data-derived initialisation).

    Example::

        class Logged(TrainStrategy):
            def backward(self, module, loss_fn, batch):
                loss = super().backward(module, loss_fn, batch)
                print(float(loss))
                return loss

        Trainer(net, opt, loss_fn, batches, epochs=2, strategy=Logged()).fit()
    """

    private: bool = False
    #: Batches whose gradients add up before one optimiser step.
    grad_accum: int = 1

    def setup(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Callable[[int], Iterable[Any]],
        *,
        epochs: int,
        n_samples: int | None = None,
        batch_size: int | None = None,
        make_batch: Callable[[np.ndarray], Any] | None = None,
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[int], Iterable[Any]]]:
        return module, optimizer, batches

    def context(self) -> contextlib.AbstractContextManager:
        """The context of every forward pass (training loss and evaluation)."""
        return contextlib.nullcontext()

    def backward(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any
    ) -> torch.Tensor:
        loss = loss_fn(module, batch)
        loss.backward()
        return loss

    def finish(self, module: torch.nn.Module) -> None:
        return None

    def report(self) -> dict[str, Any]:
        return {}


class AccumulateStrategy(TrainStrategy):
    """Plain back-propagation with ``grad_accum`` batches per optimiser step and optional autocast.

    ``loss_fn`` may return ``(loss, n_examples)``; the examples are counted (``report()["examples"]``)
    for throughput. Each batch's loss is divided by ``grad_accum`` before ``backward``, so an
    accumulated step sees the mean gradient. ``autocast()`` (e.g. ``torch.autocast("cpu",
    dtype=torch.bfloat16)``) wraps the loss and every evaluation; ``backward`` runs outside it.
    """

    def __init__(
        self, grad_accum: int = 1, autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    ) -> None:
        self.grad_accum = int(grad_accum)
        self.autocast = autocast or contextlib.nullcontext
        self.examples = 0

    def context(self) -> contextlib.AbstractContextManager:
        return self.autocast()

    def backward(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], Any], batch: Any
    ) -> torch.Tensor:
        with self.autocast():
            out = loss_fn(module, batch)
        loss, size = out if isinstance(out, tuple) else (out, 0)
        (loss / self.grad_accum).backward()
        self.examples += int(size)
        return loss

    def report(self) -> dict[str, Any]:
        return {"examples": self.examples}


class Trainer:
    """Run ``epochs`` passes of ``batches`` through ``loss_fn`` with ``optimizer``.

    ``strategy`` (default :class:`TrainStrategy`) decides how a batch becomes a gradient and how
    many batches make one optimiser step; ``n_samples``, ``batch_size`` and ``make_batch`` are
    passed to its ``setup``. ``grad_clip`` clips the gradient norm before each step.
    ``metrics_prefix`` is put before the validation metric names in the epoch logs (callbacks'
    ``on_eval`` always get the bare names). After ``fit``, ``strategy_report`` holds
    ``strategy.report()``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any, Any], Any],
        batches: Callable[[int], Iterable[Any]],
        evaluate: Callable[[Any], dict[str, float]] | None = None,
        epochs: int = 10,
        eval_every: int = 1,
        grad_clip: float | None = None,
        callbacks: list[Callback] | None = None,
        eval_first: bool = False,
        strategy: TrainStrategy | None = None,
        n_samples: int | None = None,
        batch_size: int | None = None,
        make_batch: Callable[[np.ndarray], Any] | None = None,
        metrics_prefix: str = "",
    ) -> None:
        self.module = module
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.batches = batches
        self.evaluate = evaluate
        self.epochs = epochs
        self.eval_every = eval_every
        self.grad_clip = grad_clip
        self.callbacks = list(callbacks or [])
        self.eval_first = eval_first
        self.epoch = 0
        self.step = 0
        self.train_seconds = 0.0
        self.should_stop = False
        self.history: list[dict[str, Any]] = []
        self.strategy = strategy if strategy is not None else TrainStrategy()
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.make_batch = make_batch
        self.metrics_prefix = metrics_prefix
        self.strategy_report: dict[str, Any] = {}

    def _fire(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _evaluate(self) -> dict[str, float]:
        assert self.evaluate is not None
        self.module.eval()
        with torch.no_grad(), self.strategy.context():
            metrics = self.evaluate(self.module)
        self._fire("on_eval", metrics)
        return metrics

    def _step(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
        optimizer.step()
        self.step += 1
        self._fire("on_step_end", self.step)

    def fit(self) -> Trainer:
        # the strategy's module/optimizer/batches train; ``self.module`` (evaluation, callbacks) stays
        module, optimizer, batches = self.strategy.setup(
            self.module,
            self.optimizer,
            self.batches,
            epochs=self.epochs,
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            make_batch=self.make_batch,
        )
        accum = max(1, int(self.strategy.grad_accum))
        self._fire("on_train_begin")
        if self.eval_first and self.evaluate is not None:  # epoch 0: the initial weights compete too
            t0, c0 = time.perf_counter(), time.process_time()
            metrics = self._evaluate()
            self.history.append(
                {
                    "epoch": 0,
                    "loss": math.nan,
                    "train_seconds": 0.0,
                    **{self.metrics_prefix + k: v for k, v in metrics.items()},
                    "seconds": time.perf_counter() - t0,
                    "cpu_seconds": time.process_time() - c0,
                }
            )
        for epoch in range(1, self.epochs + 1):
            self.epoch = epoch
            t0, c0 = time.perf_counter(), time.process_time()
            self.module.train()
            module.train()
            total, n, pending = 0.0, 0, 0
            for batch in batches(epoch):
                if pending == 0:  # a new optimiser step begins
                    optimizer.zero_grad(set_to_none=True)
                loss = self.strategy.backward(module, self.loss_fn, batch)
                pending += 1
                value = float(loss.detach())
                total, n = total + value, n + 1
                self._fire("on_loss", value)
                if pending == accum:
                    self._step(module, optimizer)
                    pending = 0
                    self._fire("on_batch_end", value)
            if pending:  # the epoch's last, partial accumulation
                self._step(module, optimizer)
                self._fire("on_batch_end", total / max(n, 1))
            train_seconds = time.perf_counter() - t0
            self.train_seconds += train_seconds
            logs: dict[str, Any] = {"epoch": epoch, "loss": total / max(n, 1), "train_seconds": train_seconds}
            if self.evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
                logs.update({self.metrics_prefix + k: v for k, v in self._evaluate().items()})
            logs["seconds"] = time.perf_counter() - t0
            logs["cpu_seconds"] = time.process_time() - c0  # all threads; wall time lies on a shared machine
            self.history.append(logs)
            self._fire("on_epoch_end", logs)
            if self.should_stop:
                break
        optimizer.zero_grad(set_to_none=True)  # no gradients held after training
        self.strategy.finish(module)
        self.strategy_report = self.strategy.report()
        self._fire("on_train_end")
        return self


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` evaluations; restore the best weights.

    ``mode``: ``"max"`` (higher is better) or ``"min"``. ``patience=None`` never stops early (the
    best weights are still restored). ``trainable_only=True`` copies only parameters that require
    grad (PEFT runs copy megabytes, not the base model); otherwise the whole ``state_dict``.
    ``hint`` ends the error raised when ``monitor`` is not among the validation metrics.
    """

    def __init__(
        self,
        monitor: str = "ndcg@10",
        patience: int | None = 10,
        min_delta: float = 0.0,
        *,
        mode: str = "max",
        trainable_only: bool = False,
        hint: str = "monitor one of them.",
    ) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.sign = 1.0 if mode == "max" else -1.0
        self.trainable_only = trainable_only
        self.hint = hint
        self.best = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            raise ConfigError(
                f"The early-stopping metric {self.monitor!r} is not among the validation metrics "
                f"{sorted(metrics)}; {self.hint}"
            )
        score = self.sign * float(value)
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad = score, trainer.epoch, 0
            module = trainer.module
            if self.trainable_only:
                self.best_state = {
                    n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad
                }
            else:
                self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad += 1
            if self.patience is not None and self.bad >= self.patience:
                trainer.should_stop = True

    def on_train_end(self, trainer: Trainer) -> None:
        if self.best_state is None or self.best_epoch == trainer.epoch:  # the weights are the best ones
            return
        if not self.trainable_only:
            trainer.module.load_state_dict(self.best_state)
            return
        params = dict(trainer.module.named_parameters())
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value)


class LRSchedule(Callback):
    """Step a learning-rate ``scheduler`` after every optimiser step."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self.scheduler.step()


class ReduceLROnPlateau(Callback):
    """Multiply every parameter group's learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` evaluations (never below ``min_lr``). With early stopping beside it, a run that stalls first
    takes smaller steps around its best weights, then stops."""

    def __init__(
        self,
        monitor: str = "ndcg@10",
        factor: float = 0.5,
        patience: int = 3,
        *,
        mode: str = "max",
        min_lr: float = 0.0,
    ) -> None:
        check_param("factor", factor, 0.0 < factor < 1.0, "a float in (0, 1)", "ReduceLROnPlateau")
        check_param("patience", patience, patience >= 1, "an int >= 1", "ReduceLROnPlateau")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.sign = 1.0 if mode == "max" else -1.0
        self.min_lr = min_lr
        self.best = -math.inf
        self.bad = 0
        self.reductions: list[int] = []  # the epochs after which the rate was reduced

    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            return  # EarlyStopping (if any) names the missing metric
        score = self.sign * float(value)
        if score > self.best:
            self.best, self.bad = score, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            for group in trainer.optimizer.param_groups:
                group["lr"] = max(self.min_lr, group["lr"] * self.factor)
            self.reductions.append(trainer.epoch)
            self.bad = 0


class OnStep(Callback):
    """Call ``fn(step)`` after every optimiser step, before the gradients are cleared."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self.fn(step)


class NaNGuard(Callback):
    """Raise ``FloatingPointError`` as soon as a batch loss is NaN or infinite; ``hint`` ends the message."""

    def __init__(self, hint: str = "lower the learning rate.") -> None:
        self.hint = hint

    def on_loss(self, trainer: Trainer, loss: float) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {loss} at epoch {trainer.epoch}, step {trainer.step}; {self.hint}"
            )


class ProgressBar(Callback):
    """A tqdm bar over epochs showing loss and the last metrics (hidden when not a tty)."""

    def __init__(self, total: int, desc: str = "train", disable: bool | None = None) -> None:
        self.total = total
        self.desc = desc
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self.bar: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, leave=False, disable=self.disable)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            shown = {k: f"{v:.4f}" for k, v in logs.items() if k not in ("epoch",) and isinstance(v, float)}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = [
    "AccumulateStrategy",
    "Callback",
    "EarlyStopping",
    "LRSchedule",
    "NaNGuard",
    "OnStep",
    "ProgressBar",
    "ReduceLROnPlateau",
    "TrainStrategy",
    "Trainer",
]
