"""`liveshelf demo`: simulate -> ingest -> models -> registry -> server + dashboard -> live traffic over HTTP.

The first test drives the traffic replayer against the app in process (fast); the second runs the
real command as a subprocess with ``--duration 60`` and polls the URL it prints while it runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.data.sim.traffic import ReplayPlan, TrafficReplayer
from liveshelf.demo import bind_socket, simulate_world

KEY = "demo-test-key"


# ------------------------------------------------------------------------------------ in process
def test_history_and_replay_split_at_midnight_with_both_languages():
    history, replay = simulate_world(
        users=150, hosts=8, days=1, seed=5, en_share=0.3, today=date(2026, 11, 20)
    )
    cut = pd.Timestamp("2026-11-20", tz="UTC")
    h, r = history.dataset, replay.dataset
    assert h.events["ts"].max() < cut <= r.events["ts"].min()
    assert (h.rooms["start"] < cut).all() and (r.rooms["start"] >= cut).all()
    assert set(h.rooms["id"]).isdisjoint(r.rooms["id"])
    assert set(r.shelf["room"]) <= set(r.rooms["id"])
    assert set(h.items["language"]) == {"zh", "en"}  # Chinese and English items
    assert len(r.events) > 100 and len(h.events) > 100


def test_traffic_replays_a_simulated_day_through_the_api(tmp_path):
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore
    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import ServeSettings

    history, replay = simulate_world(users=200, hosts=8, days=1, seed=1, en_share=0.3)
    folder = history.save(tmp_path / "world")
    with EventStore(tmp_path) as store:
        Ingestor(store).ingest_world(folder)
        stored = store.stats()["events"]
    plan = ReplayPlan.from_frames(replay.dataset.events, replay.dataset.rooms, replay.dataset.shelf)
    counts = plan.counts()
    assert counts["room_start"] == len(replay.dataset.rooms) and counts["event"] == len(replay.dataset.events)
    assert (plan.t[1:] >= plan.t[:-1]).all()
    start = plan.busiest()
    live, slots = plan.live_at(start)
    assert live and slots and {s["room"] for s in slots} <= {r["id"] for r in live}

    settings = ServeSettings(home=tmp_path, api_keys=[KEY], text=False)
    with TestClient(create_app(settings)) as client:
        before = time.time()
        # 300 simulated seconds per real second: 40 simulated minutes from the busiest moment in 8 s
        stats = TrafficReplayer(client, plan, api_key=KEY, speed=300, rate=40).run(duration=8)
        c = stats.counts
        assert c["errors"] == 0, stats.as_dict()
        assert c["rooms_started"] >= len(live) > 0 and c["slots_added"] >= len(slots)
        assert c["events_posted"] > 100 and c["events_accepted"] == c["events_posted"]
        assert c["events_rejected"] == 0 and c["feed"] > 0 and c["shelf"] > 0 and c["next_item"] > 0
        # the replayed rooms are live now on the server, with their shelves
        ready = client.get("/readyz").json()
        assert ready["live_rooms"] == c["rooms_live"] > 0
        feed = client.get("/v1/users/u0000001/feed").json()["rooms"]
        assert feed and {r["room"] for r in feed} <= set(replay.dataset.rooms["id"])
        shelf = client.get(f"/v1/rooms/{feed[0]['room']}/shelf").json()
        assert shelf["live"] and shelf["items"]
        metrics = client.get("/metrics").text
        assert (
            f'liveshelf_events_ingested_total{{outcome="accepted"}} {float(c["events_accepted"])}' in metrics
        )
    with EventStore(tmp_path) as store:  # events were stored with wall-clock times of this run
        assert store.stats()["events"] == stored + c["events_accepted"]
        events = store.frame("events")
    fresh = events[events["ts"] >= pd.Timestamp(before - 1, unit="s", tz="UTC")]
    assert len(fresh) == c["events_accepted"]


class _FakeServer:
    """Records what a replayer sends; answers like the API (every event accepted)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, str, dict]] = []

    def request(self, method, url, headers=None, json=None, params=None):
        assert headers == {"X-API-Key": KEY}
        self.calls.append((self.clock(), method, url, json or params or {}))
        body = (
            {"actions": len(json["actions"])}
            if url == "/v1/rooms"
            else {"accepted": len(json["events"]), "duplicate": 0, "rejected": 0}
            if url == "/v1/events"
            else {}
        )
        return type("R", (), {"status_code": 200, "json": lambda self: body})()


