"""The models that train federated, and how a client or the server builds them.

A federated model is a sequential network whose whole state travels as named arrays:
``SASRec`` and ``TextSeq`` (and their subclasses) with ``init_weights``, ``get_weights``,
``set_weights`` and ``warm_start_from``. The item vocabulary is the public catalogue, the same on
every client, so every client's network has the same shapes and FedAvg averages them row by row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liveshelf.errors import ConfigError
from liveshelf.models.base import TrainData

if TYPE_CHECKING:
    from liveshelf.federated.client import ClientSpec
    from liveshelf.models.sasrec.recommender import SASRec

#: ``--model`` names and the registered model family each trains.
FEDERATED_MODELS = {"sasrec": "sasrec", "textseq": "textseq"}


def check_model(name: str) -> None:
    if name == "ranker":
        raise ConfigError(
            "--model ranker does not train federated yet: its sources (popularity, item-item and "
            "transition statistics, the sequential models) and its LightGBM booster would each need a "
            "federated counterpart (secure sums of counts, cyclic or bagged boosting across clients). "
            "Train --model sasrec or textseq federated, and the ranker centrally over them."
        )
    if name not in FEDERATED_MODELS:
        raise ConfigError(
            f"Unknown federated model {name!r}; expected one of: {', '.join(FEDERATED_MODELS)}."
        )


def _build(model: str, params: dict[str, Any], *, seed: int, n_threads: int, **overrides: Any) -> SASRec:
    from liveshelf.evaluation.runner import build_model
    from liveshelf.models.sasrec.recommender import SASRec

    kw = {**params, **overrides}
    kw.setdefault("n_threads", n_threads)
    m = build_model(model, kw, seed=seed)
    if not isinstance(m, SASRec):  # pragma: no cover - FEDERATED_MODELS names only SASRec families here
        raise ConfigError(f"The model {model!r} does not train federated (not a sequential network).")
    return m


def skeleton(spec: ClientSpec, data: TrainData) -> SASRec:
    """The global model's network on ``data``'s catalogue, ready for ``set_weights``."""
    return _build(spec.model, spec.params, seed=spec.seed, n_threads=spec.n_threads).init_weights(data)


def build_local(spec: ClientSpec, *, epochs: int, seed: int) -> SASRec:
    """A client's model for one round: ``epochs`` local passes, no early stopping, no progress bar."""
    return _build(
        spec.model, spec.params, seed=seed, n_threads=spec.n_threads, epochs=epochs, patience=epochs + 1
    )


def exchanged_keys(model: SASRec, *, private: bool) -> tuple[str, ...]:
    """The arrays a federation exchanges: the trained parameters, plus TextSeq's ``seen`` flags when
    the run is not differentially private (FedAvg of the flags: > 0 = seen by some client).

    Frozen buffers (the catalogue's text vectors, whitening) are rebuilt by every party from the
    public catalogue, so they are never sent, and DP noise never lands on them. Under DP the flags
    are not sent either (they would reveal which items a client's users touched, without noise):
    the global model then scores every item by its text alone."""
    net = model.net_
    keys = [name for name, p in net.named_parameters() if p.requires_grad]
    if not private and "seen" in dict(net.named_buffers()):
        keys.append("seen")
    return tuple(keys)
