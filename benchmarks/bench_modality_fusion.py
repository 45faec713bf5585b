"""Does `textseq` use a non-text modality? Text only vs + an informative "image" vs + a noise-only one.

A simulated world (``liveshelf.data.sim``) whose users' preferences have a hidden per-item part
that titles do not carry; ``liveshelf.data.sim.modality.image_vectors`` emits an ``image`` vector
per item that carries a noisy projection of it (``informative``) or noise alone (``noise``), both on
90 % of the items (the rest masked). Leave-one-out split with 20 % of the items hidden from training
(:func:`liveshelf.evaluation.coldstart.hide_items`), the same seeds for every variant; per-case
NDCG@10 of each fused model is compared with text only (and informative with noise) by
:func:`liveshelf.evaluation.significance.compare` (paired bootstrap CI and t-test), on all test
cases and on the cold ones (target hidden from training), per seed and pooled over seeds. Writes
``benchmarks/results/modality_fusion.json``.

Why the subsets: any distinct per-item vector, even pure noise, works as an item identity: it lets
the model tell items with near-identical titles apart, learn them when seen in training, and
recognise a target already in the context (simulated viewers come back to items). Only on
``cold_new`` cases (target hidden from training and not in the context) can a vector help by what it
carries. Expected: informative > text only on all cases (CI above 0); noise-only not worse than
text only (CI includes 0 or above); on ``cold_new`` informative > noise.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import common
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SEEDS = (0, 1, 2)
WORLD = {"n_users": 3000, "n_hosts": 40, "days": 2}
PARAMS = {"epochs": 60, "patience": 5, "n_threads": 2, "encoder": "e5"}
HIDE = 0.2  # share of the items hidden from training (cold items)


def variants(world, seed: int):
    from liveshelf.data.item_vectors import ItemVectors
    from liveshelf.data.sim.modality import image_vectors

    ids = np.asarray(world.truth.item_ids, dtype=object)
    out = {}
    for kind in ("informative", "noise"):
        x = image_vectors(world.truth, kind, dim=32, noise=0.5, coverage=0.9, seed=seed)
        have = np.isfinite(x).all(axis=1)
        out[kind] = ItemVectors(ids[have], x[have])
    return out


def comparisons(compare, ndcg: dict[str, dict[str, np.ndarray]], seed: int) -> dict:
    """Paired tests per part (all / cold cases): image and noise against text only, image against noise."""
    out = {}
    for part, d in ndcg.items():
        out[f"{part} image_vs_text"] = compare(d["none"], d["image"], seed=seed).to_dict()
        out[f"{part} noise_vs_text"] = compare(d["none"], d["noise"], seed=seed).to_dict()
        out[f"{part} image_vs_noise"] = compare(d["noise"], d["image"], seed=seed).to_dict()
    return out


def main() -> None:
    from liveshelf.core.seeding import seed_everything
    from liveshelf.data.sim.world import simulate
    from liveshelf.evaluation.coldstart import hide_items
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import evaluate_model
    from liveshelf.evaluation.significance import compare
    from liveshelf.models import create_model

    rows, per_seed = [], []
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        part: {"none": [], "image": [], "noise": []} for part in ("all", "cold", "cold_new")
    }
    for seed in SEEDS:
        world = simulate(seed=seed, **WORLD)
        ds = world.dataset
        vecs = variants(world, seed)
        ds.item_vectors = {"image": vecs["informative"], "noise": vecs["noise"]}
        cold = hide_items(make_split(ds, "loo"), HIDE, seed)
        cold_cases = cold.cold_cases()
        new = [c for c in cold_cases.cases if c.target not in set(np.asarray(c.context.items).tolist())]
        parts = {"all": cold.split, "cold": cold_cases, "cold_new": replace(cold_cases, cases=new)}
        ndcg: dict[str, dict[str, np.ndarray]] = {p: {} for p in parts}
        for name in ("none", "image", "noise"):
            seed_everything(seed)
            model = create_model("textseq", seed=seed, modalities=name, **PARAMS)
            t0 = time.perf_counter()
            model.fit(cold.split.train)
            fit_s = time.perf_counter() - t0
            for part, split in parts.items():
                ev = evaluate_model(model, split)
                ndcg[part][name] = np.asarray(ev.per_case["ndcg@10"], dtype=np.float64)
                pooled[part][name].append(ndcg[part][name])
            weights = model.modality_weights()
            rows.append(
                {
                    "seed": seed,
                    "modalities": "text" if name == "none" else f"text+{name}",
                    "ndcg@10": round(float(ndcg["all"][name].mean()), 4),
                    "ndcg@10_cold": round(float(ndcg["cold"][name].mean()), 4),
                    "ndcg@10_cold_new": round(float(ndcg["cold_new"][name].mean()), 4),
                    "fusion_weight": round(weights.get(name, 0.0), 3) if weights else None,
                    "epochs": model.best_epoch_,
                    "fit_s": round(fit_s, 1),
                }
            )
            print(rows[-1], flush=True)
        per_seed.append(
            {
                "seed": seed,
                **{f"cases_{p}": int(len(ndcg[p]["none"])) for p in parts},
                **comparisons(compare, {p: ndcg[p] for p in parts}, seed),
            }
        )
    pool = {p: {k: np.concatenate(v) for k, v in d.items()} for p, d in pooled.items()}
    summary: dict = comparisons(compare, pool, 0)
    summary["informative_beats_text"] = summary["all image_vs_text"]["ci_low"] > 0
    summary["noise_not_worse"] = summary["all noise_vs_text"]["ci_high"] >= 0
    summary["cold_new_informative_beats_noise"] = summary["cold_new image_vs_noise"]["ci_low"] > 0
    print(summary, flush=True)
    common.write_result(
        "modality_fusion",
        rows,
        world=WORLD,
        params=PARAMS,
        image={"dim": 32, "noise": 0.5, "coverage": 0.9},
        per_seed=per_seed,
        summary=summary,
        protocol=f"loo (leave-one-out, full ranking), {HIDE:.0%} of the items hidden from training",
    )


if __name__ == "__main__":
    main()
