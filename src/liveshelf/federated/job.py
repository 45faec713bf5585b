"""The ``liveshelf federated train`` job: data -> split -> federation -> evaluation -> files.

``OUT/results.json`` holds ``federated.metrics`` and ``centralised.metrics`` (the same metric
names as ``liveshelf evaluate``, on the same split and seed), the rounds, the bytes sent per round
and the wall and CPU time; ``OUT/model`` is the federated model, saved like any fitted model
(``--register`` also registers it, with the federation in its lineage); ``OUT/rounds.png`` plots
the clients' validation NDCG@10 per round against the centralised fit's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liveshelf.core.jsonsafe import jsonable
from liveshelf.core.seeding import seed_everything
from liveshelf.errors import ConfigError
from liveshelf.federated.run import FederatedConfig, run_federated

#: The headline metrics printed and compared.
HEADLINE = ("ndcg@10", "recall@10", "ndcg@50", "recall@50")


def user_regions(ds: Any) -> dict[str, str] | None:
    """``user id -> region`` from the data set's user profiles (None when it has none)."""
    users = getattr(ds, "users", None)
    if users is None or "region" not in users or not len(users):
        return None
    keep = users["region"].notna()
    return dict(zip(users.loc[keep, "id"].astype(str), users.loc[keep, "region"].astype(str), strict=True))


def train_federated(
    data: str,
    cfg: FederatedConfig,
    out: Path,
    *,
    protocol: str | None = None,
    centralised: bool = True,
    register: str | None = None,
    home: Path | None = None,
    tracking_uri: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the whole job and write ``out``; returns the results dict."""
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import build_model, default_protocol, evaluate_model, load_data

    cfg.validate()
    out = Path(out)
    t0 = time.perf_counter()
    ds = load_data(data)
    protocol = protocol or default_protocol(data, ds)
    split = make_split(ds, protocol)
    if not split.cases:
        raise ConfigError(
            f"The {protocol!r} protocol found no test cases in {data!r}; nothing to evaluate on."
        )
    log(f"{ds.name}: {split.train.n_users} users, {split.train.n_items} items, {len(split.cases)} test cases")
    out.mkdir(parents=True, exist_ok=True)

    from liveshelf.core.tracking import track_run

    with track_run(
        "federated",
        tracking_uri=tracking_uri,
        run_name=f"{cfg.model} x{cfg.clients} {cfg.partition} {cfg.strategy}"
        + (" dp" if cfg.dp_epsilon else ""),
        params={"data": data, "protocol": protocol, **_flat_config(cfg)},
        tags={"job": "federated train", "dataset": ds.name},
    ) as tracker:
        fed = run_federated(split, cfg, out, user_region=user_regions(ds), log=log, verbose=verbose)
        for row in fed.results["rounds"]:
            tracker.log_metrics(
                {k: v for k, v in row.items() if k not in ("round", "clients")}, step=int(row["round"])
            )
        ev = evaluate_model(fed.model, split, desc="evaluate federated")
        results: dict[str, Any] = {
            "dataset": ds.name,
            "data": data,
            "protocol": protocol,
            "seed": cfg.seed,
            "model": cfg.model,
            "federated": {"metrics": ev.metrics, **fed.results},
        }
        log("federated: " + _line(ev.metrics))
        if centralised:
            seed_everything(cfg.seed)
            central: Any = build_model(cfg.model, dict(cfg.params), seed=cfg.seed)
            c0 = time.perf_counter()
            central.fit(split.train)
            fit_s = time.perf_counter() - c0
            cev = evaluate_model(central, split, desc="evaluate centralised")
            results["centralised"] = {
                "metrics": cev.metrics,
                "fit_seconds": round(fit_s, 2),
                "epochs": len(central.history_),
                "best_epoch": central.best_epoch_,
            }
            base = cev.metrics.get("ndcg@10") or 0.0
            results["ratio_ndcg@10"] = (float(ev.metrics["ndcg@10"] or 0.0) / base) if base else None
            log("centralised: " + _line(cev.metrics))
        fed.model.save(out / "model")
        results["model_dir"] = str(out / "model")
        if tracker.run_id:
            results["mlflow_run_id"] = tracker.run_id
        if register is not None:
            from liveshelf.config import Settings
            from liveshelf.registry import ModelRegistry

            reg = ModelRegistry((home if home is not None else Settings().home) / "models")
            lineage = {
                "data": data,
                "trainer": "flower",
                "strategy": cfg.strategy,
                "clients": cfg.clients,
                "rounds": cfg.rounds,
                "partition": cfg.partition,
                "secagg": cfg.secagg,
                **({"privacy": fed.results["privacy"]} if fed.results["privacy"] else {}),
                **tracker.lineage(),
            }
            shown = {k: ev.metrics[k] for k in HEADLINE if ev.metrics.get(k) is not None}
            version = reg.register(fed.model, name=register, metrics=shown, lineage=lineage)
            results["registered"] = {"name": register, "version": version}
        results["total_seconds"] = round(time.perf_counter() - t0, 2)
        _plot_rounds(results, out / "rounds.png")
        (out / "results.json").write_text(json.dumps(jsonable(results), indent=2, allow_nan=False))
        tracker.log_metrics({f"federated.{k}": v for k, v in ev.metrics.items()})
        if "centralised" in results:
            tracker.log_metrics({f"centralised.{k}": v for k, v in results["centralised"]["metrics"].items()})
        tracker.log_artifacts(out, exclude=("model",))
    return results


def _flat_config(cfg: FederatedConfig) -> dict[str, Any]:
    from dataclasses import asdict

    flat = {k: v for k, v in asdict(cfg).items() if k != "params"}
    flat.update({f"model.{k}": v for k, v in cfg.params.items()})
    return flat


def _line(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={metrics[k]:.4f}" for k in HEADLINE if metrics.get(k) is not None)


def _plot_rounds(results: dict[str, Any], path: Path) -> None:
    """Validation NDCG@10 of the global model per round (mean over clients), test NDCG@10 lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["federated"]["rounds"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot(
        [r["round"] for r in rounds],
        [r["valid_ndcg@10"] for r in rounds],
        marker="o",
        ms=3,
        label="federated: clients' validation NDCG@10",
    )
    ax.axhline(results["federated"]["metrics"]["ndcg@10"], color="C0", ls="--", lw=1, label="federated: test")
    if "centralised" in results:
        ax.axhline(
            results["centralised"]["metrics"]["ndcg@10"], color="C1", ls="--", lw=1, label="centralised: test"
        )
    ax.set_xlabel("round")
    ax.set_ylabel("NDCG@10")
    ax.set_title(
        f"{results['model']} on {results['dataset']}: {results['federated']['config']['clients']} clients"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
