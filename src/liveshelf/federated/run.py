"""``run_federated``: train a sequential model across clients with Flower, compare it with a central fit.

Flower runs the federation (its simulation engine on Ray, one virtual SuperNode per client):

- the server (a ``ServerApp`` running Flower's ``DefaultWorkflow``, or SecAgg+'s workflow with
  ``secagg``) holds only the item catalogue and the global weights;
- each client holds one partition of the users (:mod:`liveshelf.federated.partition`) in its own
  folder and trains on it (:mod:`liveshelf.federated.client`);
- aggregation is Flower's ``FedAvg`` or ``FedProx`` (weighted by training targets), wrapped in
  Flower's ``DifferentialPrivacyClientSideFixedClipping`` for client-level DP;
- after each round the clients score the global weights on their own validation targets and
  the server keeps the round with the best weighted validation NDCG@10 (the federated analogue
  of early stopping; no validation data leaves a client).

The result is an ordinary fitted model (``history_`` has one row per round) that saves, scores,
registers and serves like a centrally trained one. With ``centralised=True`` the same model and
parameters are also fitted on the pooled data, and both are evaluated on the same split with the
same code as ``liveshelf evaluate``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.seeding import seed_everything
from liveshelf.errors import ConfigError, check_param
from liveshelf.federated.client import LOCAL_EPOCHS, ROUND, ClientSpec, make_client_app
from liveshelf.federated.clientdata import (
    catalogue_of,
    subset_users,
    training_targets,
    write_catalogue,
    write_client,
)
from liveshelf.federated.models import check_model, exchanged_keys, skeleton
from liveshelf.federated.partition import check_partition_request, partition_users
from liveshelf.federated.privacy import check_epsilon, epsilon_spent, noise_for_epsilon

STRATEGIES = ("fedavg", "fedprox")


@dataclass
class FederatedConfig:
    """Everything one federated run is decided by (recorded in ``results.json``)."""

    model: str = "sasrec"
    clients: int = 10
    rounds: int = 20
    partition: str = "iid"
    strategy: str = "fedavg"
    local_epochs: int = 1
    proximal_mu: float = 0.1
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    clip_norm: float = 1.0
    secagg: bool = False
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    threads_per_client: int = 1
    num_cpus: int | None = None

    def validate(self) -> FederatedConfig:
        check_model(self.model)
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"Unknown strategy {self.strategy!r}; expected one of: {', '.join(STRATEGIES)}."
            )
        check_partition_request(self.partition, self.clients, max(self.clients, 1))
        check_param("rounds", self.rounds, isinstance(self.rounds, int) and self.rounds >= 1, "an int >= 1")
        check_param(
            "local_epochs",
            self.local_epochs,
            isinstance(self.local_epochs, int) and self.local_epochs >= 1,
            "an int >= 1",
        )
        check_param(
            "proximal_mu", self.proximal_mu, self.proximal_mu >= 0 and math.isfinite(self.proximal_mu), "≥ 0"
        )
        check_param("clip_norm", self.clip_norm, self.clip_norm > 0 and math.isfinite(self.clip_norm), "> 0")
        if self.dp_epsilon is not None:
            check_epsilon(self.dp_epsilon, self.dp_delta)
        if self.secagg and self.clients < 3:
            raise ConfigError(
                f"--secagg needs at least 3 clients (SecAgg+ shares each client's key among the others); "
                f"got --clients {self.clients}."
            )
        return self


@dataclass
class FederatedRun:
    """What :func:`run_federated` returns: the fitted global model, the results and the partition."""

    model: Any
    results: dict[str, Any]


def _quiet_flower(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR  # not even run_simulation's deprecation notice
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(level)


def run_federated(
    split: Any,
    cfg: FederatedConfig,
    workdir: Path,
    *,
    user_region: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
    verbose: bool = False,
) -> FederatedRun:
    """Run ``cfg.rounds`` Flower rounds over ``split.train`` partitioned into ``cfg.clients`` clients.

    ``split`` is a protocol split (``liveshelf.evaluation.protocols``); its test cases are not read
    here. The clients' folders live in a temporary folder under ``workdir``, removed at the end
    (also when the run fails)."""
    cfg.validate()
    run_simulation = _flower_simulation()
    train = split.train
    partition = partition_users(train, cfg.partition, cfg.clients, seed=cfg.seed, user_region=user_region)
    log(f"partition {cfg.partition}: users per client {partition.sizes()}")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    fed_dir = Path(tempfile.mkdtemp(prefix="federation-", dir=workdir))
    try:
        write_catalogue(fed_dir, train)
        targets = []  # each client's FedAvg weight: its next-item targets
        for k, users in enumerate(partition.clients):
            own = subset_users(train, users)
            write_client(fed_dir / "clients" / str(k), own)
            targets.append(training_targets(own))

        private = cfg.dp_epsilon is not None
        seed_everything(cfg.seed)
        glob = skeleton(ClientSpec(cfg.model, cfg.params, (), str(fed_dir), cfg.seed), catalogue_of(train))
        keys = exchanged_keys(glob, private=private)
        init = {k: v for k, v in glob.get_weights().items() if k in keys}
        spec = ClientSpec(
            cfg.model, dict(cfg.params), keys, str(fed_dir.resolve()), cfg.seed, cfg.threads_per_client
        )
        noise = (
            noise_for_epsilon(cfg.dp_epsilon, cfg.dp_delta, cfg.rounds)
            if cfg.dp_epsilon is not None
            else None
        )

        # under DP the round is not chosen by the clients' (un-noised) validation figures: the last one is kept
        tracker = _RoundTracker(keys, select_best=not private)
        strategy = _strategy(cfg, [init[k] for k in keys], tracker, noise)
        server_app = _server_app(cfg, strategy, 1 if private else max(targets))
        client_app = make_client_app(spec, dp=private, secagg=cfg.secagg)

        _quiet_flower(verbose)
        # keep Ray's current behaviour for CPU-only workers, without its FutureWarning about changing it
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        cpus = cfg.num_cpus or os.cpu_count() or 1
        log(
            f"federated {cfg.model}: {cfg.clients} clients, {cfg.rounds} rounds, {cfg.strategy}"
            + (f", DP ε={cfg.dp_epsilon} (noise {noise:.3f})" if noise is not None else "")
            + (", SecAgg+" if cfg.secagg else "")
        )
        t0, c0 = time.perf_counter(), time.process_time()
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=cfg.clients,
            backend_config={
                "client_resources": {"num_cpus": cfg.threads_per_client, "num_gpus": 0.0},
                "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": verbose},
            },
            verbose_logging=verbose,
        )
    finally:
        shutil.rmtree(fed_dir, ignore_errors=True)
    # CPU: the server process plus what every client reported for its rounds (Ray workers are not
    # children this process could account for)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + sum(r.get("client_cpu_seconds", 0.0) for r in tracker.rounds)
    tracker.check(cfg.rounds)
    assert tracker.best is not None  # check() raised otherwise
    glob.set_weights(tracker.best, partial=True)
    glob.history_ = tracker.rounds
    glob.best_epoch_ = tracker.best_round
    glob.fit_seconds_ = wall

    round_bytes = [r.get("bytes_down", 0) + r.get("bytes_up", 0) for r in tracker.rounds]
    privacy = None
    if noise is not None:
        privacy = {
            "unit": "client",
            "dp_epsilon": epsilon_spent(noise, cfg.dp_delta, tracker.fits),
            "dp_delta": cfg.dp_delta,
            "target_epsilon": cfg.dp_epsilon,
            "noise_multiplier": noise,
            "clipping_norm": cfg.clip_norm,
            "rounds": tracker.fits,
            "accountant": "rdp (opacus), sampling rate 1",
            "mechanism": "Flower DifferentialPrivacyClientSideFixedClipping, clients weighted equally",
            "kept_round": "last (no selection on the clients' validation figures, which are not noised)",
            "not_covered": "the per-round training loss and validation NDCG the clients report",
        }
        glob.privacy_ = privacy
    results = {
        "config": asdict(cfg),
        "partition": partition.describe(),
        "rounds": tracker.rounds,
        "best_round": tracker.best_round,
        "exchanged": list(keys),
        "bytes_per_round": int(np.median(round_bytes)) if round_bytes else 0,
        "model_bytes": int(sum(np.asarray(v).nbytes for v in init.values())),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "privacy": privacy,
        "secagg": cfg.secagg,
    }
    log(
        f"federation done in {wall:.1f}s: kept round {tracker.best_round} "
        f"(clients' validation ndcg@10 {tracker.best_score:.4f})"
    )
    return FederatedRun(glob, results)


def _flower_simulation() -> Callable[..., None]:
    """Flower's ``run_simulation``, or a ConfigError saying how to install it."""
    try:
        from flwr.simulation import run_simulation
    except ImportError as exc:
        raise ConfigError(
            "Federated training needs Flower with its simulation engine: pip install 'liveshelf[federated]' "
            f"(flwr[simulation]). The import failed: {exc}"
        ) from exc
    return run_simulation