def _tiny_plan() -> ReplayPlan:
    day = pd.Timestamp("2026-11-20", tz="UTC")
    at = lambda h, m=0: day + pd.Timedelta(hours=h, minutes=m)  # noqa: E731
    rooms = pd.DataFrame(
        {
            "id": ["rA", "rB"],
            "host": ["h1", "h2"],
            "title": ["A", "B"],
            "start": [at(10), at(20)],
            "end": [at(11), at(21)],
        }
    )
    shelf = pd.DataFrame(
        {
            "room": ["rA", "rA", "rB"],
            "item": ["i1", "i2", "i3"],
            "start": [at(10), at(10), at(20)],
            "end": [at(11), at(10, 30), at(21)],
            "pinned": [True, False, False],
        }
    )
    minutes = [5, 6, 7, 8, 40]
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(6)],
            "ts": [at(10, m) for m in minutes] + [at(20, 5)],
            "user": ["u1"] * 6,
            "type": ["enter", "view", "cart", "purchase", "leave", "enter"],
            "room": ["rA"] * 5 + ["rB"],
            "item": [None, "i1", "i1", "i1", None, None],
            "value": [None, None, None, 19.9, None, None],
            "text": [None] * 6,
        }
    )
    return ReplayPlan.from_frames(events, rooms, shelf)


def test_replayer_maps_time_skips_idle_hours_and_starts_the_next_day_with_fresh_ids():
    plan = _tiny_plan()
    assert plan.counts() == {"room_start": 2, "slot_start": 3, "event": 6, "slot_end": 1, "room_end": 2}
    day = pd.Timestamp("2026-11-20", tz="UTC").timestamp()
    assert plan.busiest() == day + 10 * 3600  # the 10:00 bin holds most events
    ticks = iter(range(10**9))
    clock = lambda: 1_000_000.0 + 0.01 * next(ticks)  # noqa: E731  (deterministic: 10 ms per reading)
    fake = _FakeServer(clock)
    replayer = TrafficReplayer(
        fake,
        plan,
        api_key=KEY,
        speed=3600,
        rate=1000,
        batch_s=0.05,
        next_item_every_s=0,
        skip_idle_s=300,
        clock=clock,
    )
    stats = replayer.run(duration=6, tick_s=0)
    c = stats.counts
    puts = [body for _, m, url, body in fake.calls if url == "/v1/rooms"]
    started = [r["id"] for b in puts for r in b["rooms"]]
    ended = [a["room"] for b in puts for a in b["actions"] if a["op"] == "end_room"]
    removed = [(a["room"], a["item"]) for b in puts for a in b["actions"] if a["op"] == "remove_item"]
    assert started[:3] == ["rA", "rB", "rAc1"] and ended[:2] == ["rA", "rB"]  # day 1, then day 2 afresh
    assert removed[0] == ("rA", "i2") and c["idle_skipped_s"] > 8 * 3600  # the night was skipped
    assert stats.cycle >= 1
    events = [(t, e) for t, _, url, body in fake.calls if url == "/v1/events" for e in body["events"]]
    ids = [e["event_id"] for _, e in events]
    assert ids[:6] == ["e0", "e1", "e2", "e3", "e4", "e5"] and "e0c1" in ids
    assert all(e["ts"] <= t for t, e in events)  # never a time in the future of the request
    ts = [e["ts"] for _, e in events]
    assert ts == sorted(ts)
    # simulated minutes 10:05 -> 10:08 are three real seconds apart at 60x... here 3600x: 3 min = 0.05 s
    assert ts[3] - ts[0] == pytest.approx(180 / 3600)
    assert c["feed"] >= 2 and c["shelf"] >= 2 and c["events_accepted"] == c["events_posted"] == len(events)
    shelf_reads = [body for _, m, url, body in fake.calls if url.endswith("/shelf")]
    assert shelf_reads[0] == {"k": 20, "user": "u1"}


def test_bind_socket_falls_back_to_a_free_port():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        sock, fell_back = bind_socket("127.0.0.1", port)
        assert fell_back and sock.getsockname()[1] != port
        sock.close()
    finally:
        taken.close()


# ------------------------------------------------------------------------------------ the command
def _reader(stream, lines: list[str], q: queue.Queue) -> None:
    for line in stream:
        lines.append(line)
        q.put(line)


