"""Accuracy vs exposure fairness on Amazon Scientific: fair re-ranking sweeps per model.

Leave-one-out, full ranking, history not masked (the official path: ``load_dataset`` +
``protocols.loo`` + ``runner.evaluate_model`` + ``runner.rerank_tradeoff``). Each model's
top-100 candidates per test case are re-ranked with every setting of SWEEP; rows give
NDCG@10 / Recall@10 next to the position-weighted exposure Gini, long-tail share, coverage
and head/tail exposure-relevance disparity, and the NDCG cost against no re-ranking.
Writes ``results/fairness.json`` and ``results/fairness_tradeoff.png``.

Environment:
    FAIRNESS_MODELS   comma list of pop, itemknn, sasrec (default: all three)
    FAIRNESS_EPOCHS   SASRec epochs (default 12: its best epoch in results/sasrec.json)
    FAIRNESS_DATA     load spec (default unisrec:amazon-scientific)
"""

from __future__ import annotations

import os
import time

import common

from liveshelf.data.formats import load_dataset
from liveshelf.evaluation.protocols import loo
from liveshelf.evaluation.report import plot_tradeoff
from liveshelf.evaluation.runner import build_model, evaluate_model, rerank_tradeoff, seed_everything
from liveshelf.rerank import parse_rerank

SWEEP = ["fair:lambda=0,0.1,0.3,1,3", "cap:0.01,0.005,0.002,0.001", "calib:lambda=0.5,0.9"]
CANDIDATES = 100
#: SASRec as in bench_sasrec.SETTINGS (chosen there on validation NDCG@10), one torch thread
SASREC = {
    "hidden": 64,
    "n_layers": 2,
    "n_heads": 2,
    "max_len": 50,
    "dropout": 0.5,
    "norm": "post",
    "label_smoothing": 0.1,
    "lr": 1e-3,
    "batch_size": 128,
    "patience": 10,
    "n_threads": 1,
}
COLUMNS = (
    "ndcg@10",
    "recall@10",
    "exposure_gini@10",
    "gini@10",
    "tail_share@10",
    "coverage@10",
    "disparity@10",
    "ndcg_cost",
    "rerank_seconds",
)


def main() -> None:
    wanted = os.environ.get("FAIRNESS_MODELS", "pop,itemknn,sasrec")
    names = [m.strip() for m in wanted.split(",") if m.strip()]
    epochs = int(os.environ.get("FAIRNESS_EPOCHS", "12"))
    spec = os.environ.get("FAIRNESS_DATA", "unisrec:amazon-scientific")
    settings = parse_rerank(SWEEP)
    split = loo(load_dataset(spec))
    rows, per_model, fits = [], {}, {}
    t0 = time.perf_counter()
    for name in names:
        seed_everything(0)
        model = build_model(
            name, SASREC if name == "sasrec" else {}, seed=0, epochs=epochs if name == "sasrec" else None
        )
        c0 = time.process_time()
        model.fit(split.train)
        fits[name] = round(time.process_time() - c0, 1)
        ev = evaluate_model(model, split, keep_candidates=CANDIDATES, progress=True, desc=f"evaluate {name}")
        per_model[name] = rerank_tradeoff(
            ev, split, settings, name=name, log=lambda msg: print(msg, flush=True)
        )
        for r in per_model[name]:
            rows.append(
                {
                    "model": name,
                    "setting": r["label"],
                    **{c: r[c] for c in COLUMNS},
                    "overflow": r.get("overflow"),
                }
            )
    rerank = {"candidates": CANDIDATES, "models": per_model}
    png = common.RESULTS / "fairness_tradeoff.png"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(rerank, png, "Amazon Scientific (LOO): NDCG@10 vs exposure Gini@10")
    common.write_result(
        "fairness",
        rows,
        seconds=round(time.perf_counter() - t0, 1),
        dataset=spec,
        cases=len(split.cases),
        n_items=split.n_items,
        sweep=SWEEP,
        candidates=CANDIDATES,
        fit_cpu_seconds=fits,
        sasrec_epochs=epochs if "sasrec" in names else None,
        plot=png.name,
        note="LOO, full ranking, history not masked; ties by item index in the candidate lists; exposure "
        "discount 1/log2(rank+2), counted per item; tail = all but the 20% most popular training items; "
        "relevance = test targets per item. CPU, shared 2-core machine (loaded while measured).",
    )


if __name__ == "__main__":
    main()
