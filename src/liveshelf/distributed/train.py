"""Data-parallel training on Ray Train (``TorchTrainer``, DDP over gloo) with the local code path.

Every Ray Train worker runs the model's own ``fit`` (``SASRec.fit`` and its subclasses: the same
windows, loss, validation and early stopping as a local fit) with a :class:`DDPStrategy`, the
:class:`~liveshelf.core.trainer.TrainStrategy` that makes it data-parallel:

- ``setup`` wraps the module with ``ray.train.torch.prepare_model`` (device placement and
  ``DistributedDataParallel``; DDP broadcasts rank 0's initial weights) and shards the batches:
  every rank builds the same seeded batch order and keeps batch ``i`` when ``i % world == rank``;
  a last incomplete round (fewer batches than ranks) is dropped, so every rank makes the same
  number of steps and no all-reduce waits forever;
- ``backward`` runs the model's loss *inside* the DDP forward (a small wrapper module), so the
  gradient all-reduce sees every parameter the loss touches, including those used outside
  ``forward`` (SASRec's output layer ``logits``);
- each rank validates the full validation set on identical weights, so early stopping takes
  the same decision everywhere (the price: validation is not split across ranks).

Rank 0 saves the fitted model with its own ``save`` into a Ray Train checkpoint; the driver
loads it back, so :func:`fit_distributed` returns an ordinary fitted model (``history_``,
``best_epoch_`` and ``fit_seconds_`` included) that saves, scores and registers like a local one.

By default (``split_batch``) each of ``W`` workers takes ``batch_size // W`` windows per step, so
a step averages the gradients of one local-size batch and an epoch makes about as many steps as a
local fit: the same optimisation with its arithmetic spread over the workers. The batch order,
dropout masks and float summation order differ from a local fit, so the weights are not
bit-identical; the test NDCG@10 is compared in ``tests/test_distributed.py`` and
``benchmarks/bench_distributed.py``.

>>> from liveshelf.distributed.train import fit_distributed            # doctest: +SKIP
>>> model = fit_distributed(SASRec(epochs=20, n_threads=1), data, num_workers=2)  # doctest: +SKIP
>>> model.save("models/sasrec-ddp")                                     # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liveshelf.core.trainer import Callback, Trainer, TrainStrategy
from liveshelf.distributed.cluster import ensure_ray, import_ray
from liveshelf.errors import ConfigError, check_param
from liveshelf.models.base import TrainData

#: File in the checkpoint (beside the model's own files) with what ``save`` does not keep.
FIT_INFO = "fit_info.json"


class _LossModule(torch.nn.Module):
    """``forward(loss_fn, batch) = loss_fn(net, batch)``: the whole loss inside one DDP forward."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any) -> torch.Tensor:
        return loss_fn(self.net, batch)


def _train_context() -> Any:
    """The Ray Train context of this worker, or a ConfigError saying how to get one."""
    import_ray()
    import ray.train

    try:
        ctx = ray.train.get_context()
        ctx.get_world_rank()
    except Exception as exc:  # outside a Ray Train worker Ray raises several kinds of error
        raise ConfigError(
            "DDPStrategy must run inside a Ray Train worker (TorchTrainer); it got none. "
            "Use liveshelf.distributed.train.fit_distributed(model, data, num_workers=N), or "
            "train without a strategy."
        ) from exc
    return ctx


