"""Soak: steady mixed traffic against `liveshelf serve` on Redis while Redis dies twice and the API once.

A simulated world's catalogue, hosts, rooms and shelves are ingested; its events are posted through the
API at a steady rate (batches of ``SOAK_BATCH``), mixed with feed and shelf reads (``SOAK_RATE`` requests
per second in all, one request in ``SOAK_WRITE_EVERY`` a write), for ``SOAK_DURATION`` seconds. The API
runs as its own process (`liveshelf serve --state redis://...`) on a redis-server this bench starts on a
free port. Faults, at shares of the duration:

* 0.15 Redis killed (-9); 0.30 Redis restarted empty;
* 0.45 the API killed (-9); 0.50 the API restarted;
* 0.65 Redis killed; 0.75 Redis restarted empty.

The client is a well-behaved one: a write that gets no answer, or a 503, is retried (same event ids: the
store de-duplicates them). Per phase: requests, errors (5xx other than 503, connection failures),
503 answers, p50/p99 latency. At the end (after the last write, once `/readyz` is ready): events
acknowledged, events in the store, and acknowledged events of sequence types found in the state's user
sequences in Redis - all three must agree.

Knobs: ``SOAK_DURATION`` (600 s), ``SOAK_RATE`` (40 req/s), ``SOAK_BATCH`` (20 events), ``SOAK_WRITE_EVERY`` (4).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np

DURATION = float(os.environ.get("SOAK_DURATION", 600))
RATE = float(os.environ.get("SOAK_RATE", 40))
BATCH = int(os.environ.get("SOAK_BATCH", 20))
WRITE_EVERY = int(os.environ.get("SOAK_WRITE_EVERY", 4))
KEY = "soak-key"
FAULTS = (
    (0.15, "redis down #1"),
    (0.30, "redis back empty #1"),
    (0.45, "api down"),
    (0.50, "api back"),
    (0.65, "redis down #2"),
    (0.75, "redis back empty #2"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout:g}s") from None
            time.sleep(0.05)


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port)
    return proc


def _api(home: Path, port: int, redis_port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "LIVESHELF_API_KEYS": KEY,
        "LIVESHELF_RATE_PER_S": "100000",
        "LIVESHELF_RATE_BURST": "100000",
        "LIVESHELF_TEXT": "false",
        "HF_HUB_OFFLINE": "1",
    }
    exe = Path(sys.executable).with_name("liveshelf")
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--home",
            str(home),
            "--state",
            f"redis://127.0.0.1:{redis_port}/0",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    _wait_port(port, timeout=120)
    return proc


def main() -> None:
    import httpx
    import pandas as pd  # noqa: F401  (the events frame)

    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import simulate
    from liveshelf.data.store import EventStore
    from liveshelf.experiment.online_sim import event_payloads

    tmp = Path(tempfile.mkdtemp(prefix="liveshelf-soak-"))
    home = tmp / "home"
    world = simulate(n_users=3000, n_hosts=40, days=2, seed=11, use_review_corpus=False)
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(world.dataset, kind))
    events = world.dataset.events.sort_values("ts", kind="stable").reset_index(drop=True)
    payloads = event_payloads(events)
    users = sorted(set(events["user"].astype(str)))
    rooms = world.dataset.rooms["id"].astype(str).tolist()
    rport, aport = _free_port(), _free_port()
    redis = _redis(rport)
    api_log = tmp / "api.log"
    api = _api(home, aport, rport, api_log)
    rng = np.random.default_rng(0)
    rows: dict[str, dict] = {}
    phase, fault_i = "steady", 0
    acked: set[str] = set()
    pending: list[list[dict]] = []
    cursor = 0
    t_start = time.monotonic()
    n_req = 0
    client = httpx.Client(base_url=f"http://127.0.0.1:{aport}", timeout=5.0)

    def record(ok: bool, status: int | None, seconds: float) -> None:
        r = rows.setdefault(
            phase, {"phase": phase, "requests": 0, "errors": 0, "unavailable_503": 0, "lat": []}
        )
        r["requests"] += 1
        r["lat"].append(seconds)
        if status == 503:
            r["unavailable_503"] += 1
        elif not ok:
            r["errors"] += 1

    try:
        while True:
            elapsed = time.monotonic() - t_start
            if elapsed >= DURATION:
                break
            while fault_i < len(FAULTS) and elapsed >= FAULTS[fault_i][0] * DURATION:
                phase = FAULTS[fault_i][1]
                if phase.startswith("redis down"):
                    redis.kill()
                    redis.wait()
                elif phase.startswith("redis back"):
                    redis = _redis(rport)
                elif phase == "api down":
                    api.kill()
                    api.wait()
                elif phase == "api back":
                    api = _api(home, aport, rport, api_log)
                fault_i += 1
            n_req += 1
            write = n_req % WRITE_EVERY == 0 and (pending or cursor < len(payloads))
            t0 = time.perf_counter()
            status = None
            try:
                if write:
                    if not pending:
                        pending.append(payloads[cursor : cursor + BATCH])
                        cursor += BATCH
                    batch = pending[0]
                    r = client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": KEY})
                    status = r.status_code
                    if status == 200:
                        acked.update(e["event_id"] for e in batch)
                        pending.pop(0)
                elif n_req % 2:
                    r = client.get(f"/v1/users/{users[rng.integers(len(users))]}/feed", params={"k": 10})
                    status = r.status_code
                else:
                    r = client.get(f"/v1/rooms/{rooms[rng.integers(len(rooms))]}/shelf", params={"k": 10})
                    status = r.status_code
            except httpx.HTTPError:
                status = None
            record(status is not None and (status < 500 or status == 503), status, time.perf_counter() - t0)
            sleep = n_req / RATE - (time.monotonic() - t_start)
            if sleep > 0:
                time.sleep(sleep)
        # the last writes: retried until stored
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            try:
                r = client.post("/v1/events", json={"events": pending[0]}, headers={"X-API-Key": KEY})
                if r.status_code == 200:
                    acked.update(e["event_id"] for e in pending.pop(0))
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ready_s = time.monotonic()
        while time.monotonic() - ready_s < 60:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ready_s = round(time.monotonic() - ready_s, 2)
        # events in the state: acknowledged events of sequence types found in the users' sequences
        import redis as redis_py

        from liveshelf.data.timeline import to_seconds_array
        from liveshelf.serving.state import make_state
        from liveshelf.serving.state.base import SEQUENCE_TYPES

        state = make_state(f"redis://127.0.0.1:{rport}/0", prefix="liveshelf:")
        sent = events[events["event_id"].isin(acked)]
        want = sent[sent["type"].isin(SEQUENCE_TYPES)]
        found = 0
        expected = 0
        for user, part in want.groupby("user"):
            got = {(e[0], round(float(e[2]), 3), e[3]) for e in state.user_sequence(str(user))}
            part = part.tail(state.max_seq)  # the state keeps the newest max_seq per viewer
            secs = to_seconds_array(part["ts"].to_numpy())
            for item, t, typ in zip(part["item"], secs, part["type"], strict=True):
                expected += 1
                found += (None if pd.isna(item) else item, round(float(t), 3), typ) in got
        state_seq = state.sync_point()[1]
        del redis_py
    finally:
        client.close()
        api.terminate()
        try:
            api.wait(timeout=20)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
        redis.kill()
        redis.wait()
    with EventStore(home, read_only=True) as store:
        stored = store.count("events")
        store_seq = store.max_seq()
    shutil.rmtree(tmp, ignore_errors=True)
    out = []
    for r in rows.values():
        lat = np.asarray(r.pop("lat")) * 1000
        out.append(
            {
                **r,
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
            }
        )
    summary = {
        "events_acknowledged": len(acked),
        "events_in_store": int(stored),
        "state_sequence_events_expected": expected,
        "state_sequence_events_found": found,
        "state_seq": state_seq,
        "store_seq": store_seq,
        "ready_after_last_write_s": ready_s,
        "errors": sum(r["errors"] for r in out),
        "agree": len(acked) == stored and found == expected,
    }
    common.write_result(
        "soak",
        out,
        summary=summary,
        duration_s=DURATION,
        rate_per_s=RATE,
        batch=BATCH,
        write_every=WRITE_EVERY,
        faults=[{"at": a, "what": w} for a, w in FAULTS],
        loadavg=os.getloadavg(),
        note="one API worker on a Redis state; errors exclude 503 answers (counted apart)",
    )
    common.print_table("soak summary", [summary])


if __name__ == "__main__":
    main()
