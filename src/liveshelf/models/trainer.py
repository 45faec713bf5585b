"""A small, model-agnostic training loop with callbacks (minGPT style).

The trainer knows no specific model. It is given

- ``module``: any ``torch.nn.Module``;
- ``batches(epoch)``: an iterable of batches for one epoch (any objects);
- ``loss_fn(module, batch)``: the scalar loss of one batch;
- ``evaluate(module)``: a dict of validation metrics (optional);

and fires callbacks at fixed points so early stopping, progress bars and logging hook
in without touching the loop::

    on_train_begin(trainer)
    on_eval(trainer, metrics)                # epoch 0, before training, when eval_first
    on_batch_end(trainer, loss)              # after each optimiser step
    on_eval(trainer, metrics)                # after each evaluation
    on_epoch_end(trainer, logs)              # logs: epoch, loss, train_seconds, seconds,
                                             #       cpu_seconds (+ metrics)
    on_train_end(trainer)

A callback stops training by setting ``trainer.should_stop = True``.

*How* a batch becomes a gradient is a :class:`TrainStrategy` (default: plain
``loss.backward()`` in one process). Differential privacy
(:class:`liveshelf.privacy.dp.DPStrategy`) and data-parallel scale-out plug in there.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

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


class Trainer:
    """Run ``epochs`` passes of ``batches`` through ``loss_fn`` with ``optimizer``.

    ``strategy`` (default :class:`TrainStrategy`) decides how a batch becomes a gradient;
    ``n_samples``, ``batch_size`` and ``make_batch`` are passed to its ``setup``. After
    ``fit``, ``strategy_report`` holds ``strategy.report()``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
        batches: Callable[[int], Iterable[Any]],
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        epochs: int = 10,
        eval_every: int = 1,
        grad_clip: float | None = None,
        callbacks: list[Callback] | None = None,
        eval_first: bool = False,
        strategy: TrainStrategy | None = None,
        n_samples: int | None = None,
        batch_size: int | None = None,
        make_batch: Callable[[np.ndarray], Any] | None = None,
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
        self.should_stop = False
        self.history: list[dict[str, Any]] = []
        self.strategy = strategy if strategy is not None else TrainStrategy()
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.make_batch = make_batch
        self.strategy_report: dict[str, Any] = {}

    def _fire(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _evaluate(self) -> dict[str, float]:
        self.module.eval()
        with torch.no_grad():
            metrics = self.evaluate(self.module)
        self._fire("on_eval", metrics)
        return metrics

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
        self._fire("on_train_begin")
        if self.eval_first and self.evaluate is not None:  # epoch 0: the initial weights compete too
            t0, c0 = time.perf_counter(), time.process_time()
            metrics = self._evaluate()
            self.history.append(
                {
                    "epoch": 0,
                    "loss": math.nan,
                    "train_seconds": 0.0,
                    **metrics,
                    "seconds": time.perf_counter() - t0,
                    "cpu_seconds": time.process_time() - c0,
                }
            )
        for epoch in range(1, self.epochs + 1):
            self.epoch = epoch
            t0, c0 = time.perf_counter(), time.process_time()
            self.module.train()
            module.train()
            total, n = 0.0, 0
            for batch in batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = self.strategy.backward(module, self.loss_fn, batch)
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
                optimizer.step()
                value = float(loss.detach())
                total, n = total + value, n + 1
                self._fire("on_batch_end", value)
            logs: dict[str, Any] = {
                "epoch": epoch,
                "loss": total / max(n, 1),
                "train_seconds": time.perf_counter() - t0,
            }
            if self.evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
                logs.update(self._evaluate())
            logs["seconds"] = time.perf_counter() - t0
            logs["cpu_seconds"] = time.process_time() - c0  # all threads; wall time lies on a shared machine
            self.history.append(logs)
            self._fire("on_epoch_end", logs)
            if self.should_stop:
                break
        self.strategy.finish(module)
        self.strategy_report = self.strategy.report()
        self._fire("on_train_end")
        return self


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` evaluations; restore the best weights."""

    def __init__(self, monitor: str = "ndcg@10", patience: int = 10, min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics[self.monitor]
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad = value, trainer.epoch, 0
            self.best_state = copy.deepcopy(trainer.module.state_dict())
        else:
            self.bad += 1
            if self.bad >= self.patience:
                trainer.should_stop = True

    def on_train_end(self, trainer: Trainer) -> None:
        if self.best_state is not None:
            trainer.module.load_state_dict(self.best_state)


class ProgressBar(Callback):
    """A tqdm bar over epochs showing loss and the last metrics (hidden when not a tty)."""

    def __init__(self, total: int, desc: str = "train", disable: bool | None = None) -> None:
        self.total = total
        self.desc = desc
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self.bar = None

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