class DDPStrategy(TrainStrategy):
    """Distributed data-parallel steps inside a Ray Train worker (see the module docstring).

    ``find_unused_parameters`` goes to ``DistributedDataParallel`` (set it for a model whose
    loss leaves some parameters without gradient). ``decorrelate_dropout`` reseeds the
    dropout of rank ``r > 0`` (rank 0 keeps the local sequence), so ranks do not draw the same
    masks for different batches. After training, ``report()`` gives the world size, steps per
    epoch and the batches dropped to keep ranks in step.

    >>> model.fit(data, strategy=DDPStrategy())   # inside a TorchTrainer worker  # doctest: +SKIP
    """

    private = False

    def __init__(self, find_unused_parameters: bool = False, decorrelate_dropout: bool = True) -> None:
        self.find_unused_parameters = find_unused_parameters
        self.decorrelate_dropout = decorrelate_dropout
        self.rank_ = 0
        self.world_size_ = 1
        self.steps_per_epoch_ = 0
        self.dropped_batches_ = 0

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
        from ray.train.torch import prepare_model

        ctx = _train_context()
        self.rank_, self.world_size_ = int(ctx.get_world_rank()), int(ctx.get_world_size())
        self._check_same_data(n_samples, batch_size)
        if self.decorrelate_dropout and self.rank_ > 0:
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.rank_)
        wrapped = prepare_model(
            _LossModule(module),
            parallel_strategy="ddp",
            parallel_strategy_kwargs={
                "find_unused_parameters": self.find_unused_parameters,
                **_no_forward_buffer_sync(),
            },
        )
        return wrapped, optimizer, lambda epoch: self._shard(batches(epoch))

    def backward(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any
    ) -> torch.Tensor:
        loss = module(loss_fn, batch)  # DDP forward: the all-reduce hooks are armed for this step
        loss.backward()
        return loss

    def report(self) -> dict[str, Any]:
        return {
            "strategy": "ddp",
            "world_size": self.world_size_,
            "steps_per_epoch": self.steps_per_epoch_,
            "dropped_batches": self.dropped_batches_,
        }

    # ---------------------------------------------------------------- internals
    def _shard(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Batch ``i`` of the shared order goes to rank ``i % world``; a last partial round is dropped."""
        steps, in_round, mine = 0, 0, None
        for i, batch in enumerate(batches):
            if i % self.world_size_ == self.rank_:
                mine = batch
            in_round = i % self.world_size_ + 1
            if in_round == self.world_size_:  # a full round: every rank has one batch for this step
                steps += 1
                yield mine
                in_round, mine = 0, None
        self.dropped_batches_ += in_round
        self.steps_per_epoch_ = steps

    def _check_same_data(self, n_samples: int | None, batch_size: int | None) -> None:
        """All ranks must shard the same batch order: same number of windows and batch size."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized() or self.world_size_ == 1:
            return
        mine = [-1 if n_samples is None else int(n_samples), -1 if batch_size is None else int(batch_size)]
        seen: list[Any] = [None] * self.world_size_
        dist.all_gather_object(seen, mine)
        if any(s != seen[0] for s in seen):
            raise ConfigError(
                f"The ranks of this DDP run see different training data ((windows, batch size) per "
                f"rank: {seen}); every rank must get the same TrainData and settings."
            )


def _no_forward_buffer_sync() -> dict[str, bool]:
    """DDP kwargs that sync buffers once at start-up but not at every forward.

    Buffers here (causal masks, ...) are constants; a sync per forward would add a collective to
    every step. Newer torch names the switch ``forward_sync_buffers``; older torch ``broadcast_buffers``.
    """
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return (
        {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    )


class _ReportEpoch(Callback):
    """``ray.train.report`` the float metrics of each epoch (all ranks, as Ray Train requires)."""

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(
            {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        )


def _train_loop(config: dict[str, Any]) -> None:
    """The Ray Train worker: fit with DDPStrategy; rank 0 checkpoints the saved model."""
    import ray
    import ray.train

    data: TrainData = ray.get(config["data"])
    model = config["model_class"](**config["params"])
    strategy = DDPStrategy(find_unused_parameters=config["find_unused_parameters"])
    model.fit(data, callbacks=[_ReportEpoch()], strategy=strategy)
    info = {
        "history": model.history_,
        "best_epoch": int(model.best_epoch_),
        "fit_seconds": float(model.fit_seconds_),
        "strategy": strategy.report(),
    }
    final = {"best_epoch": float(model.best_epoch_), "fit_seconds": float(model.fit_seconds_)}
    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory(prefix="liveshelf-ddp-") as tmp:
            model.save(tmp)
            (Path(tmp) / FIT_INFO).write_text(json.dumps(info, default=float))
            ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(final)


def check_trainable(model: Any) -> None:
    """Raise ConfigError unless ``model.fit`` takes a ``strategy`` (what DDP plugs into)."""
    fit = getattr(model, "fit", None)
    if fit is None or "strategy" not in inspect.signature(fit).parameters:
        raise ConfigError(
            f"The 'model' parameter of fit_distributed must be a model whose fit takes a "
            f"'strategy' (SASRec, LiveSASRec). Got {type(model).__name__}, whose fit does "
            "not. Train it locally."
        )


def fit_distributed(
    model: Any,
    data: TrainData,
    *,
    num_workers: int = 2,
    threads_per_worker: int = 1,
    split_batch: bool = True,
    use_gpu: bool = False,
    backend: str = "gloo",
    find_unused_parameters: bool = False,
    address: str | None = None,
    storage_path: str | Path | None = None,
) -> Any:
    """Fit ``model`` (unfitted; its settings are kept) on ``num_workers`` Ray Train workers with DDP.

    ``model`` must take ``fit(data, callbacks=..., strategy=...)`` (SASRec and its subclasses).
    With ``split_batch`` (default) each worker takes ``batch_size // num_workers`` windows per
    step, so a step still averages ``batch_size`` windows and an epoch makes about as many steps as a
    local fit: the same optimisation, its arithmetic spread over the workers. Without it every
    worker takes ``batch_size`` (``num_workers`` times the batch, ``1 / num_workers`` of the steps).
    Inside the workers ``n_threads`` is ``threads_per_worker``; the returned model keeps the
    settings given (``batch_size``, ``n_threads``, ``device``). ``storage_path``: where Ray Train
    keeps the run and its checkpoint (None: a temporary folder, deleted after loading). Returns a
    new fitted model of the same class.

    >>> fitted = fit_distributed(SASRec(hidden=32, epochs=10), split.train, num_workers=2)  # doctest: +SKIP
    >>> fitted.history_[-1]["ndcg@10"]                                                     # doctest: +SKIP
    """
    where = "fit_distributed"
    check_param(
        "num_workers", num_workers, isinstance(num_workers, int) and num_workers >= 1, "an int >= 1", where
    )
    check_param(
        "threads_per_worker",
        threads_per_worker,
        isinstance(threads_per_worker, int) and threads_per_worker >= 1,
        "an int >= 1",
        where,
    )
    check_param("backend", backend, backend in ("gloo", "nccl"), "'gloo' (CPU) or 'nccl' (GPU)", where)
    if backend == "nccl" and not use_gpu:
        raise ConfigError(
            "The 'backend' parameter of fit_distributed is 'nccl', which needs GPUs. "
            "Pass use_gpu=True, or backend='gloo' for CPU workers."
        )
    check_trainable(model)
    given = model.get_params()
    params = dict(given, n_threads=threads_per_worker)
    if split_batch and "batch_size" in params:
        if params["batch_size"] < num_workers:
            raise ConfigError(
                f"The 'batch_size' of the model ({params['batch_size']}) must be at least num_workers "
                f"({num_workers}) with split_batch=True. Raise batch_size or pass split_batch=False."
            )
        params["batch_size"] = params["batch_size"] // num_workers
    if use_gpu and str(params.get("device", "cpu")) == "cpu":
        params["device"] = "cuda"
    ray = import_ray()
    ensure_ray(address=address)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="liveshelf-ray-train-") as tmp:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "data": ray.put(data),
                "model_class": type(model),
                "params": params,
                "find_unused_parameters": find_unused_parameters,
            },
            torch_config=TorchConfig(backend=backend),
            scaling_config=ScalingConfig(
                num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": threads_per_worker}
            ),
            run_config=RunConfig(
                name=f"liveshelf-{type(model).__name__.lower()}-ddp",
                storage_path=str(storage_path if storage_path is not None else tmp),
            ),
        )
        result = trainer.fit()
        if result.error is not None:  # pragma: no cover - Ray raises TrainingFailedError first
            raise result.error
        if result.checkpoint is None:  # pragma: no cover - rank 0 always reports one
            raise RuntimeError("Ray Train finished without the checkpoint rank 0 reports; see the Ray logs.")
        with result.checkpoint.as_directory() as folder:
            fitted = type(model).load(folder)
            info = json.loads((Path(folder) / FIT_INFO).read_text())
    for name in ("n_threads", "batch_size", "device"):  # the settings given, not the per-worker ones
        if name in given:
            setattr(fitted, name, given[name])
    fitted.history_ = info["history"]
    fitted.best_epoch_ = info["best_epoch"]
    fitted.fit_seconds_ = info["fit_seconds"]
    fitted.strategy_report_ = info["strategy"]
    fitted.distributed_seconds_ = time.perf_counter() - t0
    return fitted


__all__ = ["DDPStrategy", "check_trainable", "fit_distributed"]
