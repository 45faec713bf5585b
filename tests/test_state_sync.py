"""The online state is a view of the store that always catches up: failed state writes, lost Redis data, restarts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.experiment.online_sim import event_payloads
from liveshelf.serving.app import create_app
from liveshelf.serving.settings import ServeSettings
from liveshelf.serving.state import MemoryState

KEY = "sync-key"


@pytest.fixture(scope="module")
def world_home(tmp_path_factory):
    """A one-day world: the catalogue, hosts, rooms and shelves ingested, no events (they are posted)."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import simulate
    from liveshelf.data.store import EventStore

    world = simulate(n_users=200, n_hosts=8, days=1, seed=5, use_review_corpus=False)
    home = tmp_path_factory.mktemp("synchome")
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(world.dataset, kind))
    ev = world.dataset.events
    ev = ev[ev["type"].isin(["enter", "view", "click", "cart", "purchase", "like", "leave"])]
    return world, home, ev.sort_values("ts", kind="stable").iloc[:3000].reset_index(drop=True)


def _copy(home: Path, tmp_path: Path) -> Path:
    out = tmp_path / "home"
    shutil.copytree(home, out)
    return out


def _sequence_events(state, events: pd.DataFrame) -> tuple[int, int]:
    """(events of sequence types found in the users' state sequences, events expected there)."""
    from liveshelf.serving.state.base import SEQUENCE_TYPES

    want = events[events["type"].isin(SEQUENCE_TYPES)]
    found = 0
    for user, part in want.groupby("user"):
        got = {(e[0], round(float(e[2]), 3), e[3]) for e in state.user_sequence(str(user))}
        secs = (
            part["ts"].astype("int64").to_numpy() / 1e6
            if part["ts"].dtype.kind == "M"
            else pd.to_datetime(part["ts"], utc=True).astype("int64").to_numpy() / 1e9
        )
        for item, t, typ in zip(part["item"], secs, part["type"], strict=True):
            found += (None if pd.isna(item) else item, round(float(t), 3), typ) in got
    return found, len(want)


def test_apply_synced_moves_the_seq_once():
    events = pd.DataFrame(
        {
            "event_id": ["a", "b"],
            "ts": pd.to_datetime([1_700_000_000, 1_700_000_010], unit="s", utc=True),
            "user": ["u", "u"],
            "type": ["view", "click"],
            "room": ["r", "r"],
            "item": ["i", "j"],
            "value": [None, None],
            "text": [None, None],
        }
    )
    state = MemoryState()
    assert state.sync_point() == (None, None)
    state.mark_synced("e1", 4)
    assert state.apply_synced(events, 6) == 2 and state.sync_point() == ("e1", 6)
    assert state.apply_synced(events, 6) == 0 and len(state.user_sequence("u")) == 2  # a retry counts once
    state.clear()
    assert state.sync_point() == (None, None)