def _accepted(metrics: str) -> float:
    m = re.search(r'^liveshelf_events_ingested_total\{outcome="accepted"\} ([0-9.e+]+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


def test_demo_command_serves_the_dashboard_and_replays_live_traffic(tmp_path):
    import httpx

    home = tmp_path / "demo"
    taken = socket.socket()  # the asked-for port is taken: the demo must fall back to a free one
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    exe = Path(sys.executable).with_name("liveshelf")
    launcher = (
        [str(exe)] if exe.exists() else [sys.executable, "-c", "from liveshelf.cli import main; main()"]
    )
    cmd = [
        *launcher,
        "demo",
        "--home",
        str(home),
        "--users",
        "300",
        "--hosts",
        "12",
        "--days",
        "1",
        "--seed",
        "3",
        "--text-epochs",
        "2",
        "--port",
        str(port),
        "--duration",
        "60",
        "--speed",
        "120",
        "--rate",
        "20",
    ]
    env = {**os.environ, "LIVESHELF_HOME": str(tmp_path / "lh"), "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    q: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines, q), daemon=True)
    reader.start()
    try:
        url = None
        while url is None:
            try:
                line = q.get(timeout=max(1.0, 400 - (time.monotonic() - t0)))
            except queue.Empty:
                pytest.fail("the demo printed no URL:\n" + "".join(lines))
            m = re.match(r"demo server: (http://[\d.]+:(\d+)/)", line.strip())
            url = m.group(1) if m else None
            assert proc.poll() is None or url, "".join(lines)
        assert int(m.group(2)) != port and f"port {port} is taken" in "".join(lines)
        served_at = time.monotonic()
        with httpx.Client(base_url=url, timeout=20) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            first = _accepted(client.get("/metrics").text)
            rooms: list = []
            while time.monotonic() - served_at < 40 and not rooms:
                rooms = client.get("/v1/users/u0000001/feed").json()["rooms"]
                time.sleep(1)
            assert rooms, "no live room in the feed:\n" + "".join(lines)
            shelf = client.get(f"/v1/rooms/{rooms[0]['room']}/shelf", params={"user": "u0000001"}).json()
            assert shelf["live"] and shelf["items"]
            nxt = client.get(f"/v1/rooms/{rooms[0]['room']}/next-item").json()
            assert nxt["items"]
            ready = client.get("/readyz").json()
            assert ready["live_rooms"] > 0 and ready["model_version"]
            grown = first
            while time.monotonic() - served_at < 50 and grown <= first:
                time.sleep(2)
                grown = _accepted(client.get("/metrics").text)
            assert grown > first, "event counts did not grow:\n" + "".join(lines)
            if importlib.util.find_spec("liveshelf.serving.routes.dashboard") is not None:  # the console
                page = client.get("/")
                assert page.status_code == 200 and "text/html" in page.headers["content-type"]
                cards = client.get("/v1/dashboard/rooms").json()
                assert cards["rooms"] and cards["comments_monitored"]  # the demo trained a sentiment model
                assert {c["room"] for c in cards["rooms"]} & {r["room"] for r in rooms}
                served = client.get("/v1/dashboard/models").json()["models"][0]
                assert served["name"] == "default" and len(served["versions"]) == 3 and served["serving"]
        rc = proc.wait(timeout=150)
    finally:
        taken.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(
            timeout=10
        )  # it stops at the pipe's end; then the pipe is closed (no unclosed-file warning)
        proc.stdout.close()
    out = "".join(lines)
    assert rc == 0, out
    assert time.monotonic() - served_at < 100  # --duration 60 stopped it by itself
    assert "event store" in out and "live protocol" in out and "server stopped" in out
    assert (home / "events.duckdb").exists()
    results = json.loads((home / "evaluation" / "results.json").read_text())
    assert results["protocol"] == "live" and set(results["models"]) == {"pop", "repeat", "itemknn"}
    for res in results["models"].values():
        assert 0.0 <= res["metrics"]["ndcg@10"] <= 1.0
    events = pd.read_parquet(home / "world" / "events.parquet")  # the store holds what the simulator wrote
    assert f"{len(events):,} events" in out
    summary = json.loads((home / "demo.json").read_text())
    reg = summary["registry"]
    assert set(reg["versions"]) == {"pop", "itemknn", "textseq"}
    best = max(
        summary["item_models"],
        key=lambda n: (summary["item_models"][n]["ndcg@10"], summary["item_models"][n]["recall@10"]),
    )
    assert reg["served_model"] == best and reg["production"] == reg["versions"][best]
    meta = json.loads((home / "models" / "default" / reg["production"] / "meta.json").read_text())
    assert meta["model_type"] == best and meta["lineage"]["parent"] == reg["versions"]["pop"]
    assert meta["metrics"]["ndcg@10"] == pytest.approx(summary["item_models"][best]["ndcg@10"])
    traffic = summary["serve"]["traffic"]
    assert summary["serve"]["clean_shutdown"]
    # every answer was a success; on a loaded machine a request may time out, which is counted, not fatal
    assert not [code for code in traffic["http_status"] if code.isdigit() and int(code) >= 400], traffic
    assert traffic["errors"] <= 0.05 * sum(traffic["http_status"].values()), traffic
    assert summary["sentiment"]["heldout"]["accuracy"] > 0.7
    assert traffic["events_accepted"] >= grown and traffic["feed"] > 0 and traffic["rooms_started"] > 0
