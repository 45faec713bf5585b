"""The Flower client: one merchant or region training the shared model on its own users only.

Each round the client receives the global weights, builds its local model from them
(``warm_start_from``), trains ``local_epochs`` passes over *its* users with the model's own
``fit`` (same windows, loss and optimiser as a centralised fit) and sends the new weights back
with the number of training windows (FedAvg's weight). With FedProx the local loss gets the
proximal term ``mu/2 ||w - w_global||^2`` (:class:`ProximalStrategy`). Evaluation rounds score
the global weights on the client's own validation targets; only the mean NDCG@10 / recall@10
leaves the client.

A client reads its data from its own folder (see :mod:`liveshelf.federated.clientdata`) once per
worker process and keeps it, so a Ray worker that hosts several clients over many rounds reads
each partition once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liveshelf.core.trainer import TrainStrategy
from liveshelf.federated.clientdata import training_targets
from liveshelf.models.base import TrainData

#: Config keys the server sends each round.
ROUND = "round"
LOCAL_EPOCHS = "local-epochs"
#: Key of FedProx's proximal weight (set by Flower's FedProx strategy).
PROXIMAL_MU = "proximal_mu"
#: Set under client-level DP: every client counts once in the average (the noise is calibrated to that).
EQUAL_WEIGHTS = "equal-weights"


@dataclass(frozen=True)
class ClientSpec:
    """What every client process needs to rebuild its model: small, so Flower ships it cheaply."""

    model: str
    params: dict[str, Any]
    keys: tuple[str, ...]
    folder: str
    seed: int = 0
    n_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def client_folder(self, partition: int) -> Path:
        return Path(self.folder) / "clients" / str(partition)

    @property
    def catalogue(self) -> Path:
        from liveshelf.federated.clientdata import CATALOGUE

        return Path(self.folder) / CATALOGUE


class ProximalStrategy(TrainStrategy):
    """FedProx's local objective: the batch loss plus ``mu/2 * ||w - w0||^2``, where ``w0`` are the
    weights the module holds when training starts (the global model, after ``warm_start_from``)."""

    def __init__(self, mu: float) -> None:
        self.mu = float(mu)
        self._anchor: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def setup(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Callable[[int], Iterable[Any]],
        **kwargs: Any,
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[int], Iterable[Any]]]:
        self._anchor = [(p, p.detach().clone()) for p in module.parameters() if p.requires_grad]
        return module, optimizer, batches

    def backward(
        self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any
    ) -> torch.Tensor:
        loss = loss_fn(module, batch)
        prox = sum(((p - p0) ** 2).sum() for p, p0 in self._anchor)
        (loss + 0.5 * self.mu * prox).backward()
        return loss

    def report(self) -> dict[str, Any]:
        return {"proximal_mu": self.mu}


#: One entry per (worker process, client folder): the client's data and the global-model skeleton.
_LOADED: dict[str, tuple[TrainData, TrainData, Any]] = {}


def _client_state(spec: ClientSpec, partition: int) -> tuple[TrainData, TrainData, Any]:
    """(training data without validation targets, the full local data, the global model skeleton)."""
    folder = spec.client_folder(partition)
    key = str(folder.resolve())
    if key not in _LOADED:
        from liveshelf.federated.clientdata import read_client
        from liveshelf.federated.models import skeleton

        local = read_client(folder, spec.catalogue)
        train = dataclasses.replace(local, valid_targets=None)  # local epochs do not early-stop
        _LOADED[key] = (train, local, skeleton(spec, local))
    return _LOADED[key]


def _weights(spec: ClientSpec, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    if len(arrays) != len(spec.keys):
        raise ValueError(f"expected {len(spec.keys)} arrays from the server, got {len(arrays)}")
    return dict(zip(spec.keys, arrays, strict=True))


def _nbytes(arrays: list[np.ndarray]) -> int:
    return int(sum(np.asarray(a).nbytes for a in arrays))


def local_fit(
    spec: ClientSpec, partition: int, arrays: list[np.ndarray], config: dict[str, Any]
) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One client's training round: global weights in, local weights and counts out."""
    from liveshelf.federated.models import build_local

    t0, c0 = time.perf_counter(), time.process_time()
    train, _, glob = _client_state(spec, partition)
    glob.set_weights(_weights(spec, arrays), partial=True)
    rnd = int(config.get(ROUND, 1))
    local = build_local(
        spec, epochs=int(config.get(LOCAL_EPOCHS, 1)), seed=spec.seed + 1009 * rnd + partition
    )
    local.warm_start_from(glob)
    mu = float(config.get(PROXIMAL_MU, 0.0) or 0.0)
    local.fit(train, strategy=ProximalStrategy(mu) if mu > 0 else None)
    out = local.get_weights()
    result = [out[k] for k in spec.keys]
    losses = [float(h["loss"]) for h in local.history_ if h.get("loss") is not None]
    metrics = {
        "train_loss": float(losses[-1]) if losses else float("nan"),
        "bytes_down": _nbytes(arrays),
        "bytes_up": _nbytes(result),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "users": len(train.user_ids),
    }
    weight = 1 if config.get(EQUAL_WEIGHTS) else training_targets(train)
    return result, weight, metrics


def local_evaluate(
    spec: ClientSpec, partition: int, arrays: list[np.ndarray]
) -> tuple[float, int, dict[str, Any]]:
    """Validation NDCG@10 / recall@10 of the global weights on this client's own validation targets."""
    _, local, glob = _client_state(spec, partition)
    glob.set_weights(_weights(spec, arrays), partial=True)
    metrics = glob.validate(local)
    n = int((np.asarray(local.valid_targets) >= 0).sum()) if local.valid_targets is not None else 0
    ndcg = float(metrics.get("ndcg@10", 0.0))
    return 1.0 - ndcg, n, {k: float(v) for k, v in metrics.items()}  # no targets: weight 0


def make_client_app(spec: ClientSpec, *, dp: bool = False, secagg: bool = False) -> Any:
    """A Flower ``ClientApp`` whose clients run :func:`local_fit` / :func:`local_evaluate`.

    ``dp`` adds Flower's client-side clipping mod (the server wrapper sends the clipping norm and adds
    the noise); ``secagg`` adds the SecAgg+ mod, outermost, so updates are clipped before masking."""
    from flwr.app import Context
    from flwr.client import NumPyClient
    from flwr.client.mod import fixedclipping_mod, secaggplus_mod
    from flwr.clientapp import ClientApp

    class RecClient(NumPyClient):
        def __init__(self, partition: int) -> None:
            self.partition = partition

        def fit(self, parameters, config):
            torch.set_num_threads(spec.n_threads)
            return local_fit(spec, self.partition, parameters, dict(config))

        def evaluate(self, parameters, config):
            torch.set_num_threads(spec.n_threads)
            return local_evaluate(spec, self.partition, parameters)

    def client_fn(context: Context):
        return RecClient(int(context.node_config["partition-id"])).to_client()

    mods: list[Any] = ([secaggplus_mod] if secagg else []) + ([fixedclipping_mod] if dp else [])
    return ClientApp(client_fn=client_fn, mods=mods)
