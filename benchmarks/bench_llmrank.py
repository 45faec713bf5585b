"""``llmrank`` (MiniLM cross-encoder + LoRA over SASRec's top-20) vs ``sasrec`` on Amazon Scientific.

LOO, full ranking, history not masked. Both models are scored on the same seeded sample of test
cases (``LLMRANK_CASES``, default 3000: cross-encoding every case's 20 candidates on a 2-core CPU
is the cost); NDCG@10 is reported per history-length bucket (<= 5, 6-10, > 10 items) with a paired
t-test and a paired bootstrap CI of the difference (llmrank - sasrec) in each bucket.

Environment: LLMRANK_CASES, LLMRANK_TRAIN_USERS (default 2000), LLMRANK_EPOCHS (1),
LLMRANK_THREADS (2), LLMRANK_METHOD (lora).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import common
import numpy as np

from liveshelf.data.formats import load_dataset
from liveshelf.evaluation.protocols import loo
from liveshelf.evaluation.runner import evaluate_model
from liveshelf.evaluation.significance import compare
from liveshelf.models.llmrank import LLMRank
from liveshelf.models.sasrec import SASRec

DATA = "unisrec:amazon-scientific"
BUCKETS = (("<=5", 0, 5), ("6-10", 6, 10), (">10", 11, 10**9))


def main() -> None:
    n_cases = int(os.environ.get("LLMRANK_CASES", "3000"))
    train_users = int(os.environ.get("LLMRANK_TRAIN_USERS", "2000"))
    epochs = int(os.environ.get("LLMRANK_EPOCHS", "1"))
    threads = int(os.environ.get("LLMRANK_THREADS", "2"))
    method = os.environ.get("LLMRANK_METHOD", "lora")
    t0 = time.perf_counter()
    split = loo(load_dataset(DATA))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(split.cases), size=min(n_cases, len(split.cases)), replace=False))
    sample = replace(split, cases=[split.cases[i] for i in pick])

    t = time.perf_counter()
    sasrec = SASRec(dropout=0.3, patience=5, n_threads=threads).fit(split.train)
    sasrec_fit = time.perf_counter() - t
    t = time.perf_counter()
    llm = LLMRank(
        base="sasrec",
        top_n=20,
        method=method,
        epochs=epochs,
        train_users=train_users,
        n_threads=threads,
        seed=0,
    ).fit(split.train, base_model=sasrec)
    llm_fit = time.perf_counter() - t

    base_eval = evaluate_model(sasrec, sample)
    t = time.perf_counter()
    llm_eval = evaluate_model(llm, sample, batch_size=256, progress=True, desc="llmrank")
    llm_eval_s = time.perf_counter() - t
    lengths = np.array([len(c.context.items) for c in sample.cases])
    rows = []
    for label, lo, hi in [("all", 0, 10**9), *BUCKETS]:
        m = (lengths >= lo) & (lengths <= hi)
        a, b = llm_eval.per_case["ndcg@10"][m], base_eval.per_case["ndcg@10"][m]
        cmp = compare(a, b, n_boot=2000) if m.sum() > 1 else None
        d = cmp.to_dict() if cmp is not None else {}
        rows.append(
            {
                "bucket": label,
                "cases": int(m.sum()),
                "sasrec ndcg@10": float(b.mean()) if m.any() else None,
                "llmrank ndcg@10": float(a.mean()) if m.any() else None,
                "sasrec recall@10": float(base_eval.per_case["recall@10"][m].mean()) if m.any() else None,
                "llmrank recall@10": float(llm_eval.per_case["recall@10"][m].mean()) if m.any() else None,
                **{f"diff {k}": v for k, v in d.items()},
            }
        )
    common.write_result(
        "llmrank",
        rows,
        seconds=round(time.perf_counter() - t0, 1),
        cases=len(sample.cases),
        train_users=train_users,
        epochs=epochs,
        method=method,
        blend=llm.blend_,
        blend_grid=getattr(llm, "blend_grid_", {}),
        train_triples=llm.train_triples_,
        sasrec_fit_seconds=round(sasrec_fit, 1),
        llmrank_fit_seconds=round(llm_fit, 1),
        llmrank_eval_seconds=round(llm_eval_s, 1),
        ranker_fit=llm.ranker_.fit_stats_,
        note="LOO, full ranking, history not masked; seeded case sample; CPU, shared 2-core machine",
    )


if __name__ == "__main__":
    main()
