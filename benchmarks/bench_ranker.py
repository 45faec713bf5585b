"""The learned two-stage ``ranker`` against each of its sources alone and the equal-weight ``blend``.

Leave-one-out, full ranking, history not masked (the ``liveshelf evaluate`` defaults). Each source
is fitted once per data set (seed 1) and evaluated alone; ``blend`` and ``ranker`` reuse those
fitted sources (``fit(train, sources=...)``), so a row's ``fit_seconds`` is its own stage and
``total_fit_seconds`` adds the sources' fits. Paired tests (t-test and bootstrap,
:func:`liveshelf.evaluation.significance.compare`) of NDCG@10 and Recall@10: ranker vs every other
row. The load average (1 min) is recorded before and after each data set: the machine is shared.

Multi-behaviour data (Taobao, Tmall: next purchase given click / cart / purchase history) have no
validation targets, so the ranker holds out each user's last training item (its sources are fitted
a second time for that, counted in its ``fit_seconds``). ``RANKER_MAX_USERS`` slices users
deterministically (every k-th user in sorted id order) to fit the time.

Environment:
    RANKER_DATASETS   comma list of scientific, beauty, taobao, tmall (default: all four)
    RANKER_MAX_USERS  keep at most this many users of each multi-behaviour data set (default: 0 = all)
    RANKER_PARAMS     JSON object of HybridRanker settings overriding SETTINGS
    RANKER_SASREC     JSON object of SASRec / TextSeq settings overriding the source defaults
    RANKER_CACHE      folder: fitted sources are saved there and reloaded on the next run (same data,
                      seed and settings are the caller's responsibility; fit_seconds then is the original fit's)

Rows of data sets not rerun are kept from the previous ``results/ranker.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import common
import numpy as np

from liveshelf.data.formats import load_dataset
from liveshelf.evaluation.protocols import loo
from liveshelf.evaluation.runner import evaluate_model, seed_everything
from liveshelf.evaluation.significance import compare
from liveshelf.models import load_model
from liveshelf.models.ranker import BlendRecommender, HybridRanker
from liveshelf.models.ranker.sources import build_source, skip_reason

SEED = 1
#: data set -> (load spec, sources)
DATASETS = {
    "scientific": ("unisrec:amazon-scientific", "pop,itemknn,sasrec,textseq"),
    "beauty": ("p5:amazon-beauty", "pop,itemknn,sasrec,textseq"),
    "taobao": ("multibehavior:multibehavior/taobao", "pop,itemknn,sasrec,repeat"),
    "tmall": ("multibehavior:multibehavior/tmall", "pop,itemknn,sasrec,repeat"),
}
MULTI = ("taobao", "tmall")
SETTINGS: dict = {}


def slice_users(ds, max_users: int):
    """Every k-th user (sorted ids) so that at most ``max_users`` remain; deterministic."""
    import dataclasses

    users = np.unique(ds.events["user"].astype(str).to_numpy())
    if not max_users or len(users) <= max_users:
        return ds, len(users)
    step = int(np.ceil(len(users) / max_users))
    keep = set(users[::step].tolist())
    mask = ds.events["user"].astype(str).isin(keep).to_numpy()
    events = ds.events[mask].reset_index(drop=True)
    split = None if ds.split is None else ds.split[mask].reset_index(drop=True)
    return dataclasses.replace(ds, events=events, split=split, name=f"{ds.name} (every {step}th user)"), len(
        keep
    )


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    t = compare(a, b, seed=SEED)
    return {
        "mean_diff": t.mean_diff,
        "ci": [t.ci_low, t.ci_high],
        "p_ttest": t.p_ttest,
        "p_bootstrap": t.p_bootstrap,
    }


def run_dataset(name: str, max_users: int, params: dict, seq_params: dict) -> list[dict]:
    spec, sources = DATASETS[name]
    ds, n_users = slice_users(load_dataset(spec), max_users if name in MULTI else 0)
    split = loo(ds)
    train = split.train
    load_before = os.getloadavg()[0]
    rows, per_case, fitted = [], {}, {}

    def add(model_name: str, model, fit_s: float, total_s: float, extra: dict | None = None) -> None:
        ev = evaluate_model(model, split)
        per_case[model_name] = ev.per_case
        rows.append(
            {
                "dataset": name,
                "model": model_name,
                "ndcg@10": ev.metrics["ndcg@10"],
                "recall@10": ev.metrics["recall@10"],
                "ndcg@50": ev.metrics["ndcg@50"],
                "fit_seconds": round(fit_s, 1),
                "total_fit_seconds": round(total_s, 1),
                "eval_seconds": round(ev.eval_seconds, 1),
                "cases": len(split.cases),
                "users": n_users,
                "load_1min": round(os.getloadavg()[0], 2),
                **(extra or {}),
            }
        )

    for src in sources.split(","):
        reason = skip_reason(src, train)
        if reason:
            rows.append({"dataset": name, "model": src, "skipped": reason})
            continue
        cached = Path(os.environ["RANKER_CACHE"]) / name / src if os.environ.get("RANKER_CACHE") else None
        if cached is not None and (cached / "config.json").exists():
            fitted[src] = load_model(cached)
            fit_s = json.loads((cached / "fit_seconds.json").read_text())["fit_seconds"]
        else:
            seed_everything(SEED)
            t0 = time.perf_counter()
            sp = seq_params if src in ("sasrec", "textseq") else {}
            fitted[src] = build_source(src, sp, SEED).fit(train)
            fit_s = time.perf_counter() - t0
            if cached is not None:
                fitted[src].save(cached)
                (cached / "fit_seconds.json").write_text(json.dumps({"fit_seconds": fit_s}))
        add(src, fitted[src], fit_s, fit_s)
    src_total = sum(r["fit_seconds"] for r in rows if "fit_seconds" in r)
    names = list(fitted)
    sp_all = {s: seq_params for s in names if s in ("sasrec", "textseq") and seq_params} or None

    seed_everything(SEED)
    t0 = time.perf_counter()
    blend = BlendRecommender(sources=names, source_params=sp_all, seed=SEED).fit(train, sources=fitted)
    add("blend", blend, time.perf_counter() - t0, src_total + time.perf_counter() - t0)

    seed_everything(SEED)
    t0 = time.perf_counter()
    ranker = HybridRanker(sources=names, source_params=sp_all, seed=SEED, **params).fit(train, sources=fitted)
    fit_s = time.perf_counter() - t0
    info = ranker.fit_info_
    add(
        "ranker",
        ranker,
        fit_s,
        src_total + fit_s,
        {
            "candidate_recall": info["candidate_recall"],
            "targets": info["targets"],
            "best_iteration": info["best_iteration"],
            "top_features": dict(list(info["feature_importance"].items())[:8]),
            "skipped_sources": info["skipped_sources"],
            "params": json.dumps({**SETTINGS, **params}, sort_keys=True),
        },
    )
    for row in rows:
        if row.get("model") in per_case and row["model"] != "ranker":
            row["ranker_vs"] = {
                m: paired(per_case[row["model"]][m], per_case["ranker"][m]) for m in ("ndcg@10", "recall@10")
            }
            row["ranker_minus_ndcg@10"] = row["ranker_vs"]["ndcg@10"]["mean_diff"]
            row["p_ttest_ndcg@10"] = row["ranker_vs"]["ndcg@10"]["p_ttest"]
    for row in rows:
        row["load_1min_before"] = round(load_before, 2)
    return rows


def main() -> None:
    wanted = [
        d.strip() for d in os.environ.get("RANKER_DATASETS", ",".join(DATASETS)).split(",") if d.strip()
    ]
    max_users = int(os.environ.get("RANKER_MAX_USERS", "0"))
    params = {**SETTINGS, **json.loads(os.environ.get("RANKER_PARAMS", "{}"))}
    seq_params = json.loads(os.environ.get("RANKER_SASREC", "{}"))
    previous = common.RESULTS / "ranker.json"
    kept, details = [], {}
    if previous.exists():
        old = json.loads(previous.read_text())
        kept = [r for r in old.get("rows", []) if r.get("dataset") not in wanted]
        details = {k: v for k, v in old.get("details", {}).items() if k.split("/")[0] not in wanted}
    rows = []
    t0 = time.perf_counter()
    for name in wanted:
        rows += run_dataset(name, max_users, params, seq_params)
        order = list(DATASETS)
        done = sorted(kept + rows, key=lambda r: order.index(r["dataset"]) if r["dataset"] in order else 99)
        for r in done:  # nested fields (paired tests, feature importance) go to "details", off the table
            nested = {
                k: r.pop(k)
                for k in [k for k, v in r.items() if isinstance(v, (dict, list))] + ["params"]
                if k in r
            }
            if nested:
                details.setdefault(f"{r['dataset']}/{r['model']}", {}).update(nested)
        common.write_result(
            "ranker",
            done,
            details=details,
            seconds=round(time.perf_counter() - t0, 1),
            seed=SEED,
            note="LOO, full ranking, history not masked; CPU, shared 2-core machine; "
            "details[<dataset>/<model>].ranker_vs = paired tests of ranker minus that row",
        )


if __name__ == "__main__":
    main()