def test_events_stored_behind_the_servers_back_are_caught_up(world_home, tmp_path):
    """The sync thread applies whatever the store holds beyond the state's seq (e.g. a CLI ingest)."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore

    _, template, events = world_home
    home = _copy(template, tmp_path)
    settings = ServeSettings(home=home, api_keys=KEY, text=False, workers=1)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        services.store.close()  # the server's handle to the store is opened per write
        with EventStore(home) as store:
            Ingestor(store).ingest("events", events.iloc[:500])
        deadline = time.time() + 25  # the periodic store check (every 10 s) finds writes made elsewhere
        while services.state_sync.status.lag != 0 or services.state_sync.status.state_seq != 499:
            assert time.time() < deadline, services.state_sync.status
            time.sleep(0.1)
        found, want = _sequence_events(services.state, events.iloc[:500])
        assert found == want > 50
        assert client.get("/readyz").json()["sync"]["seq"] == 499


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_killed_mid_stream_and_back_empty_loses_no_acknowledged_event(world_home, tmp_path):
    """Finding 1 of issue 12: with Redis killed (-9) mid-stream the API keeps storing events (200) and answers
    reads 503 (never 500); Redis restarted empty is detected and rebuilt from the store without restarting
    the API, and every acknowledged event is in the state within seconds."""
    world, template, events = world_home
    home = _copy(template, tmp_path)
    port = _free_port()
    proc = _redis(port)
    try:
        settings = ServeSettings(
            home=home,
            api_keys=KEY,
            text=False,
            state=f"redis://127.0.0.1:{port}/0",
            state_prefix="synctest:",
            rate_per_s=1e5,
            rate_burst=100_000,
        )
        body = event_payloads(events)
        acked: list[int] = []
        statuses: list[int] = []
        with TestClient(create_app(settings)) as client:
            user = str(events["user"].iloc[0])
            starts = list(range(0, len(body), 100))
            for b, lo in enumerate(starts):
                if b == len(starts) // 3:  # mid-stream: the state's server dies
                    proc.kill()
                    proc.wait()
                if b == 2 * len(starts) // 3:  # it comes back with nothing in it
                    proc = _redis(port)
                r = client.post(
                    "/v1/events", json={"events": body[lo : lo + 100]}, headers={"X-API-Key": KEY}
                )
                statuses.append(r.status_code)
                assert r.status_code == 200, r.text
                if r.json()["accepted"]:
                    acked += list(range(lo, min(lo + 100, len(body))))
                read = client.get(f"/v1/users/{user}/feed")
                statuses.append(read.status_code)
                assert read.status_code in (200, 503), read.text
                if read.status_code == 503:
                    assert read.headers["Retry-After"] == "1" and "unavailable" in read.json()["detail"]
            assert 503 in statuses and 500 not in statuses
            assert len(acked) == len(body)  # every batch was stored and acknowledged
            deadline = time.time() + 15
            while client.get("/readyz").status_code != 200:
                assert time.time() < deadline, (
                    client.get("/readyz").json(),
                    proc.poll(),
                    subprocess.run(
                        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
                    ).stdout,
                )
                time.sleep(0.1)
            services = client.app.state.services
            assert services.state_sync.status.rebuilds >= 1
            found, want = _sequence_events(services.state, events)
            assert found == want > 300
            # known rooms answer again (no API restart): the catalogue, rooms and shelves were rebuilt too
            room = str(world.dataset.rooms["id"].iloc[0])
            t = float(pd.Timestamp(world.dataset.rooms["start"].iloc[0]).timestamp()) + 60
            assert client.get(f"/v1/rooms/{room}/shelf", params={"at": t}).status_code == 200
            assert client.get(f"/v1/users/{user}/feed").status_code == 200
    finally:
        proc.kill()
        proc.wait()


def test_warm_up_is_anchored_on_the_server_clock(world_home, tmp_path):
    """Finding 2 of issue 12: one event stamped far ahead of the clock does not empty the warm state."""
    from liveshelf.data.store import EventStore
    from liveshelf.serving.sync import rebuild_state

    _, template, events = world_home
    home = _copy(template, tmp_path)
    from liveshelf.data.ingest import Ingestor

    now = float(pd.Timestamp(events["ts"].max()).timestamp()) + 3600  # the server's clock, an hour later
    ahead = events.iloc[:1].copy()
    ahead["event_id"] = "from-the-future"
    ahead["ts"] = pd.Timestamp(now + 20 * 3600, unit="s", tz="UTC")
    with EventStore(home) as store:
        Ingestor(store).ingest("events", events)
        # stored directly (the API refuses such events): the store may still hold one
        store.insert_events(ahead)
        state = MemoryState()
        counts = rebuild_state(state, store, window_s=7 * 86400, now=now)
    assert counts["events"] == len(events) + 1
    found, want = _sequence_events(state, events)
    assert found == want


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_frozen_redis_answers_503_quickly_and_catches_up_after(world_home, tmp_path):
    """Redis frozen (SIGSTOP): reads answer 503 within the state's timeout (not 500 after 5 s), writes are
    stored; once it resumes (with its data) the events stored meanwhile are applied."""
    import signal

    _, template, events = world_home
    home = _copy(template, tmp_path)
    port = _free_port()
    proc = _redis(port)
    try:
        settings = ServeSettings(
            home=home,
            api_keys=KEY,
            text=False,
            state=f"redis://127.0.0.1:{port}/0",
            state_prefix="freeze:",
            rate_per_s=1e5,
            rate_burst=100_000,
        )
        body = event_payloads(events.iloc[:600])
        with TestClient(create_app(settings)) as client:
            user = str(events["user"].iloc[0])
            ok = client.post("/v1/events", json={"events": body[:300]}, headers={"X-API-Key": KEY})
            assert ok.status_code == 200 and ok.json()["applied"] == 300
            proc.send_signal(signal.SIGSTOP)
            t0 = time.perf_counter()
            read = client.get(f"/v1/users/{user}/feed")
            assert read.status_code == 503 and time.perf_counter() - t0 < 4.5
            w = client.post("/v1/events", json={"events": body[300:]}, headers={"X-API-Key": KEY})
            assert w.status_code == 200 and w.json()["accepted"] == 300 and w.json()["applied"] == 0
            proc.send_signal(signal.SIGCONT)
            deadline = time.time() + 15
            while client.get("/readyz").status_code != 200 or client.app.state.services.state_sync.status.lag:
                assert time.time() < deadline, client.get("/readyz").json()
                time.sleep(0.1)
            found, want = _sequence_events(client.app.state.services.state, events.iloc[:600])
            assert found == want > 50
            assert client.app.state.services.state_sync.status.rebuilds == 0  # caught up, not rebuilt
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
