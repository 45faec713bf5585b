"""The demo job: simulate -> ingest -> store summary -> quick models on the live protocol.

Used by ``liveshelf demo`` (and ``make demo``). Every step is the same code a user runs
on real data; only the source is the simulator.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def run_demo(*, home: Path, users: int, hosts: int, days: int, seed: int, fresh: bool,
             console: Console, models: tuple[str, ...] = ("pop", "repeat", "itemknn")) -> dict[str, Any]:
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import SimConfig, simulate
    from liveshelf.data.store import EventStore

    home = Path(home)
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    with console.status("simulating a live-commerce world ..."):
        world = simulate(SimConfig(n_users=users, n_hosts=hosts, days=days, seed=seed))
        folder = world.save(home / "world")
    console.print(f"[green]simulated[/] {len(world.dataset.events):,} events, "
                  f"{len(world.dataset.rooms):,} rooms, {len(world.dataset.items):,} items "
                  f"in {time.perf_counter() - t0:.1f}s -> {folder}")

    t0 = time.perf_counter()
    with EventStore(home) as store:
        reports = Ingestor(store).ingest_world(folder, rejects_dir=home / "rejects")
        table = Table(title=f"ingest ({time.perf_counter() - t0:.1f}s)")
        for col in ("kind", "accepted", "rejected", "duplicate"):
            table.add_column(col, justify="right" if col != "kind" else "left")
        for r in reports:
            d = r.as_dict()
            table.add_row(str(d["kind"]), f"{d['accepted']:,}", f"{d['rejected']:,}", f"{d['duplicate']:,}")
        console.print(table)
        stats = store.stats()
        summary = Table(title=f"event store {store.path if hasattr(store, 'path') else home}")
        summary.add_column("what")
        summary.add_column("value", justify="right")
        for key, value in stats.items():
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    summary.add_row(f"{key}: {k2}", f"{v2:,}" if isinstance(v2, int) else str(v2))
            else:
                summary.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
        console.print(summary)
        dataset = store.to_dataset("demo")

    result: dict[str, Any] = {"home": str(home), "events": int(len(dataset.events))}
    result["evaluation"] = _evaluate(dataset, models, seed, console, home / "evaluation")
    return result


def _evaluate(dataset, models: tuple[str, ...], seed: int, console: Console, out: Path) -> dict[str, Any]:
    """Quick models on the live protocol: which host's live room will the viewer enter next?"""
    from liveshelf.evaluation.runner import run

    t0 = time.perf_counter()
    results = run(dataset, list(models), protocol="live", out=out, seed=seed, progress=False)
    table = Table(title=f"live protocol: next room (by host) among rooms live at that moment "
                        f"({time.perf_counter() - t0:.1f}s)")
    table.add_column("model")
    for m in ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new"):
        table.add_column(m, justify="right")
    for name, res in results["models"].items():
        met = res["metrics"]
        table.add_row(name, *[f"{met.get(m, float('nan')):.4f}" for m in
                              ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new")])
    console.print(table)
    console.print(f"report: {out / 'report.md'}")
    return results
