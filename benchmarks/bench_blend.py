"""How well does each candidate source (and the default blend) rank a room's shelf, by simulated truth?

A simulated world (800 users, 30 hosts, 3 days); events before ``t0`` are ingested, ``itemknn`` is the
production model. For 150 returning viewers × 4 rooms live at ``t0``, the shelf is requested through
the HTTP API (in-process) under one blend setting at a time; the score is the ground-truth preference
(``World.truth.preference``) of the top-3 items, against the mean over the returned shelf. A source
that knows nothing scores about the shelf mean; the shelf's own order is the ``none`` row.

Used to tune and to check the pipeline's blend against the simulator; not a target by itself (the
simulator is one world, not the field).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd

SOURCES = ("repeat", "sequence", "trending", "similar", "profile", "cf")


def only(name: str | None) -> dict[str, float]:
    return {s: (1.0 if s == name else 0.0) for s in SOURCES}


def build(home: Path):
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import simulate
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.experiment.online_sim import live_window
    from liveshelf.models import create_model
    from liveshelf.serving.registry import ModelRegistry

    world = simulate(n_users=800, n_hosts=30, days=3, seed=1, use_review_corpus=False)
    lo, hi = live_window(world, min_rooms=3)
    lo = max(lo, hi - 3 * 3600)
    t0 = lo + 0.3 * (hi - lo)
    ds = world.dataset
    cut = pd.Timestamp(t0, unit="s", tz="UTC")
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(ds, kind))
        ing.ingest("events", ds.events[ds.events["ts"] < cut])
        data = dataset_to_train_data(store.to_dataset())
    reg = ModelRegistry(home / "models")
    reg.promote("default", reg.register(create_model("itemknn").fit(data), name="default"))
    ev = ds.events
    before = ev[(ev["ts"] < cut) & (ev["type"] != "impression")]
    return world, t0, sorted(set(before["user"].astype(str)))[:150]


def main() -> None:
    from fastapi.testclient import TestClient

    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import DEFAULT_WEIGHTS, ServeSettings

    t_start = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="liveshelf-blend-"))
    try:
        world, t0, users = build(home)
        settings = {"default": dict(DEFAULT_WEIGHTS), "none (shelf order)": only(None),
                    **{f"{s} only": only(s) for s in SOURCES if s != "cf"}}
        rows = []
        for name, weights in settings.items():
            app = create_app(ServeSettings(home=home, rate_per_s=1e5, rate_burst=100_000, text=False,
                                           weights=weights))
            with TestClient(app) as client:
                rooms = [r["room"] for r in client.get("/v1/users/x/feed", params={"at": t0, "k": 50}).json()["rooms"]]
                top, mean = [], []
                for u in users:
                    for room in rooms[:4]:
                        body = client.get(f"/v1/rooms/{room}/shelf", params={"user": u, "at": t0, "k": 50}).json()
                        items = [x["item"] for x in body["items"]]
                        if len(items) < 6:
                            continue
                        p = world.truth.preference([u] * len(items), items)
                        top.append(float(np.mean(p[:3])))
                        mean.append(float(np.mean(p)))
            rows.append({"setting": name, "top3_preference": round(float(np.mean(top)), 4),
                         "shelf_mean_preference": round(float(np.mean(mean)), 4), "requests": len(top)})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    common.write_result("blend", rows, seconds=round(time.perf_counter() - t_start, 1), users=len(users),
                        note="simulated world, 800 users / 30 hosts / 3 days; itemknn in production")


if __name__ == "__main__":
    main()
