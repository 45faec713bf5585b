"""Continuous training on a simulated world: incremental update vs full refit, per arriving window.

Events arrive in windows (by event time). After each window one loop cycle runs
(:class:`liveshelf.experiment.loop.ContinuousLoop`): the first cycle refits, later ones
update production incrementally (``model.update``). For the same training window a full
refit is timed and evaluated on the same cases, so each row shows what the cheap path
costs and loses: seconds (wall and CPU) and NDCG@10 of update vs refit, and the gate's
decision against production.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import write_result

from liveshelf.data.ingest import Ingestor
from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.data.store import EventStore
from liveshelf.evaluation.runner import evaluate_model
from liveshelf.experiment.loop import AlignedModel, ContinuousLoop, LoopConfig, StoreSource, window_split
from liveshelf.models import create_model

USERS, HOSTS, DAYS, SEED = 4000, 30, 2, 0
QUANTILES = (0.4, 0.55, 0.7, 0.85)
MODELS = {"pop": {}, "itemknn": {}, "als": {"factors": 32, "iterations": 10}}


def main() -> None:
    t0 = time.perf_counter()
    world = simulate(SimConfig(n_users=USERS, n_hosts=HOSTS, days=DAYS, seed=SEED, use_review_corpus=False))
    ds = world.dataset
    ev = ds.events
    bounds = [
        ev["ts"].min(),
        *ev["ts"].quantile(list(QUANTILES)).tolist(),
        ev["ts"].max() + pd.Timedelta("1s"),
    ]
    parts = [ev[(ev["ts"] >= a) & (ev["ts"] < b)] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    print(
        f"world: {len(ev):,} events, {len(ds.items):,} items, {len(parts)} windows "
        f"({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    rows: list[dict] = []
    wall: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with EventStore(template) as store:
            ing = Ingestor(store)
            for kind in ("items", "users", "hosts", "rooms", "shelf"):
                ing.ingest(kind, getattr(ds, kind))
        for name, params in MODELS.items():
            home = Path(tmp) / name
            home.mkdir()
            shutil.copy(template / "events.duckdb", home / "events.duckdb")
            loop = ContinuousLoop(home, LoopConfig(name="bench", model=name, params=params, max_cases=2000))
            for k, part in enumerate(parts):
                with EventStore(home) as store:
                    Ingestor(store).ingest("events", part)
                c0 = time.process_time()
                r = loop.run_once(trigger=f"window {k + 1}")
                cycle_cpu = time.process_time() - c0
                # a full refit on the same training window, evaluated on the same cases
                source = StoreSource(home)
                split, _, _ = window_split(source.dataset(source.head()), r.window["t_cut"], max_cases=2000)
                w0, c1 = time.perf_counter(), time.process_time()
                refit = create_model(name, **params).fit(split.train)
                refit_s, refit_cpu = time.perf_counter() - w0, time.process_time() - c1
                refit_ndcg = evaluate_model(AlignedModel(refit, split.train.item_ids), split).metrics[
                    "ndcg@10"
                ]
                rows.append(
                    {
                        "model": name,
                        "window": k + 1,
                        "train_events": r.window["train_events"],
                        "cases": r.window["cases"],
                        "mode": r.mode,
                        "train_cpu_s": round(r.timings["train_cpu_s"], 4),
                        "refit_cpu_s": round(refit_cpu, 4),
                        "cpu_speedup": (
                            round(refit_cpu / max(r.timings["train_cpu_s"], 1e-4), 1)
                            if r.mode == "update"
                            else None
                        ),
                        "cycle_cpu_s": round(cycle_cpu, 2),
                        "ndcg@10": round(float(r.metrics["ndcg@10"]), 4),
                        "refit_ndcg@10": round(float(refit_ndcg), 4),
                        "production_ndcg@10": (
                            round(float(r.production_metrics["ndcg@10"]), 4)
                            if r.production_metrics.get("ndcg@10") is not None
                            else None
                        ),
                        "decision": r.decision,
                    }
                )
                wall.append(
                    {
                        "model": name,
                        "window": k + 1,
                        "train_s": r.timings["train_s"],
                        "refit_s": refit_s,
                        "cycle_s": r.timings["cycle_s"],
                    }
                )
                print(
                    f"{name} window {k + 1}: {r.mode} {r.decision} ({r.timings['cycle_s']:.1f}s)", flush=True
                )
    updates = [r for r in rows if r["mode"] == "update"]
    summary = {
        m: {
            "median_cpu_speedup": float(np.median([r["cpu_speedup"] for r in updates if r["model"] == m]))
            if any(r["model"] == m for r in updates)
            else None,
            "max_ndcg_gap_vs_refit": float(
                max(abs(r["ndcg@10"] - r["refit_ndcg@10"]) for r in rows if r["model"] == m)
            ),
        }
        for m in MODELS
    }
    write_result(
        "loop",
        rows,
        world={
            "users": USERS,
            "hosts": HOSTS,
            "days": DAYS,
            "seed": SEED,
            "events": len(ev),
            "windows": len(parts),
        },
        summary=summary,
        wall_seconds=wall,
        note="CPU seconds (process time, all threads); wall seconds under 'wall_seconds' were taken on a "
        "shared, loaded 2-core machine.",
    )


if __name__ == "__main__":
    main()