class _RoundTracker:
    """Collects each round's client metrics and keeps the global weights of the round to keep: the best
    by the clients' weighted validation NDCG@10 (``select_best``), else the last."""

    def __init__(self, keys: tuple[str, ...], *, select_best: bool = True) -> None:
        self.keys = keys
        self.select_best = select_best
        self.rounds: list[dict[str, Any]] = []
        self.fits = 0  # rounds whose training results were aggregated
        self.best: dict[str, np.ndarray] | None = None
        self.best_round = 0
        self.best_score = -math.inf
        self._round = 0
        self._pending: dict[str, np.ndarray] | None = None
        self._fit: dict[str, Any] = {}
        self._t = time.perf_counter()

    def on_global(self, server_round: int, arrays: list[np.ndarray]) -> None:
        """Flower's centralised-evaluation hook: called with the new global weights after each fit."""
        self._round = server_round
        if server_round > 0:
            self._pending = {k: np.array(a, copy=True) for k, a in zip(self.keys, arrays, strict=True)}

    def on_fit(self, metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        self.fits += 1
        n = sum(w for w, _ in metrics) or 1
        m = [x for _, x in metrics]
        self._fit = {
            "clients": len(metrics),
            "train_loss": float(sum(w * float(x.get("train_loss", 0.0)) for w, x in metrics) / n),
            "bytes_down": int(sum(int(x.get("bytes_down", 0)) for x in m)),
            "bytes_up": int(sum(int(x.get("bytes_up", 0)) for x in m)),
            "client_seconds_max": float(max((float(x.get("seconds", 0.0)) for x in m), default=0.0)),
            "client_cpu_seconds": float(sum(float(x.get("cpu_seconds", 0.0)) for x in m)),
        }
        return {"train_loss": self._fit["train_loss"]}

    def on_evaluate(self, metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        n = sum(w for w, _ in metrics) or 1
        agg = {
            k: float(sum(w * float(x.get(k, 0.0)) for w, x in metrics) / n) for k in ("ndcg@10", "recall@10")
        }
        now = time.perf_counter()
        row = {
            "round": self._round,
            "trained": bool(self._fit),  # False: the round's training failed and the weights did not move
            **self._fit,
            **{f"valid_{k}": v for k, v in agg.items()},
        }
        row["seconds"] = round(now - self._t, 3)
        self._t = now
        self.rounds.append(row)
        better = agg["ndcg@10"] > self.best_score or not self.select_best
        if row["trained"] and better and self._pending is not None:
            self.best, self.best_round, self.best_score = self._pending, row["round"], agg["ndcg@10"]
        self._fit = {}
        return agg

    def check(self, rounds: int) -> None:
        """Raise when a round's training or evaluation failed (a client raised): no half-trained model."""
        done = [r["round"] for r in self.rounds if r["trained"]]
        if self.fits != rounds or len(done) != rounds or self.best is None:
            raise ConfigError(
                f"The federation completed {len(done)} of {rounds} rounds: a client failed (for example, "
                "a client whose users are too few to train on). Run again with --verbose to see the "
                "clients' errors."
            )


def _strategy(
    cfg: FederatedConfig, init: list[np.ndarray], tracker: _RoundTracker, noise: float | None
) -> Any:
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx

    def fit_config(server_round: int) -> dict[str, Any]:
        return {ROUND: server_round, LOCAL_EPOCHS: cfg.local_epochs}

    def evaluate_fn(server_round: int, arrays: list[np.ndarray], config: dict[str, Any]) -> None:
        tracker.on_global(server_round, arrays)
        return None

    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": cfg.clients,
        "min_evaluate_clients": cfg.clients,
        "min_available_clients": cfg.clients,
        "initial_parameters": ndarrays_to_parameters(init),
        "on_fit_config_fn": fit_config,
        "evaluate_fn": evaluate_fn,
        "fit_metrics_aggregation_fn": tracker.on_fit,
        "evaluate_metrics_aggregation_fn": tracker.on_evaluate,
        "accept_failures": False,
    }
    base = FedProx(proximal_mu=cfg.proximal_mu, **common) if cfg.strategy == "fedprox" else FedAvg(**common)
    if noise is None:
        return base
    return DifferentialPrivacyClientSideFixedClipping(
        base, noise_multiplier=noise, clipping_norm=cfg.clip_norm, num_sampled_clients=cfg.clients
    )


def _server_app(cfg: FederatedConfig, strategy: Any, max_weight: int) -> Any:
    from flwr.app import Context
    from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=cfg.rounds), strategy=strategy)
        fit_workflow = (
            SecAggPlusWorkflow(
                num_shares=cfg.clients,
                reconstruction_threshold=max(2, (2 * cfg.clients) // 3),
                max_weight=float(max_weight),
                clipping_range=16.0,  # the masked vectors are whole weights, quantised within ±16
            )
            if cfg.secagg
            else None
        )
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)

    return app
