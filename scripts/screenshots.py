"""Regenerate the console screenshots of the README: ``docs/console-{rooms,room,viewer}.png``.

Simulates a small English-language world (the page is screenshot in headless Chromium, which
may lack CJK fonts), ingests it up to a busy moment, fits and promotes a model, trains a
comment sentiment model on the simulator's phrases, serves the app on a free local port and
drives the page with Playwright: a few rooms get 100 simulated viewers each, one room a burst
of complaints (an alert), then the rooms view, one room after "Simulate 100 viewers" and one
viewer are captured.

    .venv/bin/python scripts/screenshots.py                 # writes docs/console-*.png
    .venv/bin/python scripts/screenshots.py --out /tmp/shots --users 400 --seed 3

Needs Chromium at /usr/bin/chromium (``make chromium``); takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def busiest_time(rooms: pd.DataFrame) -> float:
    """A moment (a minute after some room started) at which the most rooms are live."""
    start = rooms["start"].map(lambda t: t.timestamp()).to_numpy()
    end = rooms["end"].map(lambda t: t.timestamp()).to_numpy()
    candidates = start + 20 * 60
    live = [int(((start <= t) & (t + 15 * 60 < end)).sum()) for t in candidates]
    return float(candidates[int(np.argmax(live))])


def build_world(home: Path, users: int, hosts: int, seed: int, console: Console) -> dict[str, Any]:
    """Simulate, ingest up to the busiest moment, register itemknn (production) and pop, train sentiment."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.sim.behaviour import comment_pools
    from liveshelf.data.simulate import SimConfig, simulate
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.models import create_model
    from liveshelf.monitor.sentiment import SentimentClassifier
    from liveshelf.serving.registry import ModelRegistry

    with console.status("simulating an English-language world ..."):
        world = simulate(
            SimConfig(n_users=users, n_hosts=hosts, days=1, seed=seed, en_share=1.0, use_review_corpus=False)
        )
    ds = world.dataset
    t = busiest_time(ds.rooms)
    with console.status("ingesting and fitting ..."), EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(ds, kind))
        ing.ingest("events", ds.events[ds.events["ts"] < pd.Timestamp(t, unit="s", tz="UTC")])
        data = dataset_to_train_data(store.to_dataset())
        reg = ModelRegistry(home / "models")
        v1 = reg.register(
            create_model("itemknn").fit(data), name="default", metrics={"note": "screenshot world"}
        )
        reg.register(create_model("pop").fit(data), name="default")
        reg.promote("default", v1)
    pools, _ = comment_pools(False)
    texts = [str(x) for (name, _), arr in pools.items() if name.startswith("builtin-") for x in arr]
    labels = [lab for (name, lab), arr in pools.items() if name.startswith("builtin-") for _ in arr]
    SentimentClassifier(seed=0).fit(texts, np.asarray(labels)).save(home / "sentiment")
    before = ds.events[
        (ds.events["ts"] < pd.Timestamp(t, unit="s", tz="UTC")) & (ds.events["type"] != "impression")
    ]
    console.print(
        f"world: {len(ds.rooms)} rooms, {len(ds.items)} items, {len(ds.events):,} events; clock at "
        f"{pd.Timestamp(t, unit='s', tz='UTC')}"
    )
    return {"t": t, "top_user": str(before["user"].value_counts().index[0]), "pools": pools}


def post(url: str, path: str, body: dict[str, Any], key: str, at: float | None = None) -> dict[str, Any]:
    query = f"?at={at:.3f}" if at is not None else ""
    req = urllib.request.Request(
        f"{url}{path}{query}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def get(url: str, path: str, at: float) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}{path}?at={at:.3f}", timeout=60) as r:
        return json.loads(r.read())


def complaints(room: str, t0: float, pools: dict, n_calm: int = 8) -> tuple[list[dict], list[dict]]:
    """Calm chatter for ``n_calm`` 30 s buckets from ``t0``, then a burst of complaints in the next bucket."""
    pos, neg = list(pools[("builtin-en", 1)]), list(pools[("builtin-en", 0)])
    calm = [
        {
            "event_id": f"shot-calm-{room}-{k}-{j}",
            "ts": t0 + k * 30 + j,
            "user": f"chat{j}",
            "type": "comment",
            "room": room,
            "text": str(neg[j % len(neg)] if j % 9 == 0 else pos[j % len(pos)]),
        }
        for k in range(n_calm)
        for j in range(24)
    ]
    b = t0 + n_calm * 30
    burst = [
        {
            "event_id": f"shot-burst-{room}-{j}",
            "ts": b + j * 0.8,
            "user": f"upset{j}",
            "type": "comment",
            "room": room,
            "text": str(neg[j % len(neg)]),
        }
        for j in range(30)
    ]
    return calm, burst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the PNG files")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    console = Console()
    if not Path(CHROMIUM).exists():
        console.print(f"[red]Chromium is not installed at {CHROMIUM}; run 'make chromium' first.")
        return 1
    from playwright.sync_api import expect, sync_playwright

    from liveshelf.dashboard import BackgroundServer
    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import ServeSettings

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="liveshelf-shots-"))
    try:
        home = work / "home"
        info = build_world(home, args.users, args.hosts, args.seed, console)
        key = secrets.token_hex(8)
        settings = ServeSettings(home=home, api_keys=key, rate_per_s=10_000, rate_burst=10_000)
        with BackgroundServer(create_app(settings)) as srv, sync_playwright() as p:
            t = info["t"]
            b0 = math.ceil(t / 30) * 30 + 30  # after the replayed events: the comment monitor's clock is at t
            rooms = get(srv.url, "/v1/dashboard/rooms", b0)["rooms"]
            busy = [r["room"] for r in rooms if r["shelf_size"] >= 4]
            calm, burst = complaints(busy[-1], b0 + 30, info["pools"])  # first: the monitor's clock moves on
            post(srv.url, "/v1/events", {"events": calm + burst}, key)
            at = b0 + 30 + 9 * 30 + 5
            for i, room in enumerate(busy[:-1][:3]):  # audiences, orders and comments in a few rooms
                post(
                    srv.url,
                    f"/v1/dashboard/rooms/{room}/simulate",
                    {"viewers": 100, "seed": 100 + i, "negative_share": 0.1},
                    key,
                    at - 60,
                )
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            expect.set_options(timeout=60_000)
            page.goto(f"{srv.url}/?at={quote(str(at))}#rooms")
            expect(page.locator(".room-card .badge.alert")).to_have_count(1)
            page.screenshot(path=str(args.out / "console-rooms.png"), full_page=True)
            console.print(f"wrote {args.out / 'console-rooms.png'}")

            page.click(f".room-card[data-room='{busy[0]}']")
            expect(page.locator("#shelf li[data-item]").first).to_be_visible()
            page.fill("#key", key)
            page.click("#key-form button")
            page.click("#simulate")
            expect(page.locator("#changes")).to_be_visible()
            page.wait_for_timeout(2500)  # one poll after the burst
            page.screenshot(path=str(args.out / "console-room.png"), full_page=True)
            console.print(f"wrote {args.out / 'console-room.png'}")

            page.goto(f"{srv.url}/?at={quote(str(at))}#viewer/{quote(info['top_user'])}")
            expect(page.locator("#viewer-feed li[data-room]").first).to_be_visible()
            page.screenshot(path=str(args.out / "console-viewer.png"), full_page=True)
            console.print(f"wrote {args.out / 'console-viewer.png'}")
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
