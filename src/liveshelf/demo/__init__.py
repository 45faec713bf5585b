"""The one-command demo: simulate -> ingest -> models -> registry -> server + dashboard -> live traffic.

Used by ``liveshelf demo`` (and ``make demo``). Every step is the same code a user runs on
real data; only the source is the simulator:

1. simulate a live-commerce world (Chinese and English hosts and items, ``en_share``) of
   ``days`` days of history plus one more day that is held back for the live replay;
2. ingest the history into the event store under ``home``;
3. evaluate the quick models (pop, repeat, itemknn) on the live protocol (next room), then
   train the item models served online (pop, itemknn and the text model ``textseq`` on the
   bundled all-MiniLM-L6-v2 encoder, embeddings cached under ``<LIVESHELF_HOME>/cache/text``),
   evaluate them on the temporal protocol, register them in ``<home>/models`` with metrics
   and lineage, and promote the best one;
4. start the HTTP server (uvicorn, in a thread) with the dashboard at ``/``;
5. replay the held-back day against it over HTTP in accelerated time
   (:mod:`liveshelf.data.sim.traffic`) until ``duration`` seconds have passed or Ctrl-C.

>>> from rich.console import Console                                            # doctest: +SKIP
>>> run_demo(home=Path("/tmp/demo"), users=300, hosts=12, days=1, seed=0, fresh=True,
...          console=Console(), serve=True, duration=30)                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from liveshelf.core.jsonsafe import jsonable
from liveshelf.demo.models import (
    ITEM_MODELS,
    SERVED_NAME,
    evaluate_quick_models,
    register_models,
    train_item_models,
    train_sentiment,
)
from liveshelf.demo.serve import bind_socket, serve_and_replay
from liveshelf.demo.timing import Timer
from liveshelf.demo.world import ingest_table, simulate_world, store_table
from liveshelf.errors import check_param


def run_demo(
    *,
    home: Path,
    users: int,
    hosts: int,
    days: int,
    seed: int,
    fresh: bool,
    console: Console,
    models: tuple[str, ...] = ("pop", "repeat", "itemknn"),
    text_epochs: int = 3,
    en_share: float = 0.3,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    duration: float | None = None,
    speed: float = 60.0,
    rate: float = 10.0,
) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns a summary, also written to ``<home>/demo.json``.

    ``serve=False`` stops after the registry (no server, no traffic). ``duration`` is how long
    the server and the traffic run (None: until Ctrl-C).
    """
    check_param("days", days, isinstance(days, int) and days >= 1, "an int >= 1", "liveshelf demo")
    check_param(
        "text_epochs",
        text_epochs,
        isinstance(text_epochs, int) and text_epochs >= 1,
        "an int >= 1",
        "liveshelf demo",
    )
    check_param(
        "duration",
        duration,
        duration is None or duration > 0,
        "None or a number of seconds > 0",
        "liveshelf demo",
    )
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore

    home = Path(home).expanduser()
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    timer = Timer()

    with timer.step("simulate"), console.status("simulating a live-commerce world ..."):
        history, replay = simulate_world(users=users, hosts=hosts, days=days, seed=seed, en_share=en_share)
        folder = history.save(home / "world")
        replay.save(home / "replay")
    ds = history.dataset
    langs = ds.items["language"].value_counts().to_dict()
    console.print(
        f"[green]simulated[/] {len(ds.events):,} events, {len(ds.rooms):,} rooms, "
        f"{len(ds.items):,} items ({', '.join(f'{k}: {v:,}' for k, v in sorted(langs.items()))}) "
        f"in {timer.steps['simulate']['wall_s']:.1f}s -> {folder}; held back for the live replay: "
        f"{len(replay.dataset.rooms):,} rooms, {len(replay.dataset.events):,} events"
    )

    with timer.step("ingest"), EventStore(home) as store:
        t0 = time.perf_counter()
        reports = Ingestor(store).ingest_world(folder, rejects_dir=home / "rejects")
        console.print(ingest_table(reports, time.perf_counter() - t0))
        console.print(store_table(store.stats(), store.path if hasattr(store, "path") else home))
        dataset = store.to_dataset("demo")

    result: dict[str, Any] = {"home": str(home), "events": int(len(dataset.events))}
    with timer.step("quick models (live protocol)"):
        result["evaluation"] = evaluate_quick_models(dataset, models, seed, console, home / "evaluation")
    with timer.step("item models + text model"):
        trained = train_item_models(dataset, seed=seed, text_epochs=text_epochs, console=console)
    with timer.step("register + promote"):
        result["registry"] = register_models(
            home,
            trained,
            console,
            lineage={
                "source": "liveshelf demo",
                "world": str(folder),
                "seed": seed,
                "users": users,
                "hosts": hosts,
                "days": days,
                "en_share": en_share,
            },
        )
    result["item_models"] = {n: t["metrics"] for n, t in trained.items()}
    with timer.step("comment sentiment model"):
        result["sentiment"] = train_sentiment(dataset.events, home / "sentiment", seed=seed, console=console)

    if serve:
        result["serve"] = serve_and_replay(
            home,
            replay.dataset,
            console=console,
            timer=timer,
            host=host,
            port=port,
            duration=duration,
            speed=speed,
            rate=rate,
        )
    console.print(timer.table())
    result["timings"] = timer.steps
    (home / "demo.json").write_text(json.dumps(jsonable(result), indent=2, allow_nan=False))
    return result


__all__ = [
    "ITEM_MODELS",
    "SERVED_NAME",
    "bind_socket",
    "register_models",
    "run_demo",
    "serve_and_replay",
    "simulate_world",
    "train_item_models",
]
