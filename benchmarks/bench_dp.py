"""Accuracy against privacy: SASRec trained with DP-SGD (opacus) at several ε on MovieLens-100k.

Leave-one-out, full ranking over all 1,682 items, history not masked; data through the
official path (``load_dataset`` + ``protocols.loo`` + ``runner.evaluate_model``). Every DP run
trains for the same fixed number of epochs, one window (the last ``max_len + 1`` items) per
user, δ = 1 / users, per-user clipping bound ``dp_max_grad_norm``, PRV accountant; ε = ∞ is the
same model trained without DP (all windows, early stopping on validation). ``pop`` and a
random ranking anchor the bottom of the curve.

Environment:
    DP_EPSILONS   comma list of ε (default 0.5,1,2,4,8; ``inf`` is always added)
    DP_EPOCHS     epochs of every run (default 10)
    DP_THREADS    torch threads (default 1)

Writes ``results/dp.json`` and ``results/dp.png`` (NDCG@10 against ε, log scale).
"""

from __future__ import annotations

import math
import os
import time

import common

from liveshelf.data.formats import load_dataset
from liveshelf.evaluation.protocols import loo
from liveshelf.evaluation.runner import evaluate_model
from liveshelf.models import create_model
from liveshelf.models.sasrec import SASRec

DATA = "recbole:ml-100k"
#: Small SASRec: DP noise grows with the number of parameters, and 943 users are few.
SETTINGS = {
    "hidden": 32,
    "n_layers": 1,
    "n_heads": 2,
    "max_len": 50,
    "dropout": 0.1,
    "lr": 5e-3,
    "batch_size": 128,
    "seed": 0,
    "dp_max_grad_norm": 1.0,
}


def run_eps(split, eps: float, epochs: int, threads: int) -> dict:
    params = {**SETTINGS, "epochs": epochs, "n_threads": threads}
    if math.isfinite(eps):
        params["dp_epsilon"] = eps
    else:
        params["patience"] = epochs
    t0, c0 = time.perf_counter(), time.process_time()
    model = SASRec(**params).fit(split.train)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    m = evaluate_model(model, split).metrics
    p = model.privacy_ or {}
    return {
        "model": "sasrec",
        "target_epsilon": eps if math.isfinite(eps) else "inf",
        "epsilon": p.get("dp_epsilon", "inf"),
        "delta": p.get("dp_delta"),
        "noise_multiplier": p.get("dp_noise_multiplier"),
        "steps": p.get("dp_steps"),
        "ndcg@10": m["ndcg@10"],
        "recall@10": m["recall@10"],
        "ndcg@50": m["ndcg@50"],
        "epochs": len(model.history_),
        "fit_seconds": round(fit_s, 1),
        "fit_cpu_seconds": round(fit_cpu, 1),
    }


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dp = [r for r in rows if isinstance(r.get("epsilon"), float)]
    ref = {
        r["model"] if r["model"] != "sasrec" else "sasrec (no DP)": r["ndcg@10"]
        for r in rows
        if not isinstance(r.get("epsilon"), float)
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["epsilon"] for r in dp], [r["ndcg@10"] for r in dp], "o-", label="sasrec, DP-SGD")
    for (name, value), style in zip(ref.items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, linestyle=style, color="grey", label=name)
    ax.set_xscale("log")
    ax.set_xticks([r["epsilon"] for r in dp], [f"{r['target_epsilon']:g}" for r in dp])
    ax.minorticks_off()
    ax.set_xlabel("ε (δ = 1 / users)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title("SASRec on MovieLens-100k: accuracy against privacy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    eps_list = [float(e) for e in os.environ.get("DP_EPSILONS", "0.5,1,2,4,8").split(",") if e.strip()]
    epochs = int(os.environ.get("DP_EPOCHS", "10"))
    threads = int(os.environ.get("DP_THREADS", "1"))
    t0 = time.perf_counter()
    split = loo(load_dataset(DATA))
    rows = []
    for eps in [*eps_list, math.inf]:
        rows.append(run_eps(split, eps, epochs, threads))
        print(f"eps={eps}: ndcg@10={rows[-1]['ndcg@10']:.4f}", flush=True)
    for name in ("pop", "random"):
        model = create_model("pop").fit(split.train) if name == "pop" else None
        if model is not None:
            m = evaluate_model(model, split).metrics
            rows.append(
                {"model": name, "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "ndcg@50": m["ndcg@50"]}
            )
        else:  # expected NDCG@10 of a uniformly random ranking of all items
            n = split.train.n_items
            rows.append(
                {
                    "model": "random",
                    "ndcg@10": sum(1 / math.log2(r + 2) for r in range(10)) / n,
                    "recall@10": 10 / n,
                }
            )
    plot(rows, common.RESULTS / "dp.png")
    common.write_result(
        "dp",
        rows,
        seconds=round(time.perf_counter() - t0, 1),
        data=DATA,
        epochs=epochs,
        settings=SETTINGS,
        plot="dp.png",
        note="LOO, full ranking; DP rows: one window per user, fixed epochs, PRV accountant; "
        "CPU, shared 2-core machine under load (wall times inflated, see fit_cpu_seconds)",
    )


if __name__ == "__main__":
    main()
