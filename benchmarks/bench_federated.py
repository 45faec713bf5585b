"""Federated SASRec with Flower vs the same SASRec trained on pooled data (Amazon Scientific).

Amazon Scientific (8,442 users, 4,385 items), leave-one-out, full ranking, seed 0. SASRec with its
defaults (hidden 64, 2 layers, batch 128, lr 1e-3, label smoothing 0.1).

- ``centralised``: ``SASRec().fit`` on the pooled training data (early stopping on validation);
- ``federated`` rows: ``FED_CLIENTS`` (10) Flower clients in Flower's simulation engine on Ray
  (2 CPUs, 1 thread per client), ``FED_ROUNDS`` (50) rounds of ``FED_LOCAL_EPOCHS`` (5) local
  epochs each, every client in every round; the global model kept is the round with the best
  validation NDCG@10 averaged over the clients (each scores its own users' validation targets);
- partitions: ``iid`` (users dealt at random) and ``category`` (users go with the text cluster most
  of their items fall in, whole clusters per client: Scientific's reader has no category column,
  so categories are 20 TF-IDF + k-means clusters of the item texts);
- strategies: FedAvg, FedProx (``mu`` = ``FED_MU``, 0.01), FedAvg with client-level DP
  (Flower's client-side fixed clipping, clip 1.0, ε = 8 at δ = 1e-5 over all rounds, RDP
  accounting), and FedAvg with SecAgg+ (``FED_SECAGG_ROUNDS``, 10 rounds: it shows the protocol's
  cost per round and that the masked sum gives the same model as the plain one).

``ratio``: test NDCG@10 over the centralised model's, both on the same split. ``bytes_per_round``:
float32 model payload down and up, all clients (SecAgg+ adds its key exchange on top).
``cpu_s``: the server process plus the CPU seconds every client reported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from liveshelf.config import data_dir

CLIENTS = int(os.environ.get("FED_CLIENTS", "10"))
ROUNDS = int(os.environ.get("FED_ROUNDS", "50"))
LOCAL_EPOCHS = int(os.environ.get("FED_LOCAL_EPOCHS", "5"))
MU = float(os.environ.get("FED_MU", "0.01"))
SECAGG_ROUNDS = int(os.environ.get("FED_SECAGG_ROUNDS", "10"))
SEED = 0


def main() -> None:
    import tempfile

    import numpy as np
    import torch
    from common import write_result

    from liveshelf.core.seeding import seed_everything
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import evaluate_model, load_data
    from liveshelf.federated.run import FederatedConfig, run_federated
    from liveshelf.models.sasrec import SASRec

    ds = load_data(f"unisrec:{data_dir() / 'amazon-scientific'}")
    split = make_split(ds, "loo")
    rows: list[dict] = []

    seed_everything(SEED)
    torch.set_num_threads(2)
    t0, c0 = time.perf_counter(), time.process_time()
    central = SASRec(seed=SEED, n_threads=2).fit(split.train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    base = evaluate_model(central, split).metrics
    rows.append(
        {
            "run": "centralised",
            "partition": "-",
            "rounds": len(central.history_),
            "best": central.best_epoch_,
            "ndcg@10": base["ndcg@10"],
            "recall@10": base["recall@10"],
            "ratio": 1.0,
            "epsilon": None,
            "bytes_per_round": None,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
        }
    )
    print(f"centralised ndcg@10={base['ndcg@10']:.4f} ({wall:.0f}s)", flush=True)

    runs = [
        ("fedavg", "iid", dict(strategy="fedavg")),
        ("fedavg", "category", dict(strategy="fedavg", partition="category")),
        ("fedprox", "category", dict(strategy="fedprox", partition="category", proximal_mu=MU)),
        ("fedavg+dp", "iid", dict(strategy="fedavg", dp_epsilon=8.0, clip_norm=1.0)),
        ("fedavg+secagg", "iid", dict(strategy="fedavg", secagg=True, rounds=SECAGG_ROUNDS)),
    ]
    curves: dict[str, list[float]] = {}
    for name, part, kw in runs:
        cfg = FederatedConfig(
            model="sasrec",
            clients=CLIENTS,
            rounds=kw.pop("rounds", ROUNDS),
            local_epochs=LOCAL_EPOCHS,
            seed=SEED,
            **kw,
        )
        with tempfile.TemporaryDirectory() as tmp:
            fed = run_federated(split, cfg, Path(tmp), log=lambda m: print(m, flush=True))
        m = evaluate_model(fed.model, split).metrics
        res = fed.results
        curves[f"{name}/{part}"] = [r["valid_ndcg@10"] for r in res["rounds"]]
        rows.append(
            {
                "run": name,
                "partition": part,
                "rounds": len(res["rounds"]),
                "best": res["best_round"],
                "ndcg@10": m["ndcg@10"],
                "recall@10": m["recall@10"],
                "ratio": m["ndcg@10"] / base["ndcg@10"],
                "epsilon": None if res["privacy"] is None else round(res["privacy"]["dp_epsilon"], 3),
                "noise_multiplier": None
                if res["privacy"] is None
                else round(res["privacy"]["noise_multiplier"], 3),
                "bytes_per_round": res["bytes_per_round"],
                "wall_s": res["wall_seconds"],
                "cpu_s": res["cpu_seconds"],
                "users_per_client": res["partition"]["users_per_client"],
            }
        )
        print(f"{name}/{part}: ndcg@10={m['ndcg@10']:.4f} ratio={rows[-1]['ratio']:.3f}", flush=True)

    iid = next(r for r in rows if r["run"] == "fedavg" and r["partition"] == "iid")
    write_result(
        "federated",
        rows,
        data="amazon-scientific",
        clients=CLIENTS,
        local_epochs=LOCAL_EPOCHS,
        proximal_mu=MU,
        target={"iid_ratio_at_least": 0.95, "iid_ratio": iid["ratio"], "met": bool(iid["ratio"] >= 0.95)},
        valid_ndcg_per_round=curves,
        note="Flower simulation engine on a local Ray cluster (2 CPUs); 1 torch thread per client; "
        "centralised fit with 2 threads",
        load_average=list(os.getloadavg()),
        centralised_epochs=int(len(central.history_)),
        seed=SEED,
        numpy=np.__version__,
    )


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
