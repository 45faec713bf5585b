"""Scale-out on Ray: catalogue encoding (local vs Ray Data actors) and DDP vs single-process training.

Encode table: the first ``DIST_ENCODE_N`` (default 400) item texts of Amazon Scientific (built by
the unisrec reader, the text every local model uses), all-MiniLM-L6-v2, fp32. ``local``: one
``TextEncoder`` with 2 torch threads. ``ray``: ``RayTextEncoder`` with 2 actors x 1 thread in
blocks of 64 texts; its time includes starting the actors and loading the model in each (what
every job pays; the Ray cluster itself is started before timing). ``max_abs_diff`` against the
local vectors.

Train table: SASRec (hidden 64, 2 layers, the model defaults otherwise) on the first ``DIST_USERS``
(default 3000) users of Amazon Scientific, leave-one-out, exactly ``DIST_EPOCHS`` (default 10)
epochs (no early stop), seed 0. ``local-1t`` / ``local-2t``: one process with 1 / 2 torch threads;
``ddp-2w``: ``fit_distributed`` on 2 Ray Train workers x 1 thread, per-worker batch 64 (global 128,
the local batch). ``s_per_epoch``: mean training time of an epoch (no validation);
``cpu_s_per_epoch``: CPU seconds of an epoch in one process (for DDP: one worker, so the job
uses about twice that); ``total_s``: the whole call (DDP: with Ray Train start-up and the
checkpoint round trip). Test metrics: full ranking over all items.

The Ray cluster: local, 2 CPUs, started once. Timings on a shared machine are inflated by
other jobs; compare rows of one run, and CPU seconds across runs.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from liveshelf.config import data_dir

ENCODE_N = int(os.environ.get("DIST_ENCODE_N", "400"))
USERS = int(os.environ.get("DIST_USERS", "3000"))
EPOCHS = int(os.environ.get("DIST_EPOCHS", "10"))
TRAIN = {
    "hidden": 64,
    "n_layers": 2,
    "n_heads": 2,
    "max_len": 50,
    "batch_size": 128,
    "patience": 10_000,
    "seed": 0,
}


def _dataset():
    from liveshelf.data.formats import load_dataset

    return load_dataset(f"unisrec:{data_dir() / 'amazon-scientific'}")


def encode_rows(ds) -> list[dict]:
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.distributed.encode import RayTextEncoder
    from liveshelf.text.encoder import TextEncoder

    texts = [t for t in dataset_to_train_data(ds).item_text or [] if t][:ENCODE_N]
    torch.set_num_threads(2)
    local = TextEncoder()
    t0, c0 = time.perf_counter(), time.process_time()
    ref = local.encode(texts)
    local_s, local_cpu = time.perf_counter() - t0, time.process_time() - c0
    remote = RayTextEncoder(num_workers=2, threads_per_worker=1, block_rows=64)
    t0 = time.perf_counter()
    got = remote.encode(texts)
    ray_s = time.perf_counter() - t0
    return [
        {
            "path": "local",
            "workers": 1,
            "threads": 2,
            "texts": len(texts),
            "seconds": round(local_s, 2),
            "texts_per_s": round(len(texts) / local_s, 1),
            "driver_cpu_s": round(local_cpu, 2),
            "max_abs_diff": 0.0,
        },
        {
            "path": "ray",
            "workers": 2,
            "threads": 1,
            "texts": len(texts),
            "seconds": round(ray_s, 2),
            "texts_per_s": round(len(texts) / ray_s, 1),
            "blocks": remote.stats_["blocks"],
            "max_abs_diff": float(np.abs(got - ref).max()),
        },
    ]


def train_rows(ds) -> list[dict]:
    from liveshelf.distributed.train import fit_distributed
    from liveshelf.evaluation.protocols import loo
    from liveshelf.evaluation.runner import evaluate_model
    from liveshelf.models.sasrec import SASRec

    users = set(ds.events["user"].drop_duplicates().iloc[:USERS])
    keep = ds.events["user"].isin(users).to_numpy()
    sliced = type(ds)(
        name=f"{ds.name}-{USERS}u",
        events=ds.events[keep].reset_index(drop=True),
        items=ds.items,
        split=None if ds.split is None else ds.split[keep].reset_index(drop=True),
    )
    split = loo(sliced)
    rows = []
    for name, threads in (("local-1t", 1), ("local-2t", 2), ("ddp-2w", 1)):
        params = {**TRAIN, "epochs": EPOCHS, "n_threads": threads}
        t0 = time.perf_counter()
        if name.startswith("ddp"):
            model = fit_distributed(SASRec(**params), split.train, num_workers=2, threads_per_worker=1)
        else:
            model = SASRec(**params).fit(split.train)
        total = time.perf_counter() - t0
        metrics = evaluate_model(model, split).metrics
        hist = model.history_
        rows.append(
            {
                "run": name,
                "users": split.train.n_users,
                "items": split.train.n_items,
                "epochs": len(hist),
                "s_per_epoch": round(float(np.mean([h["train_seconds"] for h in hist])), 3),
                "cpu_s_per_epoch": round(float(np.mean([h["cpu_seconds"] for h in hist])), 3),
                "total_s": round(total, 1),
                "ndcg@10": round(metrics["ndcg@10"], 4),
                "recall@10": round(metrics["recall@10"], 4),
                "valid_ndcg@10_last": round(float(hist[-1].get("ndcg@10", float("nan"))), 4),
                "steps_per_epoch": getattr(model, "strategy_report_", {}).get("steps_per_epoch"),
            }
        )
    return rows


def main() -> None:
    import common
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    ray_init_s = time.perf_counter() - t0
    try:
        ds = _dataset()
        enc = encode_rows(ds)
        common.write_result("distributed", enc, encode=enc, ray_init_s=round(ray_init_s, 1), note="partial")
        train = train_rows(ds)
    finally:
        if started:
            ray.shutdown()
    common.write_result(
        "distributed",
        enc + train,
        encode=enc,
        train=train,
        ray_init_s=round(ray_init_s, 1),
        load_average=os.getloadavg()[0],
        model="all-MiniLM-L6-v2 / SASRec",
        data="amazon-scientific",
        note="local Ray cluster with 2 CPUs on a shared 2-core machine",
    )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
